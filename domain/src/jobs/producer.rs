//! The producer side: enqueue jobs into apalis-redis, with idempotency keys.
//!
//! A job's id is chosen here and used as the apalis task id. With an
//! `Idempotency-Key` the id is derived from (user, operation, key), so two
//! concurrent submissions of one key get one id, apalis ignores the second push
//! and PostgreSQL's per-job uniqueness makes any redelivery a no-op.

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    ExpireHoldJob, JobKind, PayJob, RechargeJob, ReserveJob,
    backend::{EXPIRE_QUEUE, PAY_QUEUE, RECHARGE_QUEUE, RESERVE_QUEUE},
    status::StatusStore,
};
use crate::{
    error::{Error, Result},
    platform::config::Config,
};

/// How long an idempotency key is remembered (the spec asks for at least 24 h).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(25 * 3600);

const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_0c3e_8a4b_4f5e_9c2d_7b1a_3e5f_0a11);

/// An accepted submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub job_id: Uuid,
    /// True when an earlier submission with the same idempotency key is returned.
    pub replayed: bool,
}

/// Enqueues jobs and records their QUEUED status.
#[derive(Clone, Debug)]
pub struct JobProducer {
    redis: ConnectionManager,
    prefix: String,
    status: StatusStore,
    reserve: RedisStorage<ReserveJob>,
    expire: RedisStorage<ExpireHoldJob>,
    recharge: RedisStorage<RechargeJob>,
    pay: RedisStorage<PayJob>,
}

/// Checks an `Idempotency-Key` header value: 1–128 visible ASCII characters.
pub fn validate_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "Idempotency-Key",
            "must be 1 to 128 visible ASCII characters",
        ));
    }
    Ok(())
}

/// The job id for an idempotent submission.
pub fn idempotent_job_id(user: Uuid, kind: JobKind, key: &str) -> Uuid {
    Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("{user}|{}|{key}", kind.as_str()).as_bytes(),
    )
}

impl JobProducer {
    /// Producers for every queue of the stack configured by `config`.
    pub fn new(redis: ConnectionManager, config: &Config) -> Self {
        let backend = |q| super::backend::backend_config(config, q);
        Self {
            status: StatusStore::new(redis.clone(), config),
            reserve: RedisStorage::new(redis.clone()).with_config(backend(RESERVE_QUEUE)),
            expire: RedisStorage::new(redis.clone()).with_config(backend(EXPIRE_QUEUE)),
            recharge: RedisStorage::new(redis.clone()).with_config(backend(RECHARGE_QUEUE)),
            pay: RedisStorage::new(redis.clone()).with_config(backend(PAY_QUEUE)),
            prefix: config.redis_prefix.clone(),
            redis,
        }
    }

    /// The status store shared with the api's job endpoint.
    pub fn status(&self) -> &StatusStore {
        &self.status
    }

    /// Accepts a reserve request: Redis only, no PostgreSQL.
    pub async fn submit_reserve(
        &self,
        user_id: Uuid,
        schedule_id: i64,
        seat_numbers: &[i16],
        idempotency_key: Option<&str>,
        request_id: Option<String>,
    ) -> Result<Submitted> {
        let body = format!("{schedule_id}|{seat_numbers:?}");
        let build = |job_id, accepted_at| ReserveJob {
            job_id,
            user_id,
            schedule_id,
            seat_numbers: seat_numbers.to_vec(),
            accepted_at,
            request_id,
        };
        self.submit(
            &self.reserve,
            JobKind::Reserve,
            user_id,
            &body,
            idempotency_key,
            build,
        )
        .await
    }

    /// Accepts a recharge of `amount` won for `user_id`.
    pub async fn submit_recharge(
        &self,
        user_id: Uuid,
        amount: i64,
        idempotency_key: Option<&str>,
        request_id: Option<String>,
    ) -> Result<Submitted> {
        let build = |job_id, accepted_at| RechargeJob {
            job_id,
            user_id,
            amount,
            accepted_at,
            request_id,
        };
        self.submit(
            &self.recharge,
            JobKind::Recharge,
            user_id,
            &amount.to_string(),
            idempotency_key,
            build,
        )
        .await
    }

    /// Accepts a payment of `reservation_id` by the fan holding queue session `token_id`.
    pub async fn submit_pay(
        &self,
        user_id: Uuid,
        reservation_id: Uuid,
        token_id: &str,
        idempotency_key: Option<&str>,
        request_id: Option<String>,
    ) -> Result<Submitted> {
        let build = |job_id, accepted_at| PayJob {
            job_id,
            user_id,
            reservation_id,
            token_id: token_id.to_owned(),
            accepted_at,
            request_id,
        };
        let body = reservation_id.to_string();
        self.submit(
            &self.pay,
            JobKind::Pay,
            user_id,
            &body,
            idempotency_key,
            build,
        )
        .await
    }

    /// The one way a job is accepted: claim the idempotency key, return an
    /// earlier submission of it, else push the job (task id = job id) and record
    /// it QUEUED. `body` identifies the request for the key's fingerprint.
    async fn submit<J, K>(
        &self,
        storage: &RedisStorage<J>,
        kind: JobKind,
        user_id: Uuid,
        body: &str,
        idempotency_key: Option<&str>,
        build: impl FnOnce(Uuid, DateTime<Utc>) -> J,
    ) -> Result<Submitted>
    where
        J: Serialize + Send + Sync + Unpin + 'static,
        RedisStorage<J>: TaskSink<J, K>,
        <RedisStorage<J> as apalis::prelude::Backend>::Error: std::fmt::Display,
    {
        let (job_id, replayed) = self.claim(kind, user_id, body, idempotency_key).await?;
        if replayed && self.status.exists(job_id).await? {
            return Ok(Submitted { job_id, replayed });
        }
        let accepted_at = Utc::now();
        // The push and the QUEUED status go out together on the multiplexed
        // connection: one round trip, and one AOF fsync to wait for instead of
        // two. The status script writes only if the task is there, so it can
        // never claim a job the push did not queue.
        let (pushed, marked) = tokio::join!(
            push(storage, build(job_id, accepted_at), job_id, None),
            self.status.mark_queued(job_id, kind, user_id, accepted_at)
        );
        pushed?;
        crate::ops::metrics::job_accepted(&self.prefix, kind);
        // Once pushed, the job is accepted: a failed status write must not turn
        // into a 503 that invites a retry (a second recharge without a key). The
        // status reads fall back to the queued task itself (`StatusStore::get`).
        if let Err(error) = marked {
            tracing::warn!(%error, job.id = %job_id, "job queued, but its QUEUED status was not recorded");
        }
        Ok(Submitted { job_id, replayed })
    }

    /// Schedules the expiry of holds that end at `expires_at` as one task
    /// (apalis runs it within ~1 s of that). Its task id is derived from the
    /// holds, so scheduling the same holds again (a redelivered job) is a no-op.
    pub async fn schedule_expiry(
        &self,
        reservation_ids: &[Uuid],
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut reservation_ids = reservation_ids.to_vec();
        reservation_ids.sort_unstable();
        let task_id = expiry_task_id(&reservation_ids);
        // Round up: a delayed task may run up to a second early; the handler waits out the rest.
        let at = u64::try_from(expires_at.timestamp()).unwrap_or_default() + 1;
        let job = ExpireHoldJob {
            reservation_ids,
            reservation_id: None,
            expires_at,
        };
        push(&self.expire, job, task_id, Some(at)).await
    }

    /// Claims the idempotency key (if any) and returns the job id and whether it was already claimed.
    async fn claim(
        &self,
        kind: JobKind,
        user: Uuid,
        body: &str,
        key: Option<&str>,
    ) -> Result<(Uuid, bool)> {
        let Some(key) = key else {
            return Ok((Uuid::now_v7(), false));
        };
        validate_idempotency_key(key)?;
        let job_id = idempotent_job_id(user, kind, key);
        let digest = Sha256::digest(format!("{}|{body}", kind.as_str()));
        let fingerprint: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let redis_key = format!("{}:idem:{job_id}", self.prefix);
        let mut conn = self.redis.clone();
        let claimed: Option<String> = redis::cmd("SET")
            .arg(&redis_key)
            .arg(&fingerprint)
            .arg("NX")
            .arg("EX")
            .arg(IDEMPOTENCY_TTL.as_secs())
            .query_async(&mut conn)
            .await?;
        if claimed.is_some() {
            return Ok((job_id, false));
        }
        let stored: Option<String> = redis::cmd("GET")
            .arg(&redis_key)
            .query_async(&mut conn)
            .await?;
        match stored {
            Some(s) if s == fingerprint => Ok((job_id, true)),
            Some(_) => Err(Error::IdempotencyKeyReused),
            // Expired between the two calls: treat as fresh.
            None => Ok((job_id, false)),
        }
    }
}

/// One hold's expiry task keeps the hold's id (as before batching); a set's is
/// a name-based UUID of its sorted ids.
fn expiry_task_id(sorted_ids: &[Uuid]) -> Uuid {
    match sorted_ids {
        [one] => *one,
        many => {
            let bytes: Vec<u8> = many.iter().flat_map(|id| *id.as_bytes()).collect();
            Uuid::new_v5(&KEY_NAMESPACE, &bytes)
        }
    }
}

async fn push<J, Kind>(
    storage: &RedisStorage<J>,
    job: J,
    id: Uuid,
    run_at: Option<u64>,
) -> Result<()>
where
    J: Serialize + Send + Sync + Unpin + 'static,
    RedisStorage<J>: TaskSink<J, Kind>,
    <RedisStorage<J> as apalis::prelude::Backend>::Error: std::fmt::Display,
{
    let mut builder = TaskBuilder::new(job).task_id(TaskId::from_string(id.to_string()));
    if let Some(at) = run_at {
        builder = builder.run_at_timestamp(at);
    }
    storage
        .clone()
        .push_task(builder.build())
        .await
        .map_err(|e| Error::Queue(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_gives_one_job_id_per_user_and_operation() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            idempotent_job_id(a, JobKind::Recharge, "k"),
            idempotent_job_id(a, JobKind::Recharge, "k")
        );
        assert_ne!(
            idempotent_job_id(a, JobKind::Recharge, "k"),
            idempotent_job_id(b, JobKind::Recharge, "k")
        );
        assert_ne!(
            idempotent_job_id(a, JobKind::Recharge, "k"),
            idempotent_job_id(a, JobKind::Pay, "k")
        );
    }

    #[test]
    fn an_expiry_task_is_named_by_its_holds() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(expiry_task_id(&[a]), a);
        assert_eq!(expiry_task_id(&[a, b]), expiry_task_id(&[a, b]));
        assert_ne!(expiry_task_id(&[a, b]), expiry_task_id(&[a, c]));
        assert_ne!(expiry_task_id(&[a, b]), a);
    }

    #[test]
    fn an_expiry_queued_before_batching_still_names_its_hold() {
        let id = Uuid::new_v4();
        let old = format!(r#"{{"reservation_id":"{id}","expires_at":"2026-11-30T10:00:00Z"}}"#);
        let job: ExpireHoldJob = serde_json::from_str(&old).unwrap();
        assert_eq!(job.holds(), vec![id]);
        let new = serde_json::to_value(ExpireHoldJob {
            reservation_ids: vec![id],
            reservation_id: None,
            expires_at: job.expires_at,
        })
        .unwrap();
        assert!(new.get("reservation_id").is_none(), "{new}");
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert!(validate_idempotency_key("order-42").is_ok());
        for bad in ["", "with space", &"x".repeat(129), "tab\t"] {
            assert!(validate_idempotency_key(bad).is_err(), "{bad:?}");
        }
    }
}

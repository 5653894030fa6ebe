//! The producer side: enqueue jobs into apalis-redis, with idempotency keys.
//!
//! A job's id is chosen here and used as the apalis task id. With an
//! `Idempotency-Key` the id is derived from (user, operation, key), so two
//! concurrent submissions of one key get one id, apalis ignores the second push
//! and PostgreSQL's per-job uniqueness makes any redelivery a no-op.
//!
//! Before anything is queued, one script ([`ADMIT`]) claims the key and counts
//! the job against its user's bound: at most `USER_JOBS_IN_FLIGHT` non-final
//! jobs per user and kind, held in a sorted set per (user, kind) that the
//! worker's final status write empties (`status::MARK`). So one client's loop
//! takes at most that many places in a queue, whatever it sends, and the
//! backlog bound (`backlog`) is left for everybody else.

use std::{sync::LazyLock, time::Duration};

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;
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

/// How long a job counts against its user's in-flight bound at most. A job's
/// final status removes it at once; this only forgets an entry whose job was
/// never pushed (an api that died between the count and the push), so a lost
/// entry costs its user one place for this long, not for good.
pub const IN_FLIGHT_HORIZON: Duration = Duration::from_secs(15 * 60);

/// `Retry-After` of a request over its user's in-flight bound: a job usually
/// settles within a second, and each final one frees a place.
const IN_FLIGHT_RETRY_AFTER: u64 = 1;

/// Claims an idempotency key and counts a job against its user's bound, in
/// one step on Redis' clock, so concurrent requests of one user on any number
/// of api processes can never pass the bound together.
const ADMIT: &str = r"
-- KEYS[1] the user's in-flight set of this kind; KEYS[2] the idempotency key (keyed requests only)
-- ARGV: job id, limit (0: none), horizon ms, fingerprint, key ttl s
-- Returns {0} admitted, {1} a replay of an admitted key, {2} the key was used
-- with another request, {3, in flight} over the bound (nothing written).
if KEYS[2] then
  local stored = redis.call('GET', KEYS[2])
  if stored == ARGV[4] then return {1} end
  if stored then return {2} end
end
local limit = tonumber(ARGV[2])
if limit > 0 then
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local horizon = tonumber(ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - horizon)
  local n = redis.call('ZCARD', KEYS[1])
  if n >= limit then return {3, n} end
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], horizon)
end
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5]) end
return {0}
";

/// Built once: `Script::new` hashes the source, and every accept runs it.
static ADMIT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ADMIT));

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
    /// Read only to answer a keyed replay whose Redis traces have expired.
    db: DatabaseConnection,
    prefix: String,
    /// `USER_JOBS_IN_FLIGHT` (0: no bound).
    in_flight_limit: u64,
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
    pub fn new(redis: ConnectionManager, db: DatabaseConnection, config: &Config) -> Self {
        let backend = |q| super::backend::backend_config(config, q);
        Self {
            status: StatusStore::new(redis.clone(), config),
            reserve: RedisStorage::new(redis.clone()).with_config(backend(RESERVE_QUEUE)),
            expire: RedisStorage::new(redis.clone()).with_config(backend(EXPIRE_QUEUE)),
            recharge: RedisStorage::new(redis.clone()).with_config(backend(RECHARGE_QUEUE)),
            pay: RedisStorage::new(redis.clone()).with_config(backend(PAY_QUEUE)),
            prefix: config.redis_prefix.clone(),
            in_flight_limit: config.user_jobs_in_flight,
            redis,
            db,
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
        let (job_id, replayed) = self.admit(kind, user_id, body, idempotency_key).await?;
        if replayed && self.known(kind, job_id).await? {
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
        if let Err(error) = pushed {
            // Nothing was queued: give back the place and the key, so the
            // client's retry is judged afresh.
            if !replayed {
                self.release(kind, user_id, job_id, idempotency_key).await;
            }
            return Err(error);
        }
        crate::ops::metrics::job_accepted(&self.prefix, kind);
        // Once pushed, the job is accepted: a failed status write must not turn
        // into a 503 that invites a retry (a second recharge without a key). The
        // status reads fall back to the queued task itself (`StatusStore::get`).
        if let Err(error) = marked {
            tracing::warn!(%error, job.id = %job_id, "job queued, but its QUEUED status was not recorded");
        }
        Ok(Submitted { job_id, replayed })
    }

    /// True when a replayed key's job was queued before: Redis still holds its
    /// status or its task, or PostgreSQL its outcome (the key outlives both
    /// Redis traces). False only when the first submission never got its job
    /// queued, and then the replay queues it — never a second run.
    async fn known(&self, kind: JobKind, job_id: Uuid) -> Result<bool> {
        if self.status.traces(kind, job_id).await? {
            return Ok(true);
        }
        Ok(super::outcomes::find(&self.db, job_id).await?.is_some())
    }

    /// Best effort after a failed push: the push's error is what the client hears.
    async fn release(&self, kind: JobKind, user: Uuid, job_id: Uuid, key: Option<&str>) {
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(in_flight_key(&self.prefix, kind, user))
            .arg(job_id.to_string())
            .ignore();
        if key.is_some() {
            pipe.cmd("DEL").arg(self.idempotency_key(job_id)).ignore();
        }
        if let Err(error) = pipe.query_async::<()>(&mut self.redis.clone()).await {
            tracing::warn!(%error, job.id = %job_id, "could not release a job that was not queued");
        }
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

    /// Claims the idempotency key (if any) and counts the job against its
    /// user's in-flight bound, in one script call. Returns the job id and
    /// whether the key was claimed before (a replay, which is not counted again).
    async fn admit(
        &self,
        kind: JobKind,
        user: Uuid,
        body: &str,
        key: Option<&str>,
    ) -> Result<(Uuid, bool)> {
        if key.is_none() && self.in_flight_limit == 0 {
            return Ok((Uuid::now_v7(), false));
        }
        let (job_id, fingerprint) = match key {
            Some(key) => {
                validate_idempotency_key(key)?;
                let digest = Sha256::digest(format!("{}|{body}", kind.as_str()));
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                (idempotent_job_id(user, kind, key), hex)
            }
            None => (Uuid::now_v7(), String::new()),
        };
        let mut call = ADMIT_SCRIPT.key(in_flight_key(&self.prefix, kind, user));
        if key.is_some() {
            call.key(self.idempotency_key(job_id));
        }
        let answer: Vec<u64> = call
            .arg(job_id.to_string())
            .arg(self.in_flight_limit)
            .arg(IN_FLIGHT_HORIZON.as_millis().to_string())
            .arg(fingerprint)
            .arg(IDEMPOTENCY_TTL.as_secs())
            .invoke_async(&mut self.redis.clone())
            .await?;
        match answer.as_slice() {
            [0] => Ok((job_id, false)),
            [1] => Ok((job_id, true)),
            [2] => Err(Error::IdempotencyKeyReused),
            [3, in_flight] => {
                crate::ops::metrics::job_refused(kind, "too_many_jobs");
                Err(Error::TooManyJobs {
                    kind: kind.as_str(),
                    in_flight: *in_flight,
                    limit: self.in_flight_limit,
                    retry_after: IN_FLIGHT_RETRY_AFTER,
                })
            }
            other => Err(Error::Queue(format!(
                "unexpected admission answer {other:?}"
            ))),
        }
    }

    fn idempotency_key(&self, job_id: Uuid) -> String {
        format!("{}:idem:{job_id}", self.prefix)
    }
}

/// The sorted set of `user`'s non-final jobs of `kind` (job id → accepted, ms).
/// The status store removes a job from it with its final status.
pub fn in_flight_key(prefix: &str, kind: JobKind, user: Uuid) -> String {
    format!("{prefix}:inflight:{}:{user}", kind.as_str())
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

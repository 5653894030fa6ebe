//! Job handlers: thin wrappers that run a domain operation, record the
//! outcome, and decide what apalis should retry.
//!
//! Business failures are outcomes (`Ok`), never retries. Infrastructure errors
//! are returned so the Redis backend reschedules the task with backoff; a
//! per-job delivery counter in Redis caps the total (apalis' own attempt count
//! restarts when an orphaned task is re-enqueued) and then finalizes the job as
//! failed, so no accepted job is left without a final status.

use std::{future::Future, sync::Arc, time::Duration};

use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use domain::{
    Config,
    jobs::{
        ExpireHoldJob, JobHeader, JobKind, Outcome, PayJob, RechargeJob, ReserveJob, outcomes,
        producer::JobProducer, status::StatusStore,
    },
    ops::metrics,
    waiting_room::WaitingRoom,
};
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;
use tokio::sync::Semaphore;
use tracing::Instrument;
use uuid::Uuid;

/// What every handler needs; cloned into each worker.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub db: DatabaseConnection,
    pub redis: ConnectionManager,
    pub config: Arc<Config>,
    pub status: StatusStore,
    pub waiting_room: WaitingRoom,
    /// Settles reserve jobs in batches.
    pub reserver: crate::batcher::ReserveBatcher,
    /// One hold expiry in PostgreSQL at a time per worker: the expiry tasks of
    /// a busy minute fall due together, and each would otherwise take one of
    /// the pool's connections while reserves wait for theirs (#28).
    pub expiries: Arc<Semaphore>,
}

impl JobContext {
    /// Everything a worker's handlers share, over these connections.
    pub fn new(db: DatabaseConnection, redis: ConnectionManager, config: &Config) -> Self {
        Self {
            status: StatusStore::new(redis.clone(), config),
            waiting_room: WaitingRoom::new(redis.clone(), config),
            reserver: crate::batcher::ReserveBatcher::start(
                db.clone(),
                JobProducer::new(redis.clone(), db.clone(), config),
                crate::batcher::Deliveries {
                    status: StatusStore::new(redis.clone(), config),
                    max_attempts: config.worker_max_attempts,
                },
                domain::booking::HoldPolicy::from_config(config),
                crate::batcher::BatchShape::from_config(config),
            ),
            db,
            redis,
            config: Arc::new(config.clone()),
            expiries: Arc::new(Semaphore::new(1)),
        }
    }
}

/// Identity of a job run, for status writes and logs.
struct Run {
    id: Uuid,
    kind: JobKind,
    user: Uuid,
    accepted: chrono::DateTime<Utc>,
}

/// The common shape: count the job in the metrics, run its delivery, and
/// record how it ended. `Err` asks apalis to retry.
async fn run_job<F>(
    ctx: &JobContext,
    kind: JobKind,
    accepted: chrono::DateTime<Utc>,
    delivery: F,
) -> Result<Outcome, BoxDynError>
where
    F: Future<Output = Result<Outcome, BoxDynError>>,
{
    let label = metrics::kind_label(kind);
    metrics::job_started(label);
    // Boxed: the domain operation's future is large (clippy::large_futures).
    let result = Box::pin(delivery).await;
    let prefix = &ctx.config.redis_prefix;
    match &result {
        Ok(outcome) => {
            let settle = (Utc::now() - accepted).to_std().ok();
            metrics::job_finished(
                prefix,
                label,
                matches!(outcome, Outcome::Succeeded(_)),
                settle,
            );
        }
        Err(error) => {
            tracing::warn!(%error, "job failed; the queue will retry");
            record_error(prefix, label, error.as_ref());
        }
    }
    result
}

/// Counts a delivery handed back to the queue, and the dependency it failed on.
fn record_error(prefix: &str, label: &'static str, error: &(dyn std::error::Error + 'static)) {
    metrics::job_retry(prefix, label);
    let dependency = if let Some(e) = error.downcast_ref::<domain::Error>() {
        metrics::dependency_of(e)
    } else if error.is::<redis::RedisError>() {
        Some("redis")
    } else if error.is::<sea_orm::DbErr>() {
        Some("postgres")
    } else {
        None
    };
    if let Some(dependency) = dependency {
        metrics::dependency_error(Some(prefix), dependency);
    }
}

/// One delivery of a job run alone: count it and record RUNNING (finalize as
/// failed past the cap), the operation, the final status.
async fn run_delivery<F>(ctx: &JobContext, run: Run, op: F) -> Result<Outcome, BoxDynError>
where
    F: Future<Output = domain::Result<Outcome>>,
{
    let Run {
        id,
        kind,
        user,
        accepted,
    } = run;
    // One round trip: count this delivery and record RUNNING.
    let deliveries = ctx.status.start_delivery(id, kind, user, accepted).await?;
    let outcome = if deliveries > ctx.config.worker_max_attempts {
        give_up(&ctx.db, id, kind, user, accepted).await?
    } else {
        op.await?
    };
    ctx.status
        .mark_final(id, kind, user, accepted, &outcome)
        .await?;
    tracing::info!(outcome = outcome_code(&outcome), "job done");
    Ok(outcome)
}

/// Runs a reserve job. Its batch records the batch's RUNNING and final
/// statuses one script call each, and schedules the holds' expiry.
pub async fn reserve(job: ReserveJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job.reserve", job.id = %job.job_id, request_id = job.request_id.as_deref().unwrap_or(""));
    let accepted = job.accepted_at;
    let delivery = async {
        let outcome = ctx.reserver.reserve(job).await?;
        tracing::info!(outcome = outcome_code(&outcome), "job done");
        Ok(outcome)
    };
    run_job(&ctx, JobKind::Reserve, accepted, delivery)
        .instrument(span)
        .await
        .map(drop)
}

/// Runs a recharge job.
pub async fn recharge(job: RechargeJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job.recharge", job.id = %job.job_id, request_id = job.request_id.as_deref().unwrap_or(""));
    let run = Run {
        id: job.job_id,
        kind: JobKind::Recharge,
        user: job.user_id,
        accepted: job.accepted_at,
    };
    let delivery = run_delivery(&ctx, run, domain::wallet::recharge(&ctx.db, &job));
    run_job(&ctx, JobKind::Recharge, job.accepted_at, delivery)
        .instrument(span)
        .await
        .map(drop)
}

/// Runs a pay job, then ends the payer's queue session so the next fan is admitted.
pub async fn pay(job: PayJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job.pay", job.id = %job.job_id, request_id = job.request_id.as_deref().unwrap_or(""));
    let run = Run {
        id: job.job_id,
        kind: JobKind::Pay,
        user: job.user_id,
        accepted: job.accepted_at,
    };
    async {
        let delivery = run_delivery(&ctx, run, domain::payment::pay(&ctx.db, &job));
        let outcome = run_job(&ctx, JobKind::Pay, job.accepted_at, delivery).await?;
        if matches!(outcome, Outcome::Succeeded(_)) {
            ctx.waiting_room.end_session(&job.token_id).await?;
        }
        Ok(())
    }
    .instrument(span)
    .await
}

/// Expires holds at their time (a no-op for paid or already expired ones).
pub async fn expire_hold(job: ExpireHoldJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let holds = job.holds();
    let span = tracing::info_span!("job.expire_hold", holds = holds.len(), reservation.id = %holds.first().copied().unwrap_or_default());
    async move {
        // Delayed tasks run on whole seconds and may start a little early.
        let early = (job.expires_at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(early.min(Duration::from_secs(5)) + Duration::from_millis(5)).await;
        // Waits here, after the early start, so a waiting task holds no connection.
        let _turn = ctx.expiries.acquire().await?;
        metrics::job_started("expire_hold");
        let prefix = &ctx.config.redis_prefix;
        match expire_in_chunks(&ctx.db, &holds).await {
            Ok(freed) => {
                tracing::info!(seats_freed = freed, "hold expiry checked");
                metrics::job_finished(prefix, "expire_hold", true, None);
                Ok(())
            }
            Err(error) => {
                record_error(prefix, "expire_hold", &error);
                Err(error.into())
            }
        }
    }
    .instrument(span)
    .await
}

/// Holds one expiry statement takes: a batch of `RESERVE_BATCH_MAX` holds is
/// one expiry task, and a statement over all of them would keep their seats
/// locked for as long as it takes to free them all.
const EXPIRE_CHUNK: usize = 64;

/// After each expiry statement the worker's expiries rest three times as long
/// as it took (they hold `JobContext::expiries` meanwhile): 10,000 holds falling
/// due in one burst then take about a quarter of one connection's time until
/// they are freed, not all of the CPU reserves need (#28). Freeing late is
/// safe: reads and reserves treat an overdue hold as free already.
const EXPIRY_REST_FACTOR: u32 = 3;

/// Expires `holds` a chunk at a time, each chunk its own statement (and so its
/// own transaction); returns the seats freed. A chunk that fails leaves the
/// ones before it done: the retried task finds them expired and skips them.
async fn expire_in_chunks(db: &DatabaseConnection, holds: &[Uuid]) -> domain::Result<usize> {
    let mut freed = 0;
    for chunk in holds.chunks(EXPIRE_CHUNK) {
        let started = std::time::Instant::now();
        freed += domain::booking::expire_reservations(db, chunk).await?;
        tokio::time::sleep(started.elapsed() * EXPIRY_REST_FACTOR).await;
    }
    Ok(freed)
}

/// Finalizes a job past its delivery cap (a reserve its batch counted past
/// it, or one apalis buried: see `housekeeping::reap`): its stored outcome if
/// it has one, else `FAILED` `ATTEMPTS_EXHAUSTED`; then records the final
/// status for pollers.
pub async fn finalize_exhausted(
    db: &DatabaseConnection,
    status: &StatusStore,
    job: JobHeader,
    kind: JobKind,
) -> domain::Result<Outcome> {
    let outcome = give_up(db, job.job_id, kind, job.user_id, job.accepted_at).await?;
    status.mark_finals(kind, &[(job, &outcome)]).await?;
    Ok(outcome)
}

/// Finalizes a job that kept failing on infrastructure errors: its stored
/// outcome if it has one, else `FAILED` `ATTEMPTS_EXHAUSTED`, stored.
async fn give_up(
    db: &DatabaseConnection,
    id: Uuid,
    kind: JobKind,
    user: Uuid,
    accepted: chrono::DateTime<Utc>,
) -> domain::Result<Outcome> {
    if let Some(done) = outcomes::find(db, id).await? {
        return Ok(done);
    }
    let outcome = Outcome::failed(
        "ATTEMPTS_EXHAUSTED",
        "the job failed repeatedly on internal errors; nothing was changed",
    );
    outcomes::insert(db, id, kind, user, accepted, &outcome).await?;
    tracing::error!("job finalized as failed after its last attempt");
    Ok(outcome)
}

fn outcome_code(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Succeeded(_) => "SUCCEEDED",
        Outcome::Failed { code, .. } => code,
    }
}

//! The worker's periodic chores beside consuming jobs: expire overdue holds,
//! finalize jobs apalis-redis buried, and clear what it leaves in Redis.
//! Every chore is safe in every worker process at once.

use std::time::Duration;

use apalis::prelude::BoxDynError;
use domain::jobs::{
    ExpireHoldJob, JobHeader,
    backend::{ALL_QUEUES, CLIENT_QUEUES, EXPIRE_QUEUE, orphan_window},
    housekeeping::{self, DeadTask},
};
use tokio::sync::watch;

use crate::handlers::{self, JobContext};

/// Overdue holds expired per sweep transaction.
const SWEEP_BATCH: u64 = 500;
/// How often finished tasks and gone workers' metadata are cleared, and the
/// minimum age of a finished task before it is.
const VACUUM_EVERY: Duration = Duration::from_secs(300);
const VACUUM_AGE: Duration = Duration::from_secs(3600);
/// How often the dead sets are checked.
const REAP_EVERY: Duration = Duration::from_secs(10);

/// Runs `chore` every `every` until `stop` turns true (first run after one period).
async fn every<F, Fut>(every: Duration, mut stop: watch::Receiver<bool>, mut chore: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => chore().await,
            () = stopped(&mut stop) => return,
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Every `WORKER_SWEEP_INTERVAL_SECONDS`, expire overdue holds whose expiry job
/// was lost or is late (`FOR UPDATE SKIP LOCKED`), until a batch comes back short.
pub async fn sweep(ctx: JobContext, stop: watch::Receiver<bool>) {
    every(ctx.config.worker_sweep_interval, stop, || async {
        loop {
            match domain::booking::sweep_expired(&ctx.db, SWEEP_BATCH).await {
                Ok(0) => break,
                Ok(n) => {
                    tracing::info!(expired = n, "sweep expired overdue holds");
                    if n < SWEEP_BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "sweep failed; will retry");
                    break;
                }
            }
        }
    })
    .await;
}

/// Every `VACUUM_EVERY`: delete finished tasks older than `VACUUM_AGE`, and the
/// metadata of workers that left the registry, from every queue.
pub async fn vacuum(ctx: JobContext, stop: watch::Receiver<bool>) {
    let (redis, config) = (&ctx.redis, &ctx.config);
    every(VACUUM_EVERY, stop, || async {
        for queue in ALL_QUEUES {
            match housekeeping::vacuum_done(redis, config, queue, VACUUM_AGE).await {
                Ok(n) if n > 0 => tracing::info!(queue, deleted = n, "vacuumed finished tasks"),
                Ok(_) => {}
                Err(error) => tracing::warn!(queue, %error, "vacuum failed; will retry"),
            }
            let min_age = orphan_window(config) + VACUUM_EVERY;
            match housekeeping::prune_worker_metadata(redis, config, queue, min_age).await {
                Ok(n) if n > 0 => tracing::info!(queue, deleted = n, "pruned gone workers"),
                Ok(_) => {}
                Err(error) => tracing::warn!(queue, %error, "worker pruning failed; will retry"),
            }
        }
    })
    .await;
}

/// Every `REAP_EVERY`, finalize the jobs apalis-redis buried in its dead sets.
/// A task lands there after 25 failed deliveries in a row — PostgreSQL away
/// for longer than the backoff — and nothing else would ever end it. A job
/// still without an outcome is finalized `FAILED` (`ATTEMPTS_EXHAUSTED`, as
/// past `WORKER_MAX_ATTEMPTS`); while PostgreSQL is still away it stays
/// buried and is tried again next time, however long that takes.
pub async fn reap(ctx: JobContext, stop: watch::Receiver<bool>) {
    every(REAP_EVERY, stop, || async {
        reap_once(&ctx).await;
    })
    .await;
}

/// One pass over every dead set; returns how many tasks were settled.
pub async fn reap_once(ctx: &JobContext) -> usize {
    let mut settled = 0;
    for queue in ALL_QUEUES {
        let tasks = match housekeeping::dead_tasks(&ctx.redis, &ctx.config, queue).await {
            Ok(tasks) => tasks,
            Err(error) => {
                tracing::warn!(queue, %error, "could not read the dead set; will retry");
                continue;
            }
        };
        for task in tasks {
            match settle(ctx, queue, &task).await {
                Ok(()) => settled += 1,
                Err(error) => {
                    tracing::warn!(queue, task = task.task_id, %error, "buried task not settled yet; will retry");
                }
            }
        }
    }
    settled
}

/// Ends one buried task, then removes it from the dead set.
async fn settle(ctx: &JobContext, queue: &str, task: &DeadTask) -> Result<(), BoxDynError> {
    let kind = CLIENT_QUEUES
        .iter()
        .find_map(|(kind, q)| (*q == queue).then_some(*kind));
    let header = task
        .data
        .as_deref()
        .and_then(|data| serde_json::from_slice::<JobHeader>(data).ok());
    match (kind, header) {
        (Some(kind), Some(job)) => {
            handlers::finalize_exhausted(&ctx.db, &ctx.status, job, kind).await?;
            tracing::error!(job.id = %job.job_id, queue, "buried job finalized");
        }
        // A buried expiry: expire its holds now if still due (the sweep would too).
        _ if queue == EXPIRE_QUEUE => {
            let holds = task
                .data
                .as_deref()
                .and_then(|data| serde_json::from_slice::<ExpireHoldJob>(data).ok())
                .map(|job| job.holds());
            if let Some(holds) = holds {
                domain::booking::expire_reservations(&ctx.db, &holds).await?;
            }
        }
        // No payload left to finalize from: nothing a client can wait for.
        _ => tracing::error!(
            queue,
            task = task.task_id,
            "buried task without a payload dropped"
        ),
    }
    housekeeping::forget_dead_task(&ctx.redis, &ctx.config, queue, &task.task_id).await?;
    Ok(())
}

//! The job worker: an apalis Monitor over the Redis-backed queues, plus the
//! periodic sweep of overdue holds. Wiring only — behaviour lives in `domain`.

pub mod handlers;
pub mod poll;

use std::{future::Future, sync::Arc, time::Duration};

use apalis::prelude::{BackendExt, Monitor, ParallelizeExt, WorkerBuilder, WorkerBuilderExt};
use apalis_redis::RedisStorage;
use domain::{
    Config,
    jobs::{
        ExpireHoldJob, PayJob, RechargeJob, ReserveJob,
        backend::{
            ALL_QUEUES, EXPIRE_QUEUE, PAY_QUEUE, RECHARGE_QUEUE, RESERVE_QUEUE, backend_config,
            worker_name,
        },
        producer::JobProducer,
        status::StatusStore,
    },
};
use handlers::JobContext;
use poll::ArmedInterval;
use tokio::sync::watch;

/// Overdue holds expired per sweep transaction.
const SWEEP_BATCH: u64 = 500;
/// How often finished tasks are vacuumed from apalis-redis, and their minimum age.
const VACUUM_EVERY: Duration = Duration::from_secs(300);
const VACUUM_AGE: Duration = Duration::from_secs(3600);

/// Connects, registers every job worker and runs until `shutdown` resolves;
/// in-flight jobs then get `SHUTDOWN_GRACE_SECONDS` to finish. Jobs still running
/// after that are recovered by another worker once this one's heartbeat is missed.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = domain::platform::db::connect(&config).await?;
    let redis = domain::platform::redis_conn::connect(&config).await?;
    let ctx = JobContext {
        status: StatusStore::new(redis.clone(), &config.redis_prefix),
        producer: JobProducer::new(redis.clone(), &config),
        waiting_room: domain::waiting_room::WaitingRoom::new(redis.clone(), &config),
        db: db.clone(),
        redis: redis.clone(),
        config: Arc::new(config.clone()),
    };
    tracing::info!(
        orphan_window_s = domain::jobs::backend::orphan_window(&config).as_secs(),
        concurrency = config.worker_concurrency,
        "worker started"
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let sweeper = tokio::spawn(sweep_loop(
        db,
        config.worker_sweep_interval,
        stop_rx.clone(),
    ));
    let vacuum = tokio::spawn(vacuum_loop(redis.clone(), config.clone(), stop_rx));
    let monitor = register(monitor(&config), &config, &redis, &ctx);
    let result = monitor
        .run_with_signal(async move {
            shutdown.await;
            tracing::info!("worker shutting down");
            Ok(())
        })
        .await;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(sweeper, vacuum);
    result?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Registers one consumer of `$queue` running `$handler` for jobs of type `$job`.
/// A macro because apalis' builder types differ per handler.
macro_rules! consumer {
    ($monitor:expr, $config:expr, $redis:expr, $ctx:expr, $job:ty, $queue:expr, $handler:path) => {{
        let (poll, concurrency) = ($config.worker_poll_interval, $config.worker_concurrency);
        let (backend, redis, ctx) = (
            backend_config($config, $queue),
            $redis.clone(),
            $ctx.clone(),
        );
        $monitor.register(move |_| {
            WorkerBuilder::new(worker_name($queue))
                .backend(
                    RedisStorage::<$job>::new(redis.clone())
                        .with_config(backend.clone())
                        .poll_with_strategy(ArmedInterval::new(poll)),
                )
                .concurrency(concurrency)
                .parallelize(tokio::spawn)
                .data(ctx.clone())
                .build($handler)
        })
    }};
}

fn register(
    monitor: Monitor,
    config: &Config,
    redis: &redis::aio::ConnectionManager,
    ctx: &JobContext,
) -> Monitor {
    let monitor = consumer!(
        monitor,
        config,
        redis,
        ctx,
        ReserveJob,
        RESERVE_QUEUE,
        handlers::reserve
    );
    let monitor = consumer!(
        monitor,
        config,
        redis,
        ctx,
        ExpireHoldJob,
        EXPIRE_QUEUE,
        handlers::expire_hold
    );
    let monitor = consumer!(
        monitor,
        config,
        redis,
        ctx,
        RechargeJob,
        RECHARGE_QUEUE,
        handlers::recharge
    );
    consumer!(
        monitor,
        config,
        redis,
        ctx,
        PayJob,
        PAY_QUEUE,
        handlers::pay
    )
}

/// Every `interval`, expire overdue holds whose expiry job was lost or is late.
/// Safe in every worker process at once (`FOR UPDATE SKIP LOCKED`).
async fn sweep_loop(
    db: sea_orm::DatabaseConnection,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        // A full batch means there may be more: keep going until a batch comes back short.
        loop {
            match domain::booking::sweep_expired(&db, SWEEP_BATCH).await {
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
    }
}

/// Every `VACUUM_EVERY` (first run after one period, never at start-up), delete
/// finished tasks older than `VACUUM_AGE` from every queue.
async fn vacuum_loop(
    redis: redis::aio::ConnectionManager,
    config: Config,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(VACUUM_EVERY) => {}
            _ = stop.changed() => return,
        }
        for queue in ALL_QUEUES {
            match domain::jobs::backend::vacuum_done(&redis, &config, queue, VACUUM_AGE).await {
                Ok(n) if n > 0 => tracing::info!(queue, deleted = n, "vacuumed finished tasks"),
                Ok(_) => {}
                Err(error) => tracing::warn!(queue, %error, "vacuum failed; will retry"),
            }
        }
    }
}

/// A Monitor that logs worker events, restarts a worker that stopped on an error
/// (a Redis timeout must not end consumption for good, apalis-redis #76) and
/// bounds the shutdown drain.
fn monitor(config: &Config) -> Monitor {
    Monitor::new()
        .shutdown_timeout(config.shutdown_grace)
        .should_restart(|ctx, error| {
            tracing::error!(worker = ctx.name(), %error, "worker stopped on an error; restarting");
            true
        })
        .on_event(|ctx, event| tracing::debug!(worker = ctx.name(), ?event, "worker event"))
}

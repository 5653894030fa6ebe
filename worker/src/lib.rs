//! The job worker: one supervised apalis consumer per Redis-backed queue, plus
//! the periodic chores in [`housekeeping`]. Wiring only — behaviour lives in `domain`.

pub mod batcher;
pub mod handlers;
pub mod housekeeping;
pub mod observe;
pub mod poll;

use std::{future::Future, time::Duration};

use apalis::prelude::{BackendExt, Monitor, ParallelizeExt, WorkerBuilder, WorkerBuilderExt};
use apalis_redis::RedisStorage;
use domain::{
    Config,
    jobs::{
        ExpireHoldJob, PayJob, RechargeJob, ReserveJob,
        backend::{
            EXPIRE_QUEUE, PAY_QUEUE, RECHARGE_QUEUE, RESERVE_QUEUE, backend_config, worker_name,
        },
    },
};
use handlers::JobContext;
use poll::ArmedInterval;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

/// First wait before a consumer that stopped on an error is started again; it
/// doubles on each stop in a row up to [`RESTART_MAX`], and starts over once a
/// consumer has run for [`RESTART_HEALTHY`]. Without it, a Redis outage turns
/// into a tight loop of restarts (each registering a new worker in Redis).
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);
const RESTART_HEALTHY: Duration = Duration::from_secs(60);

/// Checks Redis keeps an append-only file, connects, starts every consumer and
/// chore and runs until `shutdown` resolves; in-flight jobs then get
/// `SHUTDOWN_GRACE_SECONDS` to finish. Jobs still running after that are
/// recovered by another worker once this one's heartbeat is missed.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    domain::platform::redis_conn::require_durable(&config).await?;
    let db = domain::platform::db::connect(&config).await?;
    let redis = domain::platform::redis_conn::connect(&config).await?;
    let ctx = JobContext::new(db, redis, &config);
    tracing::info!(
        orphan_window_s = domain::jobs::backend::orphan_window(&config).as_secs(),
        concurrency = config.worker_concurrency,
        "worker started"
    );
    let (stop_tx, stop) = watch::channel(false);
    let tasks: Vec<JoinHandle<()>> = vec![
        tokio::spawn(housekeeping::sweep(ctx.clone(), stop.clone())),
        tokio::spawn(housekeeping::vacuum(ctx.clone(), stop.clone())),
        tokio::spawn(housekeeping::reap(ctx.clone(), stop.clone())),
        observe::start(&config, ctx.db.clone(), ctx.redis.clone(), stop.clone()).await,
        supervise!(ctx, stop, ReserveJob, RESERVE_QUEUE, handlers::reserve),
        supervise!(
            ctx,
            stop,
            ExpireHoldJob,
            EXPIRE_QUEUE,
            handlers::expire_hold
        ),
        supervise!(ctx, stop, RechargeJob, RECHARGE_QUEUE, handlers::recharge),
        supervise!(ctx, stop, PayJob, PAY_QUEUE, handlers::pay),
    ];
    shutdown.await;
    tracing::info!("worker shutting down");
    let _ = stop_tx.send(true);
    futures::future::join_all(tasks).await;
    tracing::info!("worker stopped");
    Ok(())
}

/// Spawns the supervisor of one queue's consumer: runs `$handler` for jobs of
/// type `$job` from `$queue` in its own apalis Monitor and, when the consumer
/// stops on an error (a Redis outage, apalis-redis #76), starts a new one
/// under a new name after a backoff, until `$stop` turns true. A macro because
/// apalis' builder types differ per handler.
macro_rules! supervise {
    ($ctx:expr, $stop:expr, $job:ty, $queue:expr, $handler:path) => {{
        let (ctx, mut stop): (JobContext, watch::Receiver<bool>) = ($ctx.clone(), $stop.clone());
        tokio::spawn(async move {
            let mut wait = RESTART_FIRST;
            loop {
                let name = worker_name($queue);
                if let Err(error) = domain::jobs::housekeeping::record_worker(
                    &ctx.redis, &ctx.config, $queue, &name,
                )
                .await
                {
                    tracing::warn!(queue = $queue, %error, "could not record the worker's name");
                }
                let (backend, data) = (backend_config(&ctx.config, $queue), ctx.clone());
                let (poll, concurrency) = (
                    ctx.config.worker_poll_interval,
                    domain::jobs::backend::concurrency(&ctx.config, $queue),
                );
                let redis = ctx.redis.clone();
                let monitor = monitor(&ctx.config).register(move |_| {
                    WorkerBuilder::new(name.clone())
                        .backend(
                            RedisStorage::<$job>::new(redis.clone())
                                .with_config(backend.clone())
                                .poll_with_strategy(ArmedInterval::new(poll)),
                        )
                        .concurrency(concurrency)
                        .parallelize(tokio::spawn)
                        .data(data.clone())
                        .build($handler)
                });
                let started = Instant::now();
                let mut signal = stop.clone();
                let ran = monitor
                    .run_with_signal(async move {
                        housekeeping::stopped(&mut signal).await;
                        Ok(())
                    })
                    .await;
                if *stop.borrow() {
                    return;
                }
                if started.elapsed() >= RESTART_HEALTHY {
                    wait = RESTART_FIRST;
                }
                tracing::error!(queue = $queue, ?ran, wait_ms = wait.as_millis(), "consumer stopped; starting a new one after a backoff");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = housekeeping::stopped(&mut stop) => return,
                }
                wait = (wait * 2).min(RESTART_MAX);
            }
        })
    }};
}
use supervise;

/// A Monitor for one consumer: logs its events and the error it stopped on,
/// never restarts it itself (the supervisor does, with backoff), and bounds
/// the shutdown drain.
fn monitor(config: &Config) -> Monitor {
    Monitor::new()
        .shutdown_timeout(config.shutdown_grace)
        .should_restart(|ctx, error| {
            tracing::error!(worker = ctx.name(), %error, "consumer stopped on an error");
            false
        })
        .on_event(|ctx, event| tracing::debug!(worker = ctx.name(), ?event, "worker event"))
}

//! The job worker: an apalis Monitor over Redis-backed queues.
//!
//! Wiring only — handlers live in `domain`. Job kinds (reserve, expire, recharge,
//! pay) and the expiry sweep register here as they are built.

use std::future::Future;

use apalis::prelude::Monitor;
use domain::Config;

/// Connects, registers every job worker and runs until `shutdown` resolves; then
/// in-flight jobs get `SHUTDOWN_GRACE_SECONDS` to finish. Jobs still running after
/// that are recovered by another worker once this one's heartbeat is missed.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Fail fast at start when a dependency is unreachable; job workers take
    // these handles as they are registered.
    let _db = domain::db::connect(&config).await?;
    let _redis = domain::redis_conn::connect(&config).await?;
    tracing::info!(
        orphan_window_s = domain::queue::orphan_window(&config).as_secs(),
        poll_interval_ms =
            u64::try_from(config.worker_poll_interval.as_millis()).unwrap_or(u64::MAX),
        "worker started"
    );
    let (monitor, registered) = (monitor(&config), 0_usize);
    if registered == 0 {
        // apalis' Monitor returns at once without workers; stay up (and honest in the log)
        // until job kinds are registered.
        tracing::warn!("no job kinds are registered yet; waiting for shutdown");
        shutdown.await;
        return Ok(());
    }
    monitor
        .run_with_signal(async move {
            shutdown.await;
            tracing::info!("worker shutting down");
            Ok(())
        })
        .await?;
    tracing::info!("worker stopped");
    Ok(())
}

/// A Monitor that logs worker events, restarts a worker that stopped on an error
/// (a Redis timeout must not kill consumption for good, apalis-redis #76) and
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

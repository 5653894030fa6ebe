//! The operations window: per-second samples of a stack kept in Redis for ten
//! minutes, written by every api and worker process.
//!
//! Why Redis and not a ring in each process: with two api instances behind a
//! balancer, either may answer the ops page, and each sees only its own
//! requests. So each process tallies its events in memory ([`add`], no I/O on
//! the hot path) and once a second adds the deltas to the current second's hash
//! `{prefix}:ops:s:{unix second}` with `HINCRBY` (sample.lua), which sums any
//! number of processes; the same call records the stack-wide gauges (line
//! length, queue depths), identical whoever writes them. The admission script
//! adds admissions, leaves and reaps to the same hashes itself. Any instance
//! then reads the same window ([`super::snapshot`]).

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
    time::Duration,
};

use redis::aio::ConnectionManager;
use tokio::sync::watch;

use crate::jobs::backend::{ALL_QUEUES, queue_name};

/// Seconds of history the ops page shows.
pub const WINDOW_SECONDS: i64 = 600;
/// Lifetime of a second's hash: the window plus a margin (admission.lua uses the same).
pub const SECOND_TTL_SECONDS: u64 = 660;
/// How often each process flushes its tallies and samples the gauges.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("sample.lua")));

/// Unflushed event counts, per stack prefix (a test process runs several stacks).
static PENDING: LazyLock<Mutex<HashMap<String, HashMap<String, i64>>>> =
    LazyLock::new(Mutex::default);

/// Counts `n` events of `field` for the stack `prefix`, to be flushed within a second.
pub fn add(prefix: &str, field: &str, n: i64) {
    let Ok(mut pending) = PENDING.lock() else {
        return;
    };
    let stack = match pending.get_mut(prefix) {
        Some(stack) => stack,
        None => pending.entry(prefix.to_owned()).or_default(),
    };
    match stack.get_mut(field) {
        Some(count) => *count += n,
        None => {
            stack.insert(field.to_owned(), n);
        }
    }
}

fn take(prefix: &str) -> HashMap<String, i64> {
    PENDING
        .lock()
        .ok()
        .and_then(|mut p| p.remove(prefix))
        .unwrap_or_default()
}

/// Index of the settle-time bucket of `d` in [`super::metrics::BUCKETS`]
/// (`BUCKETS.len()` past the last bound).
pub fn bucket_of(d: Duration) -> usize {
    let secs = d.as_secs_f64();
    super::metrics::BUCKETS
        .iter()
        .position(|bound| secs <= *bound)
        .unwrap_or(super::metrics::BUCKETS.len())
}

/// Depth of one queue, stack-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub waiting: u64,
    pub scheduled: u64,
    pub running: u64,
    pub dead: u64,
}

/// The stack-wide gauges a sample read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Redis' clock, unix seconds.
    pub second: i64,
    pub waiting: u64,
    pub active: u64,
    pub admitted_total: u64,
    pub left_total: u64,
    pub reaped_total: u64,
    /// By queue kind (`reserve`, `expire_hold`, `recharge`, `pay`).
    pub queues: Vec<(&'static str, Depth)>,
}

/// Flushes this process's tallies for `prefix` and samples the gauges.
/// On failure the tallies are put back, so a Redis outage loses no counts.
pub async fn sample(redis: &ConnectionManager, prefix: &str) -> Result<Sample, redis::RedisError> {
    let deltas = take(prefix);
    let mut call = SCRIPT.prepare_invoke();
    call.arg(prefix)
        .arg(SECOND_TTL_SECONDS)
        .arg(ALL_QUEUES.len());
    for queue in ALL_QUEUES {
        call.arg(queue).arg(queue_name(prefix, queue));
    }
    for (field, n) in &deltas {
        call.arg(field).arg(n);
    }
    let reply: Vec<i64> = match call.invoke_async(&mut redis.clone()).await {
        Ok(reply) => reply,
        Err(error) => {
            for (field, n) in &deltas {
                add(prefix, field, *n);
            }
            return Err(error);
        }
    };
    let n = |i: usize| {
        reply
            .get(i)
            .copied()
            .map_or(0, |v| u64::try_from(v).unwrap_or(0))
    };
    let queues = ALL_QUEUES
        .iter()
        .enumerate()
        .map(|(q, name)| {
            let at = 6 + 4 * q;
            let depth = Depth {
                waiting: n(at),
                scheduled: n(at + 1),
                running: n(at + 2),
                dead: n(at + 3),
            };
            (*name, depth)
        })
        .collect();
    Ok(Sample {
        second: reply.first().copied().unwrap_or_default(),
        waiting: n(1),
        active: n(2),
        admitted_total: n(3),
        left_total: n(4),
        reaped_total: n(5),
        queues,
    })
}

/// Once a second until `stop` turns true (or its sender is gone): flush, sample,
/// refresh the Prometheus gauges (stack-wide ones and this process's pool).
pub async fn sample_loop(
    redis: ConnectionManager,
    db: sea_orm::DatabaseConnection,
    prefix: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
        }
        super::metrics::db_pool(&db);
        match sample(&redis, &prefix).await {
            Ok(sample) => super::metrics::stack_gauges(&sample),
            Err(error) => {
                super::metrics::dependency_error(None, "redis");
                tracing::debug!(%error, "ops sample failed; counts kept for the next one");
            }
        }
    }
    // A last flush, so a clean shutdown loses no counts.
    let _ = sample(&redis, &prefix).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_are_kept_per_stack() {
        add("stack-a-test", "http", 2);
        add("stack-a-test", "http", 3);
        add("stack-b-test", "http", 7);
        assert_eq!(take("stack-a-test").get("http"), Some(&5));
        assert_eq!(take("stack-a-test").get("http"), None);
        assert_eq!(take("stack-b-test").get("http"), Some(&7));
    }

    #[test]
    fn settle_times_fall_into_the_first_bucket_that_holds_them() {
        assert_eq!(bucket_of(Duration::from_millis(1)), 0);
        assert_eq!(bucket_of(Duration::from_millis(40)), 5);
        assert_eq!(
            bucket_of(Duration::from_secs(1000)),
            super::super::metrics::BUCKETS.len()
        );
    }
}

//! The apalis-redis backend: queue names and settings shared by the producer
//! (api) and the consumers (worker), so both sides always address the same
//! queues the same way. What apalis-redis leaves behind is cleared by
//! [`super::housekeeping`].

use std::time::Duration;

use uuid::Uuid;

use super::JobKind;
use crate::platform::config::Config;

/// Queue names (under `REDIS_PREFIX`, see [`queue_name`]).
pub const RESERVE_QUEUE: &str = "reserve";
/// Delayed expiry of seat holds.
pub const EXPIRE_QUEUE: &str = "expire_hold";
/// Balance recharges.
pub const RECHARGE_QUEUE: &str = "recharge";
/// Payments.
pub const PAY_QUEUE: &str = "pay";
/// Every queue, for housekeeping that must not miss one.
pub const ALL_QUEUES: [&str; 4] = [RESERVE_QUEUE, EXPIRE_QUEUE, RECHARGE_QUEUE, PAY_QUEUE];
/// The queues of client-visible jobs, by kind.
pub const CLIENT_QUEUES: [(JobKind, &str); 3] = [
    (JobKind::Reserve, queue_of(JobKind::Reserve)),
    (JobKind::Recharge, queue_of(JobKind::Recharge)),
    (JobKind::Pay, queue_of(JobKind::Pay)),
];

/// The queue a client-visible job of `kind` goes to.
pub const fn queue_of(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Reserve => RESERVE_QUEUE,
        JobKind::Recharge => RECHARGE_QUEUE,
        JobKind::Pay => PAY_QUEUE,
    }
}

/// The backend config of one job queue, tuned per the stack notes:
/// short heartbeat so a dead worker's jobs are recovered in seconds, not the
/// 5-minute default, and so a worker that missed a wake-up polls within a second;
/// plain queue names (a `:` defeats apalis' pub/sub wake-up). No apalis events:
/// its scripts would `PUBLISH` every task's lease and completion (two per job)
/// to channels nothing here subscribes to, and pushes land in the scheduled
/// set, which publishes nothing anyway (workers poll).
pub fn backend_config(config: &Config, queue: &str) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(queue_name(&config.redis_prefix, queue))
        .heartbeat_interval(config.worker_heartbeat)
        .missed_heartbeats(config.worker_missed_heartbeats)
        .batch_size(fetch_batch(config, queue))
        .emit_events(false)
}

/// Jobs one consumer of `queue` takes in at once. A reserve job waits in the
/// worker's batcher without a connection of its own, so the reserve consumer
/// takes enough for the batches in PostgreSQL and the next one gathering
/// (`RESERVE_BATCH_MAX` × (`RESERVE_BATCHES_IN_FLIGHT` + 1)), never fewer than
/// `WORKER_CONCURRENCY`: batches then grow with the work waiting, where a fixed
/// 64 capped them and made a closed loop of more clients wait on the worker
/// (#28). Every other job holds a connection for its transaction.
pub fn concurrency(config: &Config, queue: &str) -> usize {
    if queue == RESERVE_QUEUE {
        let batches = config.reserve_batches_in_flight.saturating_add(1);
        config
            .reserve_batch_max
            .saturating_mul(batches)
            .max(config.worker_concurrency)
    } else {
        config.worker_concurrency
    }
}

/// Tasks one fetch takes (apalis' `batch_size`): what the consumer can take, at
/// most 100 per script call.
fn fetch_batch(config: &Config, queue: &str) -> usize {
    concurrency(config, queue).clamp(1, 100)
}

/// `{prefix}_{queue}`: the stack's prefix keeps stacks sharing one Redis apart.
pub fn queue_name(prefix: &str, queue: &str) -> String {
    format!("{prefix}_{queue}")
}

/// Worker names must be unique per process start (apalis #504): a reused name is
/// refused while the old one is still inside its orphan window.
pub fn worker_name(kind: &str) -> String {
    let id = Uuid::new_v4().simple().to_string();
    format!("{kind}-{}-{}", std::process::id(), &id[..12])
}

/// How long until a silent worker's jobs are handed to another worker.
pub fn orphan_window(config: &Config) -> Duration {
    config.worker_heartbeat * u32::try_from(config.worker_missed_heartbeats).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn queues_are_namespaced_without_colons() {
        let config = Config::from_map(&HashMap::from([("REDIS_PREFIX", "stack-a".to_owned())]))
            .expect("valid");
        let backend = backend_config(&config, "reserve");
        assert_eq!(backend.queue.as_ref(), "stack-a_reserve");
        assert!(!backend.queue.as_ref().contains(':'));
    }

    #[test]
    fn the_orphan_window_is_seconds_not_minutes() {
        let config = Config::from_map(&HashMap::new()).expect("valid");
        assert_eq!(orphan_window(&config), Duration::from_secs(15));
        assert_eq!(
            backend_config(&config, "q").orphaned_duration(),
            orphan_window(&config)
        );
    }

    #[test]
    fn the_reserve_consumer_takes_in_what_its_batches_can_hold() {
        let config = |pairs: &[(&str, &str)]| {
            let map = pairs.iter().map(|(k, v)| (*k, (*v).to_owned()));
            Config::from_map(&map.collect::<HashMap<_, _>>()).expect("valid")
        };
        let defaults = config(&[]);
        // 256 per batch, one in PostgreSQL and one gathering.
        assert_eq!(concurrency(&defaults, RESERVE_QUEUE), 512);
        assert_eq!(concurrency(&defaults, PAY_QUEUE), 64);
        assert_eq!(backend_config(&defaults, RESERVE_QUEUE).batch_size, 100);
        assert!(!backend_config(&defaults, PAY_QUEUE).emit_events);
        let two = config(&[
            ("RESERVE_BATCH_MAX", "10"),
            ("RESERVE_BATCHES_IN_FLIGHT", "2"),
        ]);
        // Never fewer than WORKER_CONCURRENCY.
        assert_eq!(concurrency(&two, RESERVE_QUEUE), 64);
        let small = config(&[("WORKER_CONCURRENCY", "4"), ("RESERVE_BATCH_MAX", "10")]);
        assert_eq!(concurrency(&small, RESERVE_QUEUE), 20);
        assert_eq!(concurrency(&small, RECHARGE_QUEUE), 4);
        assert_eq!(backend_config(&small, RECHARGE_QUEUE).batch_size, 4);
    }

    #[test]
    fn worker_names_differ_per_start() {
        assert_ne!(worker_name("reserve"), worker_name("reserve"));
    }
}

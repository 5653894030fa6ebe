//! The apalis-redis backend: queue names and settings shared by the producer
//! (api) and the consumers (worker), so both sides always address the same
//! queues the same way; and the housekeeping apalis-redis does not do itself.

use std::time::Duration;

use uuid::Uuid;

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

/// The backend config of one job queue, tuned per the stack notes:
/// short heartbeat so a dead worker's jobs are recovered in seconds, not the
/// 5-minute default, and so a worker that missed a wake-up polls within a second;
/// plain queue names (a `:` defeats apalis' pub/sub wake-up).
pub fn backend_config(config: &Config, queue: &str) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(queue_name(&config.redis_prefix, queue))
        .heartbeat_interval(config.worker_heartbeat)
        .missed_heartbeats(config.worker_missed_heartbeats)
        .batch_size(config.worker_concurrency.clamp(1, 100))
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

/// Deletes finished (`Done`) tasks of `queue` older than `older_than` from
/// apalis-redis, which otherwise keeps every task's data forever. Unlike
/// apalis' own vacuum it never touches `Failed` tasks: those are waiting for
/// their retry. Works in HSCAN batches so Redis is never blocked for long.
pub async fn vacuum_done(
    redis: &redis::aio::ConnectionManager,
    config: &Config,
    queue: &str,
    older_than: Duration,
) -> Result<u64, redis::RedisError> {
    const BATCH: &str = r"
        -- KEYS: data hash, meta hash prefix, done set; ARGV: cutoff (s), task ids...
        local deleted = 0
        for i = 2, #ARGV do
          local id = ARGV[i]
          local meta = KEYS[2] .. ':' .. id
          local status = redis.call('HGET', meta, 'status')
          local done_at = tonumber(redis.call('HGET', meta, 'done_at') or '')
          if status == 'Done' and done_at and done_at <= tonumber(ARGV[1]) then
            redis.call('HDEL', KEYS[1], id)
            redis.call('HDEL', KEYS[2] .. ':result', id)
            redis.call('DEL', meta)
            redis.call('SREM', KEYS[3], id)
            deleted = deleted + 1
          end
        end
        return deleted";
    let backend = backend_config(config, queue);
    let (data, meta, done) = (
        backend.job_data_hash(),
        backend.job_meta_hash(),
        backend.done_jobs_set(),
    );
    let cutoff =
        chrono::Utc::now().timestamp() - i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
    let script = redis::Script::new(BATCH);
    let mut conn = redis.clone();
    let (mut cursor, mut deleted) = (0_u64, 0_u64);
    loop {
        let (next, fields): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(&data)
            .arg(cursor)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        let ids: Vec<&String> = fields.iter().step_by(2).collect();
        if !ids.is_empty() {
            let n: u64 = script
                .key(&data)
                .key(&meta)
                .key(&done)
                .arg(cutoff)
                .arg(ids)
                .invoke_async(&mut conn)
                .await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
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
    fn worker_names_differ_per_start() {
        assert_ne!(worker_name("reserve"), worker_name("reserve"));
    }
}

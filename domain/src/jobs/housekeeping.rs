//! What apalis-redis leaves in Redis and never removes, cleared so every key
//! has a bounded life: finished tasks, tasks it buried in its dead set, and
//! the metadata hashes of workers that are gone. Every step works in bounded
//! batches (SCAN/HSCAN/SRANDMEMBER), so Redis is never blocked for long.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::backend::backend_config;
use crate::platform::config::Config;

/// Dead tasks handed out per [`dead_tasks`] call.
pub const DEAD_BATCH: usize = 100;

/// Deletes finished (`Done`) tasks of `queue` older than `older_than` from
/// apalis-redis, which otherwise keeps every task's data forever. Unlike
/// apalis' own vacuum it never touches `Failed` tasks: those are waiting for
/// their retry. Works in HSCAN batches so Redis is never blocked for long.
pub async fn vacuum_done(
    redis: &ConnectionManager,
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

/// A task apalis-redis buried: its handler failed 25 times in a row (a limit
/// hard-coded in its `handle_results.lua`), typically because PostgreSQL was
/// away longer than the backoff (1 + 2 + … + 25 s). Nothing else ever looks at
/// the dead set, so the worker finalizes these itself.
#[derive(Clone, Debug)]
pub struct DeadTask {
    /// The apalis task id: the job id (or reservation id for expiries).
    pub task_id: String,
    /// The payload as apalis stored it (JSON), if still there.
    pub data: Option<Vec<u8>>,
}

/// Up to [`DEAD_BATCH`] tasks of `queue`'s dead set, with their payloads.
pub async fn dead_tasks(
    redis: &ConnectionManager,
    config: &Config,
    queue: &str,
) -> Result<Vec<DeadTask>, redis::RedisError> {
    let backend = backend_config(config, queue);
    let mut conn = redis.clone();
    let ids: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg(backend.dead_jobs_set())
        .arg(DEAD_BATCH)
        .query_async(&mut conn)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let data: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
        .arg(backend.job_data_hash())
        .arg(&ids)
        .query_async(&mut conn)
        .await?;
    Ok(ids
        .into_iter()
        .zip(data)
        .map(|(task_id, data)| DeadTask { task_id, data })
        .collect())
}

/// Removes a dead task once its job is final: its dead-set entry, payload and
/// metadata, in one script so a crash leaves either all or none.
pub async fn forget_dead_task(
    redis: &ConnectionManager,
    config: &Config,
    queue: &str,
    task_id: &str,
) -> Result<(), redis::RedisError> {
    const FORGET: &str = r"
        -- KEYS: dead set, data hash, meta hash prefix; ARGV: task id
        if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
          redis.call('HDEL', KEYS[2], ARGV[1])
          redis.call('DEL', KEYS[3] .. ':' .. ARGV[1])
        end
        return 1";
    let backend = backend_config(config, queue);
    redis::Script::new(FORGET)
        .key(backend.dead_jobs_set())
        .key(backend.job_data_hash())
        .key(backend.job_meta_hash())
        .arg(task_id)
        .invoke_async::<i64>(&mut redis.clone())
        .await
        .map(drop)
}

/// Records a worker name before it starts, so its metadata can be found and
/// deleted once it is gone (see [`prune_worker_metadata`]).
pub async fn record_worker(
    redis: &ConnectionManager,
    config: &Config,
    queue: &str,
    name: &str,
) -> Result<(), redis::RedisError> {
    redis::cmd("ZADD")
        .arg(started_workers_key(config, queue))
        .arg(chrono::Utc::now().timestamp())
        .arg(name)
        .query_async::<i64>(&mut redis.clone())
        .await
        .map(drop)
}

/// Deletes the metadata hashes of `queue`'s workers that have left the
/// registry. apalis-redis writes one per worker start and never deletes it; a
/// worker leaves the registry once its heartbeat is missed (its tasks then go
/// back to the queue), so its metadata is garbage from then on. Walks only the
/// names [`record_worker`] recorded at least `min_age` ago (never a worker
/// still starting), so the cost follows worker starts, not the keyspace.
pub async fn prune_worker_metadata(
    redis: &ConnectionManager,
    config: &Config,
    queue: &str,
    min_age: Duration,
) -> Result<u64, redis::RedisError> {
    const PRUNE: &str = r"
        -- KEYS: started names zset, workers zset; ARGV: cutoff (s), metadata key prefix
        local pruned = 0
        local names = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
        for _, name in ipairs(names) do
          if not redis.call('ZSCORE', KEYS[2], name) then
            redis.call('DEL', ARGV[2] .. name)
            redis.call('ZREM', KEYS[1], name)
            pruned = pruned + 1
          end
        end
        return pruned";
    let backend = backend_config(config, queue);
    let cutoff =
        chrono::Utc::now().timestamp() - i64::try_from(min_age.as_secs()).unwrap_or(i64::MAX);
    redis::Script::new(PRUNE)
        .key(started_workers_key(config, queue))
        .key(backend.workers_set())
        .arg(cutoff)
        .arg(format!("{}:workers:metadata:", backend.queue.as_ref()))
        .invoke_async(&mut redis.clone())
        .await
}

/// The names of `queue`'s workers as they were started (ours, beside apalis' keys).
fn started_workers_key(config: &Config, queue: &str) -> String {
    format!(
        "{}:started-workers",
        backend_config(config, queue).queue.as_ref()
    )
}

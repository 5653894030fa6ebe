//! Redis connection and key naming.

use std::time::Duration;

use redis::{
    Client, RedisError,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::platform::config::Config;

/// A reconnecting, multiplexed connection with explicit timeouts.
///
/// redis-rs defaults to a 500 ms response timeout, which under load kills
/// apalis workers for good (apalis-redis #76); ours is configurable and longer.
pub async fn connect(config: &Config) -> Result<ConnectionManager, RedisError> {
    ConnectionManager::new_with_config(
        Client::open(config.redis_url.as_str())?,
        manager_config(config),
    )
    .await
}

/// The api's connection: made on first use, so the api can start (and `/ready`
/// say 503) while Redis is still down; and impatient, so a request answers 503
/// within `API_DEPENDENCY_TIMEOUT_MS` while Redis is away or frozen.
pub fn connect_lazy(config: &Config) -> Result<ConnectionManager, RedisError> {
    let wait = config.api_dependency_timeout;
    ConnectionManager::new_lazy_with_config(
        Client::open(config.redis_url.as_str())?,
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.redis_response_timeout.min(wait)))
            .set_connection_timeout(Some(wait))
            .set_number_of_retries(0),
    )
}

fn manager_config(config: &Config) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(config.redis_response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
}

/// Why a process refuses to start on a Redis.
#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    /// No AOF and no `REDIS_ALLOW_VOLATILE=true`; the message names the fix.
    #[error("{0}")]
    Volatile(String),
    /// The Redis URL is unusable.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// How the Redis server keeps its data, as far as accepted jobs are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// `appendonly yes`: every write reaches the append-only file.
    pub aof: bool,
    /// `appendfsync` (`always`, `everysec`, `no`), when `CONFIG` could tell.
    pub fsync: Option<String>,
}

/// Reads the server's persistence: `CONFIG GET`, or `INFO persistence` where a
/// managed Redis disables `CONFIG` (it tells AOF on/off, not the fsync policy).
pub async fn persistence(conn: &mut ConnectionManager) -> Result<Persistence, RedisError> {
    let config: Result<Vec<String>, RedisError> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("append*")
        .query_async(conn)
        .await;
    if let Ok(pairs) = config {
        let get = |name: &str| {
            pairs
                .chunks(2)
                .find(|kv| kv[0] == name)
                .and_then(|kv| kv.get(1).cloned())
        };
        if let Some(aof) = get("appendonly") {
            return Ok(Persistence {
                aof: aof == "yes",
                fsync: get("appendfsync"),
            });
        }
    }
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(conn)
        .await?;
    Ok(Persistence {
        aof: info.lines().any(|l| l.trim() == "aof_enabled:1"),
        fsync: None,
    })
}

/// Refuses a Redis that would lose accepted jobs on a restart (no AOF), unless
/// `REDIS_ALLOW_VOLATILE=true`; warns when AOF may lose the last second.
/// Waits for Redis to answer first (logging every few seconds), so a process
/// started before its Redis comes up instead of failing.
pub async fn require_durable(config: &Config) -> Result<(), DurabilityError> {
    let mut conn = connect_lazy(config)?;
    let mut waited = 0_u32;
    let found = loop {
        match persistence(&mut conn).await {
            Ok(found) => break found,
            Err(error) => {
                if waited.is_multiple_of(5) {
                    tracing::warn!(%error, "waiting for Redis to check its persistence");
                }
                waited += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    if !found.aof {
        if config.redis_allow_volatile {
            tracing::warn!(
                "Redis keeps no append-only file: accepted jobs, places in line and sessions \
                 are lost if it restarts (REDIS_ALLOW_VOLATILE=true)"
            );
            return Ok(());
        }
        return Err(DurabilityError::Volatile(format!(
            "Redis at {} keeps no append-only file, so a restart would lose accepted jobs: \
             turn AOF on (`redis-cli CONFIG SET appendonly yes` and `CONFIG SET appendfsync \
             always`, `appendonly yes` in redis.conf, or run scripts/services.sh), or set \
             REDIS_ALLOW_VOLATILE=true to accept the loss",
            crate::platform::config::redact_url(&config.redis_url)
        )));
    }
    if let Some(fsync) = found.fsync.as_deref().filter(|f| *f != "always") {
        tracing::warn!(
            appendfsync = fsync,
            "Redis AOF is not fsynced on every write: a crash of its host may lose the last second of accepted jobs"
        );
    }
    Ok(())
}

/// Cheap reachability probe for `/ready`.
pub async fn ping(conn: &mut ConnectionManager) -> Result<(), RedisError> {
    redis::cmd("PING")
        .query_async::<String>(conn)
        .await
        .map(drop)
}

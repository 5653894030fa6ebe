//! Redis connection and key naming.

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

/// Like [`connect`] but connects on first use, so the api can start (and `/ready`
/// say 503) while Redis is still down.
pub fn connect_lazy(config: &Config) -> Result<ConnectionManager, RedisError> {
    ConnectionManager::new_lazy_with_config(
        Client::open(config.redis_url.as_str())?,
        manager_config(config),
    )
}

fn manager_config(config: &Config) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(config.redis_response_timeout))
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
        .set_number_of_retries(2)
}

/// Cheap reachability probe for `/ready`.
pub async fn ping(conn: &mut ConnectionManager) -> Result<(), RedisError> {
    redis::cmd("PING")
        .query_async::<String>(conn)
        .await
        .map(drop)
}

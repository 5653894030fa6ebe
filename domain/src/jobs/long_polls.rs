//! The bound on one user's open long-polls (`USER_LONG_POLLS_MAX`), across
//! every api process.
//!
//! A long-poll holds a connection and some memory in an api process for up to
//! 30 s; without a bound one client could open thousands and starve the
//! others of both. Each open long-poll is a member of a sorted set per user
//! scored by when it ends at the latest, so a poll whose process died is
//! forgotten by its deadline rather than counted for good. A poll takes a
//! place only when it is going to wait (its job is not final yet), and gives
//! it back when it answers.

use std::{sync::LazyLock, time::Duration};

use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    platform::config::Config,
};

/// Slack past a poll's wait before its place is forgotten without a release.
const SLACK: Duration = Duration::from_secs(5);
/// Life of a user's set: longer than any poll's wait and slack.
const SET_TTL: Duration = Duration::from_secs(60);

const ACQUIRE: &str = r"
-- KEYS[1] the user's open long-polls (poll id -> deadline ms, Redis clock)
-- ARGV: poll id, max, hold ms, set ttl ms. Returns 1 (taken) or 0 (at max).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

static ACQUIRE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ACQUIRE));

/// Hands out places for long-polls; cheap to clone.
#[derive(Clone, Debug)]
pub struct LongPolls {
    redis: ConnectionManager,
    prefix: String,
    max: u64,
}

/// A long-poll's place; dropping it gives the place back (in the background).
#[derive(Debug)]
pub struct LongPollPlace {
    release: Option<(ConnectionManager, String, String)>,
}

impl LongPolls {
    /// The bound of the stack `config` names (`USER_LONG_POLLS_MAX`, 0: none).
    pub fn new(redis: ConnectionManager, config: &Config) -> Self {
        Self {
            redis,
            prefix: config.redis_prefix.clone(),
            max: config.user_long_polls_max,
        }
    }

    /// A place for one of `user`'s long-polls waiting up to `wait`, or
    /// [`Error::TooManyLongPolls`] when they hold the most allowed already.
    pub async fn acquire(&self, user: Uuid, wait: Duration) -> Result<LongPollPlace> {
        if self.max == 0 {
            return Ok(LongPollPlace { release: None });
        }
        let key = format!("{}:longpolls:{user}", self.prefix);
        let id = Uuid::new_v4().simple().to_string();
        let mut redis = self.redis.clone();
        let taken: i64 = ACQUIRE_SCRIPT
            .key(&key)
            .arg(&id)
            .arg(self.max)
            .arg((wait + SLACK).as_millis().to_string())
            .arg(SET_TTL.as_millis().to_string())
            .invoke_async(&mut redis)
            .await?;
        if taken == 0 {
            crate::ops::metrics::long_poll_refused();
            return Err(Error::TooManyLongPolls {
                limit: self.max,
                retry_after: 1,
            });
        }
        Ok(LongPollPlace {
            release: Some((redis, key, id)),
        })
    }
}

impl Drop for LongPollPlace {
    fn drop(&mut self) {
        let Some((mut redis, key, id)) = self.release.take() else {
            return;
        };
        // Drop cannot wait: the release runs on its own. Should it fail, the
        // place is forgotten at the poll's deadline.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let released = redis::cmd("ZREM")
                    .arg(&key)
                    .arg(&id)
                    .query_async::<()>(&mut redis)
                    .await;
                if let Err(error) = released {
                    tracing::debug!(%error, "could not release a long-poll place");
                }
            });
        }
    }
}

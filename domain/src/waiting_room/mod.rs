//! The waiting room: FIFO admission bounded by active users and admissions per
//! second, shared by every api process through one Redis.
//!
//! All state changes run in one Lua script (`admission.lua`) against Redis'
//! clock, so processes agree without coordination and no process is special:
//! the line advances inside every issue, poll and leave, so nothing stalls when
//! a process dies. Every operation is O(log n) in the number of waiting fans
//! (sorted-set rank, pop and range on bounded slices).
//!
//! Sessions are fixed-length: an admission lasts `QUEUE_ACTIVE_TTL_SECONDS` and
//! activity does not extend it. Under scarcity a slot must turn over at a known
//! time, or the fans still waiting get no honest estimate; a paying fan frees
//! the slot at once.

mod token;

use std::{sync::LazyLock, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use redis::{Script, aio::ConnectionManager};
use uuid::Uuid;

pub use token::TokenCodec;

use crate::{error::Result, platform::config::Config};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("admission.lua")));

/// Where a token stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// In line: 1-based position and the estimated wait from the observed admission rate.
    Waiting {
        position: u64,
        estimated_wait_seconds: u64,
    },
    /// Admitted until the given time.
    Active { until: DateTime<Utc> },
}

/// A live token and its standing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenState {
    /// The bearer string to send as `Authorization: Bearer …`.
    pub token: String,
    pub user_id: Uuid,
    pub standing: Standing,
    /// False when an existing live token was returned.
    pub created: bool,
}

/// Result of `issue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issued {
    Token(TokenState),
    /// The user id is not (yet) in the known-users cache; check PostgreSQL and retry.
    UnknownUser,
}

/// Why a bearer token does not admit its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Missing, malformed, forged, foreign, unknown or expired: 401.
    Invalid,
    /// Valid but still in line: 403.
    Waiting { position: u64 },
}

/// An admitted fan, as the guard hands it to a handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub user_id: Uuid,
    pub token_id: String,
    pub until: DateTime<Utc>,
}

/// A token hash's status, session end and user, with Redis' clock (ms).
type TokenFields = (Option<String>, Option<i64>, Option<Uuid>, i64);

/// Admission settings, from [`Config`].
#[derive(Clone, Debug)]
pub struct Policy {
    pub max_active: u64,
    pub admit_per_second: u64,
    pub active_ttl: Duration,
    pub waiting_ttl: Duration,
}

/// Handle to the waiting room of one stack (one Redis prefix).
#[derive(Clone, Debug)]
pub struct WaitingRoom {
    redis: ConnectionManager,
    prefix: String,
    codec: TokenCodec,
    policy: Policy,
}

impl WaitingRoom {
    /// The waiting room configured by `config`.
    pub fn new(redis: ConnectionManager, config: &Config) -> Self {
        Self {
            redis,
            prefix: config.redis_prefix.clone(),
            codec: TokenCodec::new(config.queue_token_secret.as_bytes(), &config.redis_prefix),
            policy: Policy {
                max_active: config.queue_max_active,
                admit_per_second: config.queue_admit_per_second,
                active_ttl: config.queue_active_ttl,
                waiting_ttl: config.queue_waiting_ttl,
            },
        }
    }

    /// Records that `user_id` exists in PostgreSQL (the cache `issue` consults).
    pub async fn remember_user(&self, user_id: Uuid) -> Result<()> {
        let key = format!("{}:wr:known_users", self.prefix);
        redis::cmd("SADD")
            .arg(key)
            .arg(user_id.to_string())
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// True when `user_id` is in the known-users cache.
    pub async fn knows_user(&self, user_id: Uuid) -> Result<bool> {
        let key = format!("{}:wr:known_users", self.prefix);
        let known: bool = redis::cmd("SISMEMBER")
            .arg(key)
            .arg(user_id.to_string())
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(known)
    }

    /// Issues a token for `user_id`, or returns the user's live one.
    pub async fn issue(&self, user_id: Uuid) -> Result<Issued> {
        let reply = self
            .run("issue", &user_id.to_string(), &TokenCodec::new_id())
            .await?;
        Ok(match reply.first().map(String::as_str) {
            Some("UNKNOWN_USER") => Issued::UnknownUser,
            _ => Issued::Token(self.parse(&reply).ok_or_else(|| bad_reply(&reply))?),
        })
    }

    /// The token's standing (polling keeps a waiting token in line), or `None` if it is not live.
    pub async fn status(&self, bearer: &str) -> Result<Option<TokenState>> {
        let Some(id) = self.codec.decode(bearer) else {
            return Ok(None);
        };
        let reply = self.run("status", id, "").await?;
        Ok(self.parse(&reply))
    }

    /// Leaves the line or frees the active slot. Idempotent.
    pub async fn leave(&self, bearer: &str) -> Result<bool> {
        let Some(id) = self.codec.decode(bearer) else {
            return Ok(false);
        };
        self.run("leave", id, "").await?;
        Ok(true)
    }

    /// Ends a session by token id (after a payment). Idempotent.
    pub async fn end_session(&self, token_id: &str) -> Result<()> {
        self.run("leave", token_id, "").await.map(drop)
    }

    /// The guard: one Redis round trip, no database. Admits only ACTIVE tokens.
    pub async fn authorize(&self, bearer: &str) -> Result<Result<Admitted, Denied>> {
        let Some(id) = self.codec.decode(bearer) else {
            return Ok(Err(Denied::Invalid));
        };
        let (status, until, user_id, now_ms) = self.token_fields(id).await?;
        Ok(match (status.as_deref(), until, user_id) {
            (Some("A"), Some(until), Some(user_id)) if until > now_ms => Ok(Admitted {
                user_id,
                token_id: id.to_owned(),
                until: millis(until),
            }),
            (Some("W"), _, Some(_)) => {
                let waiting = format!("{}:wr:waiting", self.prefix);
                let rank: Option<u64> = redis::cmd("ZRANK")
                    .arg(waiting)
                    .arg(id)
                    .query_async(&mut self.redis.clone())
                    .await?;
                rank.map_or(Err(Denied::Invalid), |r| {
                    Err(Denied::Waiting { position: r + 1 })
                })
            }
            _ => Err(Denied::Invalid),
        })
    }

    /// The user holding a live token, waiting or active (one Redis round trip): a
    /// fan may read their own jobs with it.
    pub async fn holder(&self, bearer: &str) -> Result<Option<Uuid>> {
        let Some(id) = self.codec.decode(bearer) else {
            return Ok(None);
        };
        let (status, until, user, now_ms) = self.token_fields(id).await?;
        let live = match (status.as_deref(), until) {
            (Some("A"), Some(until)) => until > now_ms,
            (Some("W"), _) => true,
            _ => false,
        };
        Ok(user.filter(|_| live))
    }

    /// A token's status (`A`/`W`), session end (ms), user, and Redis' own clock
    /// (ms) to judge the session end by: `until` was written on that clock by the
    /// admission script, so a skewed api host cannot stretch or cut a session.
    /// HMGET and TIME in one pipeline: one round trip.
    async fn token_fields(&self, id: &str) -> Result<TokenFields> {
        let key = format!("{}:wr:tok:{id}", self.prefix);
        type Reply = ((Option<String>, Option<i64>, Option<String>), (i64, i64));
        let ((status, until, user), (secs, micros)): Reply = redis::pipe()
            .cmd("HMGET")
            .arg(key)
            .arg("status")
            .arg("until")
            .arg("user")
            .cmd("TIME")
            .query_async(&mut self.redis.clone())
            .await?;
        let now_ms = secs * 1000 + micros / 1000;
        Ok((
            status,
            until,
            user.and_then(|u| Uuid::parse_str(&u).ok()),
            now_ms,
        ))
    }

    async fn run(&self, command: &str, arg1: &str, arg2: &str) -> Result<Vec<String>> {
        let p = &self.policy;
        let reply: Vec<redis::Value> = SCRIPT
            .arg(&self.prefix)
            .arg(command)
            .arg(p.max_active)
            .arg(p.admit_per_second)
            .arg(as_millis(p.active_ttl))
            .arg(as_millis(p.waiting_ttl))
            .arg(arg1)
            .arg(arg2)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(reply.iter().map(value_text).collect())
    }

    fn parse(&self, reply: &[String]) -> Option<TokenState> {
        let field = |i: usize| reply.get(i).map(String::as_str);
        let number = |i: usize| field(i).and_then(|v| v.parse::<i64>().ok());
        let standing = match field(0)? {
            "W" => Standing::Waiting {
                position: u64::try_from(number(2)?).ok()?,
                estimated_wait_seconds: u64::try_from(number(3)?).ok()?,
            },
            "A" => Standing::Active {
                until: millis(number(4)?),
            },
            _ => return None,
        };
        Some(TokenState {
            token: self.codec.encode(field(1)?),
            user_id: Uuid::parse_str(field(5)?).ok()?,
            standing,
            created: number(6)? == 1,
        })
    }
}

fn value_text(v: &redis::Value) -> String {
    match v {
        redis::Value::Int(i) => i.to_string(),
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    }
}

fn as_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn bad_reply(reply: &[String]) -> crate::Error {
    crate::Error::Redis(redis::RedisError::from((
        redis::ErrorKind::Client,
        "unexpected waiting-room reply",
        format!("{reply:?}"),
    )))
}

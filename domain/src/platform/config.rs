//! Typed configuration read once from environment variables.
//!
//! Every setting has a default so `concert standalone` works on a fresh machine;
//! every binary reads the same struct so api and worker can never disagree.

use std::{collections::HashMap, fmt, str::FromStr, time::Duration};

/// The whole configuration of every binary. See the README's table.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub database_max_connections: u32,
    pub redis_url: String,
    /// Namespace for every Redis key (queues included), so stacks can share one Redis.
    pub redis_prefix: String,
    pub redis_response_timeout: Duration,
    /// Start even though Redis keeps no append-only file (accepted jobs die with it).
    pub redis_allow_volatile: bool,
    /// How long the api waits for PostgreSQL or Redis before answering 503.
    pub api_dependency_timeout: Duration,
    /// How long a job's status hash stays in Redis after its last change
    /// (PostgreSQL keeps final outcomes for good; reads fall back to it).
    pub job_status_ttl: Duration,
    pub api_addr: String,
    pub admin_token: String,
    pub api_body_limit_bytes: usize,
    pub hold_ttl: Duration,
    pub queue_max_active: u64,
    pub queue_admit_per_second: u64,
    pub queue_active_ttl: Duration,
    pub queue_waiting_ttl: Duration,
    /// Key of the queue tokens' HMAC; every api process of a stack must share it.
    pub queue_token_secret: String,
    /// HS256 key of the built-in access-token issuer (at least 32 bytes).
    pub auth_jwt_secret: String,
    pub access_token_ttl: Duration,
    /// PEM public key (RS256 or ES256) of an external identity provider; `None` = built-in issuer.
    pub auth_jwt_public_key: Option<String>,
    /// `iss` of access tokens: required with an external provider, `concert` for the built-in one.
    pub auth_issuer: Option<String>,
    /// `aud` of access tokens: required with an external provider, `concert-api` for the built-in one.
    pub auth_audience: Option<String>,
    /// Most seats one user may hold or own of one schedule.
    pub max_seats_per_user: u32,
    pub worker_concurrency: usize,
    pub worker_poll_interval: Duration,
    pub worker_heartbeat: Duration,
    pub worker_missed_heartbeats: usize,
    /// How often each worker sweeps for overdue holds whose expiry job was lost.
    pub worker_sweep_interval: Duration,
    /// Total deliveries of one job before it is finalized as failed.
    pub worker_max_attempts: u64,
    /// Where a worker serves `GET /metrics` (Prometheus text format).
    pub worker_metrics_addr: String,
    /// Most reserve jobs one worker settles in one transaction.
    pub reserve_batch_max: usize,
    /// How long a worker waits for more reserve jobs after the first of a
    /// batch. 0: never wait — batches then form only from jobs that arrive
    /// while the previous batch is in PostgreSQL, so they grow with load alone.
    pub reserve_batch_linger: Duration,
    /// Reserve batch transactions one worker keeps open at once.
    pub reserve_batches_in_flight: usize,
    /// Reserve jobs waiting in the queue past which the api sheds new reserves
    /// with 429 and `Retry-After` (0: never). Bounds how long an accepted
    /// reserve waits for a worker, whatever the offered rate.
    pub reserve_backlog_max: u64,
    /// Recharge jobs waiting past which the api sheds new recharges (0: never).
    pub recharge_backlog_max: u64,
    /// Pay jobs waiting past which the api sheds new payments (0: never).
    pub pay_backlog_max: u64,
    /// Most non-final jobs one user may have of one kind (0: no bound): one
    /// fan's loop then takes at most this many places in a queue.
    pub user_jobs_in_flight: u64,
    /// Most concurrent long-polls (`waitSeconds`) of one user (0: no bound).
    pub user_long_polls_max: u64,
    /// Sign-ups and access-token mints per client address per minute (0: no bound).
    pub signup_per_minute_per_address: u64,
    /// Header a proxy the operator runs sets to the client's address (e.g.
    /// `X-Forwarded-For`); `None`: the socket's peer is the client.
    pub trusted_proxy_header: Option<String>,
    /// Where the api serves `GET /metrics`; `None` (`API_METRICS_ADDR=off`): not served.
    pub api_metrics_addr: Option<String>,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
}

/// Default admin token: usable on a laptop, warned about at start-up.
pub const DEV_ADMIN_TOKEN: &str = "dev-admin-token";

/// Default queue-token secret: usable on a laptop, warned about at start-up.
pub const DEV_TOKEN_SECRET: &str = "dev-queue-token-secret";

/// Default access-token signing key: usable on a laptop, refused on a public address.
pub const DEV_JWT_SECRET: &str = "dev-auth-jwt-secret-change-me-before-exposing";

/// Shortest accepted `AUTH_JWT_SECRET` (HS256 wants a key as long as its hash).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

/// A variable that is set but cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads from a map; tests use this instead of mutating the process environment.
    pub fn from_map(map: &HashMap<&str, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| map.get(name).cloned())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let r = Reader { get: &get };
        Ok(Self {
            database_url: r.string(
                "DATABASE_URL",
                "postgres://postgres:postgres@127.0.0.1:5432/concert",
            ),
            database_max_connections: r.parse_in("DATABASE_MAX_CONNECTIONS", 32, 1..=10_000)?,
            redis_url: r.string("REDIS_URL", "redis://127.0.0.1:6379"),
            redis_prefix: r.prefix("REDIS_PREFIX", "concert")?,
            redis_response_timeout: r.millis("REDIS_RESPONSE_TIMEOUT_MS", 5_000)?,
            redis_allow_volatile: r.parse("REDIS_ALLOW_VOLATILE", false)?,
            api_dependency_timeout: r.millis("API_DEPENDENCY_TIMEOUT_MS", 1_500)?,
            job_status_ttl: r.seconds("JOB_STATUS_TTL_SECONDS", 3_600)?,
            api_addr: r.string("API_ADDR", "127.0.0.1:8080"),
            admin_token: r.non_empty("ADMIN_TOKEN", DEV_ADMIN_TOKEN)?,
            api_body_limit_bytes: r.parse_in("API_BODY_LIMIT_BYTES", 16 * 1024, 256..=16 << 20)?,
            hold_ttl: r.seconds("HOLD_TTL_SECONDS", 300)?,
            queue_max_active: r.parse_in("QUEUE_MAX_ACTIVE", 1_000, 1..=10_000_000)?,
            queue_admit_per_second: r.parse_in("QUEUE_ADMIT_PER_SECOND", 100, 1..=1_000_000)?,
            queue_active_ttl: r.seconds("QUEUE_ACTIVE_TTL_SECONDS", 600)?,
            queue_waiting_ttl: r.seconds("QUEUE_WAITING_TTL_SECONDS", 60)?,
            queue_token_secret: r.non_empty("QUEUE_TOKEN_SECRET", DEV_TOKEN_SECRET)?,
            auth_jwt_secret: r.jwt_secret("AUTH_JWT_SECRET")?,
            access_token_ttl: r.seconds("ACCESS_TOKEN_TTL_SECONDS", 86_400)?,
            auth_jwt_public_key: r.pem("AUTH_JWT_PUBLIC_KEY")?,
            auth_issuer: r.raw("AUTH_ISSUER"),
            auth_audience: r.raw("AUTH_AUDIENCE"),
            max_seats_per_user: r.parse_in("MAX_SEATS_PER_USER", 4, 1..=50)?,
            worker_concurrency: r.parse_in("WORKER_CONCURRENCY", 64, 1..=10_000)?,
            worker_poll_interval: r.millis("WORKER_POLL_INTERVAL_MS", 50)?,
            // 1 s, not 5: a worker whose poll timer lost its wake-up sleeps until the
            // next heartbeat (worker::poll fixes the known cause; this bounds any
            // other). 1 s × 15 keeps the 15 s orphan window.
            worker_heartbeat: r.seconds("WORKER_HEARTBEAT_SECONDS", 1)?,
            worker_missed_heartbeats: r.parse_in("WORKER_MISSED_HEARTBEATS", 15, 1..=1_000)?,
            worker_sweep_interval: r.seconds("WORKER_SWEEP_INTERVAL_SECONDS", 5)?,
            worker_max_attempts: r.parse_in("WORKER_MAX_ATTEMPTS", 20, 1..=24)?,
            worker_metrics_addr: r.string("WORKER_METRICS_ADDR", "127.0.0.1:9464"),
            reserve_batch_max: r.parse_in("RESERVE_BATCH_MAX", 256, 1..=1_000)?,
            reserve_batch_linger: Duration::from_millis(r.parse_in(
                "RESERVE_BATCH_LINGER_MS",
                0,
                0..=10_000,
            )?),
            reserve_batches_in_flight: r.parse_in("RESERVE_BATCHES_IN_FLIGHT", 1, 1..=64)?,
            reserve_backlog_max: r.parse_in("RESERVE_BACKLOG_MAX", 5_000, 0..=100_000_000)?,
            recharge_backlog_max: r.parse_in("RECHARGE_BACKLOG_MAX", 5_000, 0..=100_000_000)?,
            pay_backlog_max: r.parse_in("PAY_BACKLOG_MAX", 5_000, 0..=100_000_000)?,
            user_jobs_in_flight: r.parse_in("USER_JOBS_IN_FLIGHT", 8, 0..=1_000_000)?,
            user_long_polls_max: r.parse_in("USER_LONG_POLLS_MAX", 16, 0..=1_000_000)?,
            signup_per_minute_per_address: r.parse_in(
                "SIGNUP_PER_MINUTE_PER_ADDRESS",
                30,
                0..=100_000_000,
            )?,
            trusted_proxy_header: r
                .raw("TRUSTED_PROXY_HEADER")
                .filter(|h| !h.trim().is_empty()),
            api_metrics_addr: Some(r.string("API_METRICS_ADDR", "127.0.0.1:9463"))
                .filter(|a| !a.eq_ignore_ascii_case("off")),
            shutdown_grace: r.seconds("SHUTDOWN_GRACE_SECONDS", 30)?,
            log_format: r.parse("LOG_FORMAT", LogFormat::Text)?,
        })
    }

    /// True when the admin token was left at its development default.
    pub fn uses_dev_admin_token(&self) -> bool {
        self.admin_token == DEV_ADMIN_TOKEN
    }

    /// True when the queue-token secret was left at its development default.
    pub fn uses_dev_token_secret(&self) -> bool {
        self.queue_token_secret == DEV_TOKEN_SECRET
    }

    /// True when the built-in issuer signs with its development default key
    /// (an external provider's deployment never uses that key).
    pub fn uses_dev_jwt_secret(&self) -> bool {
        self.auth_jwt_public_key.is_none() && self.auth_jwt_secret == DEV_JWT_SECRET
    }

    /// The variables still at a development default that must not reach a public address.
    pub fn dev_secrets(&self) -> Vec<&'static str> {
        [
            ("ADMIN_TOKEN", self.uses_dev_admin_token()),
            ("QUEUE_TOKEN_SECRET", self.uses_dev_token_secret()),
            ("AUTH_JWT_SECRET", self.uses_dev_jwt_secret()),
        ]
        .into_iter()
        .filter_map(|(name, dev)| dev.then_some(name))
        .collect()
    }
}

impl fmt::Debug for Config {
    // Hand-written so secrets (admin token, URL passwords) never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &redact_url(&self.redis_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("api_addr", &self.api_addr)
            .field("admin_token", &"<redacted>")
            .field("queue_token_secret", &"<redacted>")
            .field("auth_jwt_secret", &"<redacted>")
            .field("auth_external", &self.auth_jwt_public_key.is_some())
            .field("auth_issuer", &self.auth_issuer)
            .field("auth_audience", &self.auth_audience)
            .field("hold_ttl", &self.hold_ttl)
            .field("queue_max_active", &self.queue_max_active)
            .field("queue_admit_per_second", &self.queue_admit_per_second)
            .field("worker_concurrency", &self.worker_concurrency)
            .field("reserve_backlog_max", &self.reserve_backlog_max)
            .finish_non_exhaustive()
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

struct Reader<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    fn non_empty(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = self.string(name, default);
        if value.contains(char::is_whitespace) {
            return Err(err(name, &value, "must not contain white space"));
        }
        Ok(value)
    }

    fn jwt_secret(&self, name: &'static str) -> Result<String, ConfigError> {
        let value = self.non_empty(name, DEV_JWT_SECRET)?;
        if value.len() < MIN_JWT_SECRET_BYTES {
            let why = format!("must be at least {MIN_JWT_SECRET_BYTES} bytes");
            return Err(err(name, "<redacted>", &why));
        }
        Ok(value)
    }

    /// A PEM block given inline, or the path of a file holding one.
    fn pem(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(value) = self.raw(name) else {
            return Ok(None);
        };
        if value.trim_start().starts_with("-----BEGIN") {
            return Ok(Some(value));
        }
        std::fs::read_to_string(value.trim())
            .map(Some)
            .map_err(|e| {
                err(
                    name,
                    &value,
                    &format!("neither a PEM key nor a readable file: {e}"),
                )
            })
    }

    /// Letters, digits, `-` and `_` only: the prefix also names apalis queues,
    /// where a `:` would silence pub/sub wake-ups.
    fn prefix(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = self.string(name, default);
        let ok = value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(value)
        } else {
            Err(err(
                name,
                &value,
                "use at most 64 letters, digits, `-` or `_`",
            ))
        }
    }

    fn parse<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e: T::Err| err(name, &v, &e.to_string())),
        }
    }

    fn parse_in<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value = self.parse(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            let why = format!("must be between {} and {}", range.start(), range.end());
            Err(err(name, &value.to_string(), &why))
        }
    }

    fn seconds(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse_in(name, default, 1..=31_536_000)
            .map(Duration::from_secs)
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse_in(name, default, 1..=3_600_000)
            .map(Duration::from_millis)
    }
}

fn err(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
        Config::from_map(&pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = with(&[]).expect("defaults are valid");
        assert_eq!(config.hold_ttl, Duration::from_secs(300));
        assert_eq!(config.redis_prefix, "concert");
        assert!(config.uses_dev_admin_token());
    }

    #[test]
    fn values_from_the_environment_override_defaults() {
        let config = with(&[("HOLD_TTL_SECONDS", "2"), ("QUEUE_MAX_ACTIVE", "7")]).expect("valid");
        assert_eq!(config.hold_ttl, Duration::from_secs(2));
        assert_eq!(config.queue_max_active, 7);
    }

    #[test]
    fn a_malformed_number_names_the_variable() {
        let error = with(&[("HOLD_TTL_SECONDS", "five")]).expect_err("must fail");
        assert_eq!(error.name, "HOLD_TTL_SECONDS");
    }

    #[test]
    fn an_out_of_range_number_is_refused() {
        let error = with(&[("WORKER_CONCURRENCY", "0")]).expect_err("must fail");
        assert_eq!(error.name, "WORKER_CONCURRENCY");
        assert!(error.reason.contains("between"), "{}", error.reason);
    }

    #[test]
    fn a_prefix_with_a_colon_is_refused() {
        assert_eq!(
            with(&[("REDIS_PREFIX", "a:b")])
                .expect_err("must fail")
                .name,
            "REDIS_PREFIX"
        );
    }

    #[test]
    fn a_short_jwt_secret_is_refused_without_echoing_it() {
        let error = with(&[("AUTH_JWT_SECRET", "short-secret")]).expect_err("must fail");
        assert_eq!(error.name, "AUTH_JWT_SECRET");
        assert!(!error.to_string().contains("short-secret"), "{error}");
    }

    #[test]
    fn dev_secrets_lists_every_default_left_in_place() {
        assert_eq!(
            with(&[]).expect("valid").dev_secrets(),
            ["ADMIN_TOKEN", "QUEUE_TOKEN_SECRET", "AUTH_JWT_SECRET"]
        );
        let set = with(&[
            ("ADMIN_TOKEN", "a-real-admin-token"),
            ("QUEUE_TOKEN_SECRET", "a-real-queue-secret"),
            ("AUTH_JWT_SECRET", &"k".repeat(32)),
        ])
        .expect("valid");
        assert!(set.dev_secrets().is_empty());
    }

    #[test]
    fn a_public_key_that_is_neither_pem_nor_a_file_is_refused() {
        let error = with(&[("AUTH_JWT_PUBLIC_KEY", "/no/such/key.pem")]).expect_err("must fail");
        assert_eq!(error.name, "AUTH_JWT_PUBLIC_KEY");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = with(&[
            ("ADMIN_TOKEN", "s3cret-token"),
            ("DATABASE_URL", "postgres://app:hunter2@db:5432/x"),
        ])
        .expect("valid");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret-token") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("postgres://app:***@db:5432/x"), "{shown}");
    }
}

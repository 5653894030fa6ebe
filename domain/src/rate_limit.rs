//! Per-client-address rate limits on creating identities: sign-up and
//! access-token minting (SPEC §3.9), at most `SIGNUP_PER_MINUTE_PER_ADDRESS`
//! of each per address in any 60 s.
//!
//! Counted in Redis so the bound holds across every api process of a stack.
//! The algorithm is a *sliding log*: one sorted set per action and address,
//! `{prefix}:rate:{action}:{address}`, holding the admission times of the last
//! 60 s; `rate_limit.lua` prunes, counts and admits in one script call, on
//! Redis' clock (so skewed api hosts agree). Chosen over a fixed window
//! (`INCR` + `EXPIRE`), which admits twice the limit across a window boundary,
//! and over a token bucket, whose refill admits about twice the limit in the
//! minute after a burst: the log admits exactly the limit in *any* 60 s, and
//! its `Retry-After` is exact — when the entry holding the limit leaves the
//! window. It costs one entry per admitted request, at most the limit per
//! address, and the key expires 60 s after its last admission. Refusals are not
//! logged, so a client that waits as told gets in.
//!
//! IPv6 clients are counted per /64: one host usually holds a whole /64, so a
//! per-/128 limit would be none. IPv4-mapped IPv6 addresses count as IPv4.
//!
//! Without Redis the check fails (503 `UNAVAILABLE`) rather than letting every
//! request through: a limit that lapses whenever Redis is slow is one a bot can
//! switch off, and without Redis a new account cannot take a queue token anyway.

use std::{
    net::{IpAddr, Ipv6Addr},
    sync::LazyLock,
    time::Duration,
};

use redis::{Script, aio::ConnectionManager};
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    platform::config::Config,
};

/// The span the limit counts over.
pub const WINDOW: Duration = Duration::from_secs(60);

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("rate_limit.lua")));

/// What is limited; each has its own budget per address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `POST /v1/users`.
    SignUp,
    /// `POST /v1/admin/users/{userId}/access-tokens`.
    MintToken,
}

impl Action {
    /// The key segment and the `what` label of `concert_rate_limited_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::SignUp => "signup",
            Self::MintToken => "mint",
        }
    }

    /// How the 429's detail names it ("too many … from this address").
    fn noun(self) -> &'static str {
        match self {
            Self::SignUp => "sign-ups",
            Self::MintToken => "access-token mints",
        }
    }
}

/// Admits one `action` from `client` (`None`: no IP address known, all such
/// requests share one budget) or refuses it with [`Error::RateLimited`] and the
/// seconds until a place frees. Nothing is written on a refusal; with the
/// limit at 0 nothing is asked of Redis.
pub async fn admit(
    redis: &ConnectionManager,
    config: &Config,
    action: Action,
    client: Option<IpAddr>,
) -> Result<()> {
    let limit = config.signup_per_minute_per_address;
    if limit == 0 {
        return Ok(());
    }
    let key = format!(
        "{}:rate:{}:{}",
        config.redis_prefix,
        action.label(),
        client.map_or_else(|| "unknown".to_owned(), bucket)
    );
    let wait_us: u64 = SCRIPT
        .key(key)
        .arg(limit)
        .arg(u64::try_from(WINDOW.as_micros()).unwrap_or(u64::MAX))
        .arg(Uuid::new_v4().simple().to_string())
        .invoke_async(&mut redis.clone())
        .await?;
    if wait_us == 0 {
        return Ok(());
    }
    crate::ops::metrics::rate_limited(action.label());
    Err(Error::RateLimited {
        what: action.noun(),
        retry_after: wait_us.div_ceil(1_000_000).max(1),
    })
}

/// The budget an address counts against: the IPv4 address, or an IPv6 /64.
pub fn bucket(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_counts_per_address_and_ipv6_per_64() {
        assert_eq!(bucket(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(bucket(ip("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(bucket(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            bucket(ip("2001:db8:1:2::9")),
            "one host's /64 is one budget"
        );
        assert_ne!(bucket(ip("2001:db8:1:3::1")), bucket(ip("2001:db8:1:2::1")));
    }
}

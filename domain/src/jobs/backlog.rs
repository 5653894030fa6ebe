//! Load shedding for reserves: past `RESERVE_BACKLOG_MAX` waiting reserve
//! jobs the api answers 429 with `Retry-After` instead of queueing more.
//!
//! A backlog is a promise of latency: every reserve behind it waits for the
//! workers to drain the ones before it. Without a bound, a stampede at three
//! times what the workers sustain leaves fans long-polling for tens of seconds
//! for seats that are long gone. With one, what is accepted is answered within
//! about `max / drain rate`, and the rest are told at once to come back.
//!
//! The depth is what waits in the reserve queue — apalis-redis parks a new
//! task in the queue's scheduled set (due at once) until a worker's fetch moves
//! it to the active list, so both count — read by one task per api process
//! every [`REFRESH`] (one round trip) and kept in an atomic, so a reserve pays
//! nothing for the check. The bound is therefore soft by what a process accepts in one
//! refresh: enough to keep the latency bounded, which is its job.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;

use super::backend::{RESERVE_QUEUE, queue_name};
use crate::{
    error::{Error, Result},
    platform::config::Config,
};

/// How often each api process reads the reserve backlog.
pub const REFRESH: Duration = Duration::from_millis(100);

/// Longest `Retry-After` suggested, in seconds.
const MAX_RETRY_AFTER: u64 = 30;

/// Admits or sheds reserves by the reserve queue's backlog; cheap to clone.
#[derive(Clone, Debug)]
pub struct BacklogGate {
    depth: Arc<AtomicU64>,
    max: u64,
}

impl BacklogGate {
    /// A gate over the stack configured by `config`; with a bound, starts the
    /// task that reads the backlog (it ends when the last clone is dropped).
    pub fn start(redis: ConnectionManager, config: &Config) -> Self {
        let gate = Self::fixed(config.reserve_backlog_max, 0);
        if gate.max > 0 {
            let queue = queue_name(&config.redis_prefix, RESERVE_QUEUE);
            let mut read = redis::pipe();
            read.cmd("LLEN")
                .arg(format!("{queue}:active"))
                .cmd("ZCARD")
                .arg(format!("{queue}:scheduled"));
            tokio::spawn(refresh(Arc::downgrade(&gate.depth), redis, read));
        }
        gate
    }

    /// A gate with a bound and a backlog that does not change (for tests of the rule).
    pub fn fixed(max: u64, depth: u64) -> Self {
        Self {
            depth: Arc::new(AtomicU64::new(depth)),
            max,
        }
    }

    /// `Ok` when a reserve may be queued; [`Error::Busy`] when the backlog is at
    /// the bound, with a `Retry-After` that grows with how far past it is
    /// (1 s just over it, 2 s at twice it, …, at most 30 s).
    pub fn admit(&self) -> Result<()> {
        let backlog = self.depth.load(Ordering::Relaxed);
        if self.max == 0 || backlog < self.max {
            return Ok(());
        }
        let retry_after = backlog.div_ceil(self.max).clamp(1, MAX_RETRY_AFTER);
        crate::ops::metrics::reserve_shed();
        Err(Error::Busy {
            backlog,
            retry_after,
        })
    }
}

/// Reads the backlog every [`REFRESH`] until the gate is gone. A failed read
/// keeps the last figure: the push that follows meets the same Redis, and a
/// Redis that is down answers 503 there.
async fn refresh(
    depth: std::sync::Weak<AtomicU64>,
    mut redis: ConnectionManager,
    read: redis::Pipeline,
) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(depth) = depth.upgrade() else {
            return;
        };
        match read.query_async::<(u64, u64)>(&mut redis).await {
            Ok((active, scheduled)) => depth.store(active + scheduled, Ordering::Relaxed),
            Err(error) => tracing::debug!(%error, "could not read the reserve backlog"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(gate: &BacklogGate) -> Option<u64> {
        match gate.admit() {
            Ok(()) => None,
            Err(Error::Busy { retry_after, .. }) => Some(retry_after),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn reserves_pass_below_the_bound_and_are_shed_at_it() {
        assert_eq!(retry_after(&BacklogGate::fixed(100, 99)), None);
        assert_eq!(retry_after(&BacklogGate::fixed(100, 100)), Some(1));
        assert_eq!(retry_after(&BacklogGate::fixed(100, 150)), Some(2));
        assert_eq!(retry_after(&BacklogGate::fixed(100, 1_000_000)), Some(30));
    }

    #[test]
    fn no_bound_never_sheds() {
        assert_eq!(retry_after(&BacklogGate::fixed(0, u64::MAX)), None);
    }
}

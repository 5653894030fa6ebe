//! Load shedding per queue: past its `…_BACKLOG_MAX` waiting jobs
//! (`RESERVE_BACKLOG_MAX`, `RECHARGE_BACKLOG_MAX`, `PAY_BACKLOG_MAX`) the api
//! answers 429 `BUSY` with `Retry-After` instead of queueing more of that kind.
//!
//! A backlog is a promise of latency: every job behind it waits for the
//! workers to drain the ones before it. Without a bound, a stampede at three
//! times what the workers sustain leaves fans long-polling for tens of seconds
//! for seats that are long gone. With one, what is accepted is answered within
//! about `max / drain rate`, and the rest are told at once to come back. Each
//! kind has its own bound, so a recharge storm never sheds reserves.
//!
//! The depth is what waits in a queue — apalis-redis parks a new task in the
//! queue's scheduled set (due at once) until a worker's fetch moves it to the
//! active list, so both count — read by one task per api process every
//! [`REFRESH`] (one pipelined round trip for every bounded queue) and kept in
//! atomics, so a request pays nothing for the check. The bound is therefore
//! soft by what a process accepts in one refresh: enough to keep the latency
//! bounded, which is its job. What one client may add to a backlog is bounded
//! apart, per user (`USER_JOBS_IN_FLIGHT`, see `producer`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;

use super::{
    JobKind,
    backend::{CLIENT_QUEUES, queue_name, queue_of},
};
use crate::{
    error::{Error, Result},
    platform::config::Config,
};

/// How often each api process reads the backlogs.
pub const REFRESH: Duration = Duration::from_millis(100);

/// Longest `Retry-After` suggested, in seconds.
const MAX_RETRY_AFTER: u64 = 30;

/// One queue's bound and its last read depth.
#[derive(Debug)]
struct Bound {
    kind: JobKind,
    max: u64,
    depth: AtomicU64,
}

/// Admits or sheds enqueueing requests by their queue's backlog; cheap to clone.
#[derive(Clone, Debug)]
pub struct BacklogGate {
    bounds: Arc<[Bound; 3]>,
}

impl BacklogGate {
    /// A gate over the stack configured by `config`; with any bound, starts the
    /// task that reads the backlogs (it ends when the last clone is dropped).
    pub fn start(redis: ConnectionManager, config: &Config) -> Self {
        let gate = Self::fixed(
            |kind| match kind {
                JobKind::Reserve => config.reserve_backlog_max,
                JobKind::Recharge => config.recharge_backlog_max,
                JobKind::Pay => config.pay_backlog_max,
            },
            |_| 0,
        );
        let mut read = redis::pipe();
        let mut watched = Vec::new();
        for (i, bound) in gate.bounds.iter().enumerate() {
            if bound.max > 0 {
                let queue = queue_name(&config.redis_prefix, queue_of(bound.kind));
                read.cmd("LLEN")
                    .arg(format!("{queue}:active"))
                    .cmd("ZCARD")
                    .arg(format!("{queue}:scheduled"));
                watched.push(i);
            }
        }
        if !watched.is_empty() {
            tokio::spawn(refresh(Arc::downgrade(&gate.bounds), redis, read, watched));
        }
        gate
    }

    /// A gate with fixed bounds and backlogs that do not change (for tests of the rule).
    pub fn fixed(max: impl Fn(JobKind) -> u64, depth: impl Fn(JobKind) -> u64) -> Self {
        let bound = |kind| Bound {
            kind,
            max: max(kind),
            depth: AtomicU64::new(depth(kind)),
        };
        Self {
            bounds: Arc::new(CLIENT_QUEUES.map(|(kind, _)| bound(kind))),
        }
    }

    /// `Ok` when a job of `kind` may be queued; [`Error::Busy`] when its backlog
    /// is at the bound, with a `Retry-After` that grows with how far past it is
    /// (1 s just over it, 2 s at twice it, …, at most 30 s).
    pub fn admit(&self, kind: JobKind) -> Result<()> {
        let Some(bound) = self.bounds.iter().find(|b| b.kind == kind) else {
            return Ok(());
        };
        let backlog = bound.depth.load(Ordering::Relaxed);
        if bound.max == 0 || backlog < bound.max {
            return Ok(());
        }
        let retry_after = backlog.div_ceil(bound.max).clamp(1, MAX_RETRY_AFTER);
        crate::ops::metrics::job_refused(kind, "busy");
        Err(Error::Busy {
            kind: kind.as_str(),
            backlog,
            retry_after,
        })
    }
}

/// Reads the watched backlogs every [`REFRESH`] until the gate is gone. A
/// failed read keeps the last figures: the push that follows meets the same
/// Redis, and a Redis that is down answers 503 there.
async fn refresh(
    bounds: std::sync::Weak<[Bound; 3]>,
    mut redis: ConnectionManager,
    read: redis::Pipeline,
    watched: Vec<usize>,
) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(bounds) = bounds.upgrade() else {
            return;
        };
        match read.query_async::<Vec<u64>>(&mut redis).await {
            Ok(counts) => {
                for (i, pair) in watched.iter().zip(counts.chunks(2)) {
                    let depth = pair.iter().sum();
                    bounds[*i].depth.store(depth, Ordering::Relaxed);
                }
            }
            Err(error) => tracing::debug!(%error, "could not read the queue backlogs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(gate: &BacklogGate, kind: JobKind) -> Option<u64> {
        match gate.admit(kind) {
            Ok(()) => None,
            Err(Error::Busy { retry_after, .. }) => Some(retry_after),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    fn reserves(max: u64, depth: u64) -> BacklogGate {
        BacklogGate::fixed(move |_| max, move |_| depth)
    }

    #[test]
    fn jobs_pass_below_the_bound_and_are_shed_at_it() {
        assert_eq!(retry_after(&reserves(100, 99), JobKind::Reserve), None);
        assert_eq!(retry_after(&reserves(100, 100), JobKind::Reserve), Some(1));
        assert_eq!(retry_after(&reserves(100, 150), JobKind::Reserve), Some(2));
        assert_eq!(
            retry_after(&reserves(100, 1_000_000), JobKind::Reserve),
            Some(30)
        );
    }

    #[test]
    fn no_bound_never_sheds() {
        assert_eq!(retry_after(&reserves(0, u64::MAX), JobKind::Pay), None);
    }

    #[test]
    fn each_kind_is_judged_by_its_own_backlog() {
        let gate = BacklogGate::fixed(
            |_| 10,
            |kind| if kind == JobKind::Recharge { 50 } else { 0 },
        );
        assert_eq!(retry_after(&gate, JobKind::Recharge), Some(5));
        assert_eq!(retry_after(&gate, JobKind::Reserve), None);
        assert_eq!(retry_after(&gate, JobKind::Pay), None);
    }
}

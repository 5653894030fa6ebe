//! The ten-minute operations view, computed from the per-second hashes of
//! [`super::window`]: the same answer from every api instance, since every
//! process's events are summed in Redis.

use std::collections::HashMap;

use redis::aio::ConnectionManager;

use super::{metrics::BUCKETS, window::WINDOW_SECONDS};
use crate::jobs::backend::ALL_QUEUES;

/// Seconds over which the "now" rates are averaged.
pub const RATE_SECONDS: usize = 10;
/// Seconds of settle times behind each percentile point.
pub const SETTLE_SECONDS: usize = 30;
/// Seconds of admissions behind the line's ETA (as the admission script's estimate).
const ETA_SECONDS: usize = 60;

/// One second of the window (counters are that second's events; gauges its last sample).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Second {
    pub at: i64,
    pub waiting: u64,
    pub active: u64,
    pub admitted: u64,
    /// Tasks in the queues (waiting + scheduled + running), all queues.
    pub queued: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retried: u64,
    /// HTTP 5xx answers plus dependency errors.
    pub errors: u64,
    /// Accept → final percentiles over the trailing [`SETTLE_SECONDS`], when any job settled.
    pub settle_p50: Option<f64>,
    pub settle_p99: Option<f64>,
}

/// Depth of one queue now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueNow {
    pub queue: &'static str,
    pub waiting: u64,
    pub scheduled: u64,
    pub running: u64,
}

/// The whole view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Redis' clock, unix seconds: the last second of the window.
    pub at: i64,
    pub waiting: u64,
    pub active: u64,
    /// Admissions per second over the last [`RATE_SECONDS`].
    pub admissions_per_second: f64,
    /// When the last fan in line should be admitted, at the observed (or configured) rate.
    pub last_in_line_eta_seconds: Option<u64>,
    pub queues: Vec<QueueNow>,
    /// Per second over the last [`RATE_SECONDS`].
    pub succeeded_per_second: f64,
    pub failed_per_second: f64,
    pub retried_per_second: f64,
    pub errors_per_second: f64,
    /// Dependency errors over the whole window, by dependency.
    pub dependency_errors: Vec<(String, u64)>,
    pub settle_p50: Option<f64>,
    pub settle_p99: Option<f64>,
    /// Oldest first, one per second, [`WINDOW_SECONDS`] long.
    pub seconds: Vec<Second>,
}

type Fields = HashMap<String, u64>;

/// Reads the window of the stack `prefix`. `admit_per_second` is the configured
/// cap, the ETA's rate until enough admissions were observed.
pub async fn read(
    redis: &ConnectionManager,
    prefix: &str,
    admit_per_second: u64,
) -> Result<Snapshot, redis::RedisError> {
    let mut conn = redis.clone();
    let (now, _): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
    let first = now - WINDOW_SECONDS + 1;
    let mut pipe = redis::pipe();
    for at in first..=now {
        pipe.cmd("HGETALL").arg(format!("{prefix}:ops:s:{at}"));
    }
    let hashes: Vec<HashMap<String, i64>> = pipe.query_async(&mut conn).await?;
    let hashes: Vec<Fields> = hashes
        .into_iter()
        .map(|h| {
            h.into_iter()
                .map(|(k, v)| (k, u64::try_from(v).unwrap_or(0)))
                .collect()
        })
        .collect();
    Ok(compute(first, &hashes, admit_per_second))
}

/// The view of `hashes` (one per second from `first`), pure so it is testable.
pub fn compute(first: i64, hashes: &[Fields], admit_per_second: u64) -> Snapshot {
    let get = |h: &Fields, f: &str| h.get(f).copied().unwrap_or(0);
    // Gauges carry forward over a second no process sampled (a hiccup, not an empty line).
    let mut last_gauges: (u64, u64, u64) = (0, 0, 0);
    let buckets: Vec<Vec<u64>> = hashes.iter().map(settle_buckets).collect();
    let mut seconds = Vec::with_capacity(hashes.len());
    for (i, h) in hashes.iter().enumerate() {
        if h.contains_key("waiting") {
            let queued = ALL_QUEUES
                .iter()
                .flat_map(|q| ["waiting", "scheduled", "running"].map(|s| format!("q:{q}:{s}")))
                .map(|f| get(h, &f))
                .sum();
            last_gauges = (get(h, "waiting"), get(h, "active"), queued);
        }
        let lo = (i + 1).saturating_sub(SETTLE_SECONDS);
        let (p50, p99) = percentiles(&buckets[lo..=i]);
        seconds.push(Second {
            at: first + i64::try_from(i).unwrap_or_default(),
            waiting: last_gauges.0,
            active: last_gauges.1,
            queued: last_gauges.2,
            admitted: get(h, "admitted"),
            succeeded: get(h, "fin:succeeded"),
            failed: get(h, "fin:failed"),
            retried: get(h, "fin:retry"),
            errors: get(h, "http_5xx") + get(h, "dep:postgres") + get(h, "dep:redis"),
            settle_p50: p50,
            settle_p99: p99,
        });
    }
    let latest = hashes
        .iter()
        .rev()
        .find(|h| h.contains_key("waiting"))
        .cloned()
        .unwrap_or_default();
    let recent = &seconds[seconds.len().saturating_sub(RATE_SECONDS)..];
    let rate =
        |f: fn(&Second) -> u64| recent.iter().map(f).sum::<u64>() as f64 / RATE_SECONDS as f64;
    let minute = &seconds[seconds.len().saturating_sub(ETA_SECONDS)..];
    let observed: u64 = minute.iter().map(|s| s.admitted).sum();
    // Over the seconds since the first admission of the minute, as the script does.
    let span = minute
        .iter()
        .position(|s| s.admitted > 0)
        .map_or(1, |first| minute.len() - first);
    // As the admission script: the observed rate once there is enough of it, capped by the config.
    let eta_rate = if observed >= 5 {
        (observed as f64 / span as f64).min(admit_per_second as f64)
    } else {
        admit_per_second as f64
    };
    let waiting = get(&latest, "waiting");
    let mut dependency_errors: Vec<(String, u64)> = ["postgres", "redis"]
        .iter()
        .map(|d| {
            let field = format!("dep:{d}");
            ((*d).to_owned(), hashes.iter().map(|h| get(h, &field)).sum())
        })
        .collect();
    dependency_errors.sort();
    let (settle_p50, settle_p99) = seconds
        .last()
        .map_or((None, None), |s| (s.settle_p50, s.settle_p99));
    Snapshot {
        at: first + i64::try_from(hashes.len()).unwrap_or_default() - 1,
        waiting,
        active: get(&latest, "active"),
        admissions_per_second: rate(|s| s.admitted),
        last_in_line_eta_seconds: (eta_rate > 0.0)
            .then(|| (waiting as f64 / eta_rate).ceil() as u64),
        queues: ALL_QUEUES
            .iter()
            .map(|q| QueueNow {
                queue: q,
                waiting: get(&latest, &format!("q:{q}:waiting")),
                scheduled: get(&latest, &format!("q:{q}:scheduled")),
                running: get(&latest, &format!("q:{q}:running")),
            })
            .collect(),
        succeeded_per_second: rate(|s| s.succeeded),
        failed_per_second: rate(|s| s.failed),
        retried_per_second: rate(|s| s.retried),
        errors_per_second: rate(|s| s.errors),
        dependency_errors,
        settle_p50,
        settle_p99,
        seconds,
    }
}

/// One second's settle-time bucket counts (`BUCKETS.len() + 1`, the last one overflow).
fn settle_buckets(h: &Fields) -> Vec<u64> {
    (0..=BUCKETS.len())
        .map(|i| h.get(&format!("settle:{i}")).copied().unwrap_or(0))
        .collect()
}

/// p50 and p99 of the settle-time buckets summed over `seconds`: the upper bound
/// of the bucket holding the rank (the last bound for the overflow bucket).
fn percentiles(seconds: &[Vec<u64>]) -> (Option<f64>, Option<f64>) {
    let mut counts = vec![0_u64; BUCKETS.len() + 1];
    for second in seconds {
        for (c, n) in counts.iter_mut().zip(second) {
            *c += n;
        }
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return (None, None);
    }
    let at = |q: f64| {
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return BUCKETS.get(i).or(BUCKETS.last()).copied();
            }
        }
        BUCKETS.last().copied()
    };
    (at(0.5), at(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(fields: &[(&str, u64)]) -> Fields {
        fields.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn rates_gauges_and_percentiles_come_from_the_seconds() {
        let mut hashes = vec![Fields::new(); 600];
        hashes[598] = hash(&[("waiting", 40), ("active", 7), ("q:reserve:waiting", 3)]);
        hashes[599] = hash(&[
            ("fin:succeeded", 20),
            ("fin:failed", 10),
            ("admitted", 8),
            ("settle:3", 98),
            ("settle:9", 2),
            ("http_5xx", 1),
            ("dep:redis", 4),
        ]);
        let s = compute(1000, &hashes, 4);
        let mut slow = hashes.clone();
        slow[579] = hash(&[("admitted", 2)]);
        slow[599].insert("admitted".into(), 3);
        // 5 admissions over the 21 seconds since the first one: 40 / (5/21) = 168.
        assert_eq!(compute(1000, &slow, 4).last_in_line_eta_seconds, Some(168));
        assert_eq!(s.at, 1599);
        assert_eq!((s.waiting, s.active), (40, 7));
        assert_eq!(
            s.seconds.last().map(|x| x.waiting),
            Some(40),
            "gauges carry forward"
        );
        assert!((s.succeeded_per_second - 2.0).abs() < 1e-9);
        assert!((s.failed_per_second - 1.0).abs() < 1e-9);
        assert!((s.errors_per_second - 0.5).abs() < 1e-9);
        assert_eq!(s.settle_p50, Some(BUCKETS[3]));
        assert_eq!(s.settle_p99, Some(BUCKETS[9]));
        // 8 admissions ≥ 5 observed, all in the last second: 8/s, capped at 4/s: 40 / 4.
        assert_eq!(s.last_in_line_eta_seconds, Some(10));
        assert_eq!(s.queues.first().map(|q| q.waiting), Some(3));
        assert_eq!(s.seconds.last().map(|x| x.queued), Some(3));
    }

    #[test]
    fn an_empty_window_has_no_percentiles_and_uses_the_configured_rate() {
        let s = compute(0, &vec![Fields::new(); 600], 10);
        assert_eq!((s.settle_p50, s.settle_p99), (None, None));
        assert_eq!(s.last_in_line_eta_seconds, Some(0));
    }
}

//! Booking windows of schedules, cached in process so accepting a reservation
//! touches no database: a schedule's window is read from PostgreSQL once per
//! process and minute (an unknown id is remembered for a few seconds).
//!
//! Misses are single-flight: when a stampede of reserves reaches a fresh api,
//! one request per schedule reads PostgreSQL and the others wait for its answer,
//! instead of hundreds of identical queries queueing for the pool.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::schedules;
use sea_orm::{ConnectionTrait, EntityTrait};
use tokio::time::Instant;

const FOUND_TTL: Duration = Duration::from_secs(60);
const MISSING_TTL: Duration = Duration::from_secs(5);
/// Beyond this many remembered ids, stale ones are dropped (ids come from clients).
const PRUNE_ABOVE: usize = 10_000;

/// When a schedule can be booked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub opens: DateTime<Utc>,
    pub closes: DateTime<Utc>,
}

impl Window {
    /// Open at `now`: `opens <= now < closes`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.opens <= now && now < self.closes
    }
}

/// A cached lookup: the window (`None`: no such schedule) and when it was read.
type Entry = (Option<Window>, Instant);

fn fresh(entry: Option<Entry>) -> Option<Option<Window>> {
    let (w, at) = entry?;
    let ttl = if w.is_some() { FOUND_TTL } else { MISSING_TTL };
    (at.elapsed() < ttl).then_some(w)
}

/// One schedule id: its last lookup, and the lock a refill holds.
#[derive(Debug, Default)]
struct Slot {
    entry: Mutex<Option<Entry>>,
    fill: tokio::sync::Mutex<()>,
}

impl Slot {
    fn cached(&self) -> Option<Option<Window>> {
        fresh(*self.entry.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The cache.
#[derive(Clone, Debug, Default)]
pub struct ScheduleWindows {
    slots: Arc<Mutex<HashMap<i64, Arc<Slot>>>>,
}

impl ScheduleWindows {
    /// The schedule's window, or `None` if it does not exist.
    pub async fn window(
        &self,
        db: &impl ConnectionTrait,
        id: i64,
    ) -> domain::Result<Option<Window>> {
        self.get_or_load(id, || async move {
            Ok(schedules::Entity::find_by_id(id)
                .one(db)
                .await?
                .map(|s| Window {
                    opens: s.booking_opens_at,
                    closes: s.booking_closes_at,
                }))
        })
        .await
    }

    async fn get_or_load<F, Fut>(&self, id: i64, load: F) -> domain::Result<Option<Window>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = domain::Result<Option<Window>>>,
    {
        let slot = self.slot(id);
        if let Some(w) = slot.cached() {
            return Ok(w);
        }
        let _filling = slot.fill.lock().await;
        // Whoever held the lock before us may have filled it.
        if let Some(w) = slot.cached() {
            return Ok(w);
        }
        let w = load().await?;
        *slot.entry.lock().unwrap_or_else(|e| e.into_inner()) = Some((w, Instant::now()));
        Ok(w)
    }

    fn slot(&self, id: i64) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() > PRUNE_ABOVE && !slots.contains_key(&id) {
            slots.retain(|_, s| Arc::strong_count(s) > 1 || s.cached().is_some());
        }
        Arc::clone(slots.entry(id).or_default())
    }

    /// How many schedule ids are remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn window() -> Window {
        let opens = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        Window {
            opens,
            closes: opens + chrono::Duration::hours(1),
        }
    }

    async fn counted(
        cache: &ScheduleWindows,
        id: i64,
        loads: &AtomicUsize,
        found: bool,
    ) -> Option<Window> {
        let loaded = cache
            .get_or_load(id, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(found.then(window))
            })
            .await;
        loaded.ok().flatten()
    }

    #[tokio::test]
    async fn a_stampede_of_misses_loads_once() {
        let cache = ScheduleWindows::default();
        let loads = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, loads, mut released) =
                    (cache.clone(), Arc::clone(&loads), released.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load(7, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            let _ = released.wait_for(|r| *r).await;
                            Ok(Some(window()))
                        })
                        .await
                })
            })
            .collect();
        // Every task holds the slot (plus the map's own reference) before the load ends.
        while Arc::strong_count(&cache.slot(7)) < 52 {
            tokio::task::yield_now().await;
        }
        release.send_replace(true);
        for t in tasks {
            assert_eq!(t.await.ok().and_then(Result::ok), Some(Some(window())));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn found_windows_are_kept_a_minute_and_unknown_ids_five_seconds() {
        let cache = ScheduleWindows::default();
        let loads = AtomicUsize::new(0);
        assert_eq!(counted(&cache, 1, &loads, true).await, Some(window()));
        assert_eq!(counted(&cache, 2, &loads, false).await, None);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(counted(&cache, 1, &loads, true).await, Some(window()));
        assert_eq!(
            loads.load(Ordering::SeqCst),
            2,
            "the window was still fresh"
        );
        assert_eq!(counted(&cache, 2, &loads, false).await, None);
        assert_eq!(
            loads.load(Ordering::SeqCst),
            3,
            "the unknown id had expired"
        );
        tokio::time::advance(Duration::from_secs(55)).await;
        counted(&cache, 1, &loads, true).await;
        assert_eq!(loads.load(Ordering::SeqCst), 4, "the window had expired");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_ids_are_forgotten_once_many_are_remembered() {
        let cache = ScheduleWindows::default();
        let loads = AtomicUsize::new(0);
        for id in 0..=i64::try_from(PRUNE_ABOVE).unwrap_or_default() {
            counted(&cache, id, &loads, false).await;
        }
        assert_eq!(cache.len(), PRUNE_ABOVE + 1);
        tokio::time::advance(MISSING_TTL).await;
        counted(&cache, -1, &loads, false).await;
        assert_eq!(cache.len(), 1);
    }
}

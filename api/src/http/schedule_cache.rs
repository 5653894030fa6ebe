//! Booking windows of schedules, cached in process so accepting a reservation
//! touches no database: a schedule's window is read from PostgreSQL once per
//! process and minute (an unknown id is remembered for a few seconds).
//!
//! Misses are single-flight: when a stampede of reserves reaches a fresh api,
//! one request per schedule reads PostgreSQL and the others wait for its answer,
//! instead of hundreds of identical queries queueing for the pool.
//!
//! Bounded with O(1) work per request, because ids come from clients: two LRU
//! maps, one for schedules found and a smaller one for ids not known to exist
//! (unknown, or on their first lookup). Random `scheduleId`s only churn the
//! second, so they neither grow memory nor evict a real schedule's window, and
//! no request ever scans the cache.

use std::{
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::schedules;
use hashlink::LruCache;
use sea_orm::{ConnectionTrait, EntityTrait};
use tokio::time::Instant;

const FOUND_TTL: Duration = Duration::from_secs(60);
const MISSING_TTL: Duration = Duration::from_secs(5);
/// Schedules found, remembered at most (far more than are on sale at once).
const FOUND_CAPACITY: usize = 10_000;
/// Ids not known to exist, remembered at most: only a burst of more distinct
/// unknown ids than this during a real schedule's first lookup costs that
/// schedule a second load.
const UNSETTLED_CAPACITY: usize = 1_000;

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

/// The two LRU maps of slots (see the module docs).
#[derive(Debug)]
struct Slots {
    /// Schedules whose last lookup found them.
    found: LruCache<i64, Arc<Slot>>,
    /// Ids never looked up yet, being looked up, or whose last lookup found nothing.
    unsettled: LruCache<i64, Arc<Slot>>,
}

/// The cache.
#[derive(Clone, Debug)]
pub struct ScheduleWindows {
    slots: Arc<Mutex<Slots>>,
}

impl Default for ScheduleWindows {
    fn default() -> Self {
        Self::with_capacity(FOUND_CAPACITY, UNSETTLED_CAPACITY)
    }
}

impl ScheduleWindows {
    fn with_capacity(found: usize, unsettled: usize) -> Self {
        Self {
            slots: Arc::new(Mutex::new(Slots {
                found: LruCache::new(found),
                unsettled: LruCache::new(unsettled),
            })),
        }
    }

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
        self.settle(id, &slot, w.is_some());
        Ok(w)
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id's slot; a new one starts among the unsettled.
    fn slot(&self, id: i64) -> Arc<Slot> {
        let mut slots = self.lock();
        if let Some(slot) = slots.found.get(&id) {
            return Arc::clone(slot);
        }
        if let Some(slot) = slots.unsettled.get(&id) {
            return Arc::clone(slot);
        }
        let slot = Arc::<Slot>::default();
        slots.unsettled.insert(id, Arc::clone(&slot));
        slot
    }

    /// Files a freshly filled slot with the found or the unsettled ids.
    fn settle(&self, id: i64, slot: &Arc<Slot>, found: bool) {
        let mut slots = self.lock();
        let Slots {
            found: found_ids,
            unsettled,
        } = &mut *slots;
        let (from, to) = if found {
            (unsettled, found_ids)
        } else {
            (found_ids, unsettled)
        };
        // Only this very slot: if it was evicted meanwhile, the id may have a newer one.
        if from.peek(&id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            from.remove(&id);
        }
        to.insert(id, Arc::clone(slot));
    }

    /// How many schedule ids are remembered: (found, unsettled), for tests.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let slots = self.lock();
        (slots.found.len(), slots.unsettled.len())
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
    async fn random_ids_far_beyond_the_bound_neither_grow_the_cache_nor_evict_a_real_window() {
        let cache = ScheduleWindows::default();
        let loads = AtomicUsize::new(0);
        assert_eq!(counted(&cache, 1, &loads, true).await, Some(window()));
        // Fifty times the bound of unknown ids, all within their five seconds.
        let flood = i64::try_from(50 * UNSETTLED_CAPACITY).unwrap_or(i64::MAX);
        for id in 2..2 + flood {
            assert_eq!(counted(&cache, id, &loads, false).await, None);
        }
        assert_eq!(cache.len(), (1, UNSETTLED_CAPACITY));
        // The real schedule's window is still served from memory.
        assert_eq!(counted(&cache, 1, &loads, true).await, Some(window()));
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1 + 50 * UNSETTLED_CAPACITY,
            "no second load of the real window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn found_windows_beyond_their_bound_evict_the_least_recently_used() {
        let cache = ScheduleWindows::with_capacity(3, 2);
        let loads = AtomicUsize::new(0);
        for id in 1..=3 {
            counted(&cache, id, &loads, true).await;
        }
        counted(&cache, 1, &loads, true).await; // 1 is now the most recently used
        counted(&cache, 4, &loads, true).await; // evicts 2
        assert_eq!(cache.len(), (3, 0));
        assert_eq!(loads.load(Ordering::SeqCst), 4);
        counted(&cache, 1, &loads, true).await;
        assert_eq!(loads.load(Ordering::SeqCst), 4, "1 was kept");
        counted(&cache, 2, &loads, true).await;
        assert_eq!(loads.load(Ordering::SeqCst), 5, "2 was evicted");
        // An id that stops existing moves to the unsettled ones, and back.
        tokio::time::advance(FOUND_TTL).await;
        assert_eq!(counted(&cache, 2, &loads, false).await, None);
        assert_eq!(cache.len(), (2, 1));
        tokio::time::advance(MISSING_TTL).await;
        assert_eq!(counted(&cache, 2, &loads, true).await, Some(window()));
        assert_eq!(cache.len(), (3, 0));
    }
}

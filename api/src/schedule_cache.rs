//! Booking windows of schedules, cached in process so accepting a reservation
//! touches no database: a schedule's window is read from PostgreSQL once per
//! process and minute (an unknown id is remembered for a few seconds).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use entity::schedules;
use sea_orm::{ConnectionTrait, EntityTrait};

const FOUND_TTL: Duration = Duration::from_secs(60);
const MISSING_TTL: Duration = Duration::from_secs(5);

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

/// The cache.
#[derive(Clone, Debug, Default)]
pub struct ScheduleWindows {
    entries: Arc<Mutex<HashMap<i64, Entry>>>,
}

impl ScheduleWindows {
    /// The schedule's window, or `None` if it does not exist.
    pub async fn window(
        &self,
        db: &impl ConnectionTrait,
        id: i64,
    ) -> domain::Result<Option<Window>> {
        if let Some((w, at)) = self.entries.lock().ok().and_then(|m| m.get(&id).copied()) {
            let ttl = if w.is_some() { FOUND_TTL } else { MISSING_TTL };
            if at.elapsed() < ttl {
                return Ok(w);
            }
        }
        let w = schedules::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|s| Window {
                opens: s.booking_opens_at,
                closes: s.booking_closes_at,
            });
        if let Ok(mut m) = self.entries.lock() {
            m.insert(id, (w, Instant::now()));
        }
        Ok(w)
    }
}

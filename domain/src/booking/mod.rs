//! Seat holds: reserve (in [`reserve`]), expire, sweep, read.
//!
//! Every state change is a conditional update whose row count is checked:
//! seats move AVAILABLE→HELD only at the version that was read (touched in
//! ascending id order, so concurrent transactions cannot deadlock), and a
//! reservation moves HELD→EXPIRED only while it is still held and overdue. The
//! schema's partial unique index is the last line of defence behind both.

mod reserve;

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{reservation_seats, reservations, seats};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, Statement, TransactionTrait,
};
use serde::Serialize;
use uuid::Uuid;

pub use reserve::{reserve, settle_batch};

use crate::error::{Error, Result};

/// Most seats in one reservation.
pub const MAX_SEATS_PER_RESERVATION: usize = 4;

/// What a successful reserve job returns (the job's `result`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub reservation_id: Uuid,
    pub schedule_id: i64,
    pub seat_numbers: Vec<i16>,
    pub total_price: i64,
    pub expires_at: DateTime<Utc>,
}

/// A reservation as its owner reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub id: Uuid,
    pub user_id: Uuid,
    pub schedule_id: i64,
    pub seat_numbers: Vec<i16>,
    pub total_price: i64,
    /// `HELD`, `CONFIRMED` or `EXPIRED` (a held reservation past its expiry reads `EXPIRED`).
    pub status: String,
    pub expires_at: DateTime<Utc>,
}

/// Checks seat numbers: 1 to 4 distinct numbers in 1..=50, returned sorted.
pub fn validate_seat_numbers(numbers: &[i64]) -> Result<Vec<i16>> {
    if numbers.is_empty() || numbers.len() > MAX_SEATS_PER_RESERVATION {
        return Err(Error::invalid(
            "seatNumbers",
            format!("must hold 1 to {MAX_SEATS_PER_RESERVATION} seat numbers"),
        ));
    }
    let mut out = Vec::with_capacity(numbers.len());
    for (i, n) in numbers.iter().enumerate() {
        let seat = i16::try_from(*n)
            .ok()
            .filter(|s| (1..=crate::catalog::SEATS_PER_SCHEDULE).contains(s))
            .ok_or_else(|| {
                Error::invalid(format!("seatNumbers[{i}]"), "must be between 1 and 50")
            })?;
        if out.contains(&seat) {
            return Err(Error::invalid(
                format!("seatNumbers[{i}]"),
                format!("seat {seat} is listed twice"),
            ));
        }
        out.push(seat);
    }
    out.sort_unstable();
    Ok(out)
}

/// How holds are granted: their length and the per-person cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldPolicy {
    /// How long a hold lasts unpaid (`HOLD_TTL_SECONDS`).
    pub ttl: Duration,
    /// Most seats of one schedule one user may hold or own (`MAX_SEATS_PER_USER`).
    pub max_seats_per_user: u32,
}

impl HoldPolicy {
    /// The policy configured by `config`.
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            ttl: config.hold_ttl,
            max_seats_per_user: config.max_seats_per_user,
        }
    }
}

/// Expires those of `reservation_ids` still held and overdue by PostgreSQL's
/// clock, freeing their seats, in one statement. Returns how many seats it
/// freed. Safe to race with payment and with itself: a hold paid or expired
/// meanwhile is left alone.
pub async fn expire_reservations(
    db: &impl ConnectionTrait,
    reservation_ids: &[Uuid],
) -> Result<usize> {
    Ok(expire_held(db, reservation_ids, &[]).await?.len())
}

/// The conditional flip HELD→EXPIRED judged on the statement's `now()`, and
/// the seats of the flipped holds made AVAILABLE; returns the freed seats' ids
/// and new versions. The reservations are locked first (as payment does), then
/// their seats together with `also_lock` (the seats a reserve batch is about to
/// write) in ascending id order, so no two transactions wait on each other's
/// seats in a cycle.
pub(crate) async fn expire_held(
    db: &impl ConnectionTrait,
    reservation_ids: &[Uuid],
    also_lock: &[i64],
) -> Result<Vec<(i64, i64)>> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            EXPIRE_SQL,
            [reservation_ids.to_vec().into(), also_lock.to_vec().into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<i64>("", "id")?,
                r.try_get::<i64>("", "version")?,
            ))
        })
        .collect()
}

/// `locked` counts `r` (flipping and locking every reservation) before it
/// looks at its first seat, and locks the seats in id order; the update then
/// touches only rows `locked` already holds. The seats are found through
/// `reservation_seats`' primary key: `seats.reservation_id` has no index.
const EXPIRE_SQL: &str = "WITH r AS (
  UPDATE reservations SET status = 'EXPIRED', version = version + 1, updated_at = now()
  WHERE id = ANY($1) AND status = 'HELD' AND expires_at <= now() RETURNING id),
locked AS MATERIALIZED (
  SELECT id FROM seats
  WHERE (SELECT count(*) FROM r) >= 0
    AND id IN (SELECT unnest($2::bigint[]) UNION ALL
               SELECT seat_id FROM reservation_seats WHERE reservation_id IN (SELECT id FROM r))
  ORDER BY id FOR NO KEY UPDATE)
UPDATE seats s SET status = 'AVAILABLE', reservation_id = NULL, hold_expires_at = NULL,
                   version = s.version + 1
FROM locked l
WHERE s.id = l.id AND s.reservation_id IN (SELECT id FROM r) AND s.status = 'HELD'
RETURNING s.id, s.version";

#[derive(FromQueryResult)]
struct OverdueId {
    id: Uuid,
}

/// Expires up to `limit` overdue holds (oldest first) whose expiry job was lost
/// or is late. Concurrent sweepers skip each other's rows. Returns how many.
pub async fn sweep_expired(db: &DatabaseConnection, limit: u64) -> Result<u64> {
    let txn = db.begin().await?;
    let rows = OverdueId::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id FROM reservations WHERE status = 'HELD' AND expires_at <= now()
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        [i64::try_from(limit).unwrap_or(i64::MAX).into()],
    ))
    .all(&txn)
    .await?;
    let ids: Vec<Uuid> = rows.into_iter().map(|row| row.id).collect();
    if !ids.is_empty() {
        expire_held(&txn, &ids, &[]).await?;
    }
    txn.commit().await?;
    // Locked, held and overdue in this transaction: each of them was expired.
    Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
}

/// A reservation for its owner; anyone else's reads as not found.
pub async fn get_reservation(
    db: &impl ConnectionTrait,
    id: Uuid,
    owner: Uuid,
) -> Result<Reservation> {
    let found = crate::platform::db::one_with_now::<reservations::Model>(
        db,
        "SELECT r.*, now() AS db_now FROM reservations r WHERE r.id = $1",
        [id.into()],
    )
    .await?
    .filter(|(r, _)| r.user_id == owner);
    let Some((r, now)) = found else {
        return Err(Error::not_found("reservation", id));
    };
    let seat_ids: Vec<i64> = reservation_seats::Entity::find()
        .filter(reservation_seats::Column::ReservationId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|rs| rs.seat_id)
        .collect();
    let numbers = seats::Entity::find()
        .filter(seats::Column::Id.is_in(seat_ids))
        .order_by_asc(seats::Column::Number)
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.number)
        .collect();
    let status = if r.status == "HELD" && r.expires_at <= now {
        "EXPIRED".to_owned()
    } else {
        r.status
    };
    Ok(Reservation {
        id: r.id,
        user_id: r.user_id,
        schedule_id: r.schedule_id,
        seat_numbers: numbers,
        total_price: r.total_price,
        status,
        expires_at: r.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_numbers_are_sorted_and_checked() {
        assert_eq!(validate_seat_numbers(&[3, 1]).expect("valid"), vec![1, 3]);
        let field = |n: &[i64]| match validate_seat_numbers(n) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{n:?}: {other:?}"),
        };
        assert_eq!(field(&[]), "seatNumbers");
        assert_eq!(field(&[1, 2, 3, 4, 5]), "seatNumbers");
        assert_eq!(field(&[1, 51]), "seatNumbers[1]");
        assert_eq!(field(&[0]), "seatNumbers[0]");
        assert_eq!(field(&[7, 7]), "seatNumbers[1]");
        assert_eq!(field(&[70_000]), "seatNumbers[0]");
    }
}

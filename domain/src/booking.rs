//! Seat holds: reserve, expire, sweep, read.
//!
//! Every state change is a conditional update whose row count is checked:
//! seats move AVAILABLE→HELD only at the version that was read (touched in
//! ascending id order, so concurrent transactions cannot deadlock), and a
//! reservation moves HELD→EXPIRED only while it is still held and overdue. The
//! schema's partial unique index is the last line of defence behind both.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{reservation_seats, reservations, schedules, seats};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    jobs::{JobKind, Outcome, ReserveJob},
    retry::{self, Attempt},
};

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

/// Runs a reserve job: all requested seats or none, idempotent per job id.
pub async fn reserve(
    db: &DatabaseConnection,
    job: &ReserveJob,
    policy: &HoldPolicy,
) -> Result<Outcome> {
    retry::optimistic(db, job.job_id, || try_reserve(db, job, policy)).await
}

async fn try_reserve(
    db: &DatabaseConnection,
    job: &ReserveJob,
    policy: &HoldPolicy,
) -> Result<Attempt> {
    let txn = db.begin().await?;
    let fail = |code: &str, message: String| Outcome::failed(code, message);
    let Some((schedule, now)) = schedule_locked_for_user(&txn, job).await? else {
        let outcome = fail(
            "SCHEDULE_NOT_FOUND",
            format!("schedule {} does not exist", job.schedule_id),
        );
        return finish(txn, job, outcome).await;
    };
    if now < schedule.booking_opens_at || now >= schedule.booking_closes_at {
        let outcome = fail(
            "BOOKING_CLOSED",
            format!("booking for schedule {} is not open", job.schedule_id),
        );
        return finish(txn, job, outcome).await;
    }
    let (rows, owned) = requested_seats_and_owned(&txn, job, now).await?;
    let allowed = i64::from(policy.max_seats_per_user);
    if owned + i64::try_from(job.seat_numbers.len()).unwrap_or(i64::MAX) > allowed {
        let message = format!(
            "you already hold or own {owned} seat(s) of schedule {}; at most {allowed} per person; \
             nothing was held",
            job.schedule_id
        );
        return finish(txn, job, fail("SEAT_LIMIT_EXCEEDED", message)).await;
    }
    let taken: Vec<i16> = rows
        .iter()
        .filter(|s| {
            s.status == "SOLD" || (s.status == "HELD" && s.hold_expires_at.is_some_and(|t| t > now))
        })
        .map(|s| s.number)
        .collect();
    if !taken.is_empty() || rows.len() != job.seat_numbers.len() {
        let message = format!(
            "seats {taken:?} of schedule {} are not available; nothing was held",
            job.schedule_id
        );
        return finish(txn, job, fail("SEAT_UNAVAILABLE", message)).await;
    }
    // Overdue holds on the requested seats are expired here, whether or not their expiry job ran.
    let overdue: Vec<Uuid> = rows
        .iter()
        .filter(|s| s.status == "HELD")
        .filter_map(|s| s.reservation_id)
        .collect();
    let rows = if overdue.is_empty() {
        rows
    } else {
        for id in overdue {
            expire_in(&txn, id).await?;
        }
        requested_seats(&txn, job).await?
    };
    let reservation_id = Uuid::now_v7();
    let expires_at = now + chrono::Duration::from_std(policy.ttl).unwrap_or_default();
    let total_price = rows.iter().map(|s| s.price).sum();
    let inserted = reservations::Entity::insert(reservations::ActiveModel {
        id: Set(reservation_id),
        user_id: Set(job.user_id),
        schedule_id: Set(job.schedule_id),
        status: Set("HELD".into()),
        total_price: Set(total_price),
        expires_at: Set(expires_at),
        version: Set(0),
        job_id: Set(job.job_id),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(&txn)
    .await
    .map_err(Error::from);
    if let Err(e) = inserted {
        if !retry::violates(&e, "reservations_user_id_fkey") {
            return Err(e);
        }
        // The user was deleted after the job was accepted: a final outcome, not a retry.
        txn.rollback().await?;
        let message = format!("user {} does not exist; nothing was held", job.user_id);
        return finish(db.begin().await?, job, fail("USER_NOT_FOUND", message)).await;
    }
    for seat in &rows {
        let held = seats::Entity::update_many()
            .col_expr(seats::Column::Status, Expr::value("HELD"))
            .col_expr(seats::Column::ReservationId, Expr::value(reservation_id))
            .col_expr(seats::Column::HoldExpiresAt, Expr::value(expires_at))
            .col_expr(
                seats::Column::Version,
                Expr::col(seats::Column::Version).add(1),
            )
            .filter(seats::Column::Id.eq(seat.id))
            .filter(seats::Column::Version.eq(seat.version))
            .filter(seats::Column::Status.eq("AVAILABLE"))
            .exec(&txn)
            .await?;
        if held.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(Attempt::Conflict);
        }
    }
    reservation_seats::Entity::insert_many(rows.iter().map(|s| reservation_seats::ActiveModel {
        reservation_id: Set(reservation_id),
        seat_id: Set(s.id),
        reservation_status: Set("HELD".into()),
    }))
    .exec_without_returning(&txn)
    .await?;
    let hold = Hold {
        reservation_id,
        schedule_id: job.schedule_id,
        seat_numbers: rows.iter().map(|s| s.number).collect(),
        total_price,
        expires_at,
    };
    let result =
        serde_json::to_value(&hold).map_err(|e| Error::Database(DbErr::Custom(e.to_string())))?;
    finish(txn, job, Outcome::Succeeded(result)).await
}

/// The job's schedule and PostgreSQL's `now()` (the clock of every judgment in
/// the transaction), read while taking a transaction-scoped advisory lock on
/// (user, schedule): two reserves of one user then cannot both count the same
/// per-person headroom, while different users never wait on each other. One
/// statement, so neither the lock nor the clock costs a round trip of its own.
async fn schedule_locked_for_user(
    txn: &impl ConnectionTrait,
    job: &ReserveJob,
) -> Result<Option<(schedules::Model, DateTime<Utc>)>> {
    let key = format!("seat-limit|{}|{}", job.user_id, job.schedule_id);
    Ok(crate::platform::db::one_with_now(
        txn,
        "SELECT s.*, now() AS db_now, \
           (SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended($2, 0))) l) AS locked \
         FROM schedules s WHERE s.id = $1",
        [job.schedule_id.into(), key.into()],
    )
    .await?)
}

/// The requested seats (ascending id, the lock order) and how many seats of the
/// schedule the user already holds (unexpired) or owns. One statement, after the
/// lock statement, so under READ COMMITTED its snapshot sees every reserve of
/// this user that committed before the lock was granted.
async fn requested_seats_and_owned(
    txn: &impl ConnectionTrait,
    job: &ReserveJob,
    now: DateTime<Utc>,
) -> Result<(Vec<seats::Model>, i64)> {
    let numbers: Vec<i16> = job.seat_numbers.clone();
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT s.*, (SELECT count(*) FROM reservation_seats rs \
                 JOIN reservations r ON r.id = rs.reservation_id \
                 WHERE r.user_id = $3 AND r.schedule_id = $1 \
                   AND (r.status = 'CONFIRMED' OR (r.status = 'HELD' AND r.expires_at > $4))) AS owned \
             FROM seats s WHERE s.schedule_id = $1 AND s.number = ANY($2) ORDER BY s.id",
            [
                job.schedule_id.into(),
                numbers.into(),
                job.user_id.into(),
                now.into(),
            ],
        ))
        .await?;
    let owned = rows
        .first()
        .map(|r| r.try_get::<i64>("", "owned"))
        .transpose()?
        .unwrap_or(0);
    let seats = rows
        .iter()
        .map(|r| seats::Model::from_query_result(r, ""))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((seats, owned))
}

async fn requested_seats(db: &impl ConnectionTrait, job: &ReserveJob) -> Result<Vec<seats::Model>> {
    Ok(seats::Entity::find()
        .filter(seats::Column::ScheduleId.eq(job.schedule_id))
        .filter(seats::Column::Number.is_in(job.seat_numbers.clone()))
        .order_by_asc(seats::Column::Id)
        .all(db)
        .await?)
}

async fn finish(
    txn: sea_orm::DatabaseTransaction,
    job: &ReserveJob,
    outcome: Outcome,
) -> Result<Attempt> {
    retry::finish(
        txn,
        job.job_id,
        JobKind::Reserve,
        job.user_id,
        job.accepted_at,
        outcome,
    )
    .await
}

/// Expires `reservation_id` if it is still held and overdue by PostgreSQL's
/// clock, freeing its seats. Returns whether this call expired it. Safe to race
/// with payment and with itself.
pub async fn expire_reservation(db: &DatabaseConnection, reservation_id: Uuid) -> Result<bool> {
    let txn = db.begin().await?;
    let expired = expire_in(&txn, reservation_id).await?;
    txn.commit().await?;
    Ok(expired)
}

/// The conditional flip HELD→EXPIRED judged on the transaction's `now()`.
async fn expire_in(db: &impl ConnectionTrait, reservation_id: Uuid) -> Result<bool> {
    let now = || Expr::cust("now()");
    let flipped = reservations::Entity::update_many()
        .col_expr(reservations::Column::Status, Expr::value("EXPIRED"))
        .col_expr(
            reservations::Column::Version,
            Expr::col(reservations::Column::Version).add(1),
        )
        .col_expr(reservations::Column::UpdatedAt, now())
        .filter(reservations::Column::Id.eq(reservation_id))
        .filter(reservations::Column::Status.eq("HELD"))
        .filter(Expr::col(reservations::Column::ExpiresAt).lte(now()))
        .exec(db)
        .await?;
    if flipped.rows_affected == 0 {
        return Ok(false);
    }
    seats::Entity::update_many()
        .col_expr(seats::Column::Status, Expr::value("AVAILABLE"))
        .col_expr(
            seats::Column::ReservationId,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            seats::Column::HoldExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            seats::Column::Version,
            Expr::col(seats::Column::Version).add(1),
        )
        .filter(seats::Column::ReservationId.eq(reservation_id))
        .filter(seats::Column::Status.eq("HELD"))
        .exec(db)
        .await?;
    Ok(true)
}

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
    let mut expired = 0;
    for row in rows {
        expired += u64::from(expire_in(&txn, row.id).await?);
    }
    txn.commit().await?;
    Ok(expired)
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

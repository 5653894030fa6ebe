//! Concerts, schedules and seats: operator writes and fan reads.
//!
//! Reads compute a seat's *effective* status: a hold whose time has passed is
//! shown as available even before its expiry job runs, so correctness never
//! waits on the queue.

use chrono::{DateTime, Utc};
use entity::{concerts, schedules, seats};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult,
    QueryOrder, Statement, TransactionTrait,
};
use serde::Serialize;

use crate::error::{Error, Result};

/// Seats per schedule, numbered 1..=50 (the schema refuses others).
pub const SEATS_PER_SCHEDULE: i16 = 50;
/// Highest seat price in won.
pub const MAX_SEAT_PRICE: i64 = 10_000_000;
/// Most schedules one admin request may create.
pub const MAX_SCHEDULES_PER_CONCERT: usize = 100;

/// A seat's status as fans see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

impl SeatStatus {
    /// The stored status with overdue holds read as available.
    pub fn effective(
        stored: &str,
        hold_expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        match stored {
            "SOLD" => Self::Sold,
            "HELD" if hold_expires_at.is_some_and(|t| t > now) => Self::Held,
            _ => Self::Available,
        }
    }
}

/// A concert in listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct Concert {
    pub id: i64,
    pub title: String,
}

/// A concert with its schedules, as created by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConcertWithSchedules {
    pub id: i64,
    pub title: String,
    pub schedules: Vec<Schedule>,
}

/// One date of a concert with its seat counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct Schedule {
    pub id: i64,
    pub concert_id: i64,
    pub starts_at: DateTime<Utc>,
    pub booking_opens_at: DateTime<Utc>,
    pub booking_closes_at: DateTime<Utc>,
    pub seat_price: i64,
    pub total_seats: i64,
    /// Seats a fan could reserve right now: 0 unless booking is open.
    pub available_seats: i64,
    pub booking_open: bool,
}

/// One seat with its effective status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Seat {
    pub id: i64,
    pub number: i16,
    pub price: i64,
    pub status: SeatStatus,
}

/// Operator input for one schedule.
#[derive(Clone, Debug)]
pub struct NewSchedule {
    pub starts_at: DateTime<Utc>,
    pub booking_opens_at: DateTime<Utc>,
    pub booking_closes_at: DateTime<Utc>,
    pub seat_price: i64,
}

/// Checks an operator's concert before anything is written. Field names are the API's.
pub fn validate_new_concert(
    title: &str,
    schedules: &[NewSchedule],
    now: DateTime<Utc>,
) -> Result<String> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(Error::invalid("title", "must be 1 to 200 characters"));
    }
    if schedules.is_empty() || schedules.len() > MAX_SCHEDULES_PER_CONCERT {
        let msg = format!("must hold 1 to {MAX_SCHEDULES_PER_CONCERT} schedules");
        return Err(Error::invalid("schedules", msg));
    }
    for (i, s) in schedules.iter().enumerate() {
        let field = |name: &str| format!("schedules[{i}].{name}");
        if !(1..=MAX_SEAT_PRICE).contains(&s.seat_price) {
            let msg = format!("must be between 1 and {MAX_SEAT_PRICE} won");
            return Err(Error::invalid(field("seatPrice"), msg));
        }
        if s.booking_opens_at >= s.booking_closes_at {
            return Err(Error::invalid(
                field("bookingClosesAt"),
                "must be after bookingOpensAt",
            ));
        }
        if s.booking_closes_at > s.starts_at {
            return Err(Error::invalid(
                field("bookingClosesAt"),
                "must not be after startsAt",
            ));
        }
        if s.booking_closes_at <= now {
            return Err(Error::invalid(
                field("bookingClosesAt"),
                "must be in the future",
            ));
        }
    }
    Ok(title.to_owned())
}

/// Creates a concert, its schedules and 50 seats per schedule in one transaction.
pub async fn create_concert(
    db: &DatabaseConnection,
    title: &str,
    new_schedules: &[NewSchedule],
) -> Result<ConcertWithSchedules> {
    let now = Utc::now();
    let title = validate_new_concert(title, new_schedules, now)?;
    let txn = db.begin().await?;
    let concert = concerts::Entity::insert(concerts::ActiveModel {
        title: Set(title),
        created_at: Set(now),
        ..Default::default()
    })
    .exec_with_returning(&txn)
    .await?;
    for s in new_schedules {
        let schedule = schedules::Entity::insert(schedules::ActiveModel {
            concert_id: Set(concert.id),
            starts_at: Set(s.starts_at),
            booking_opens_at: Set(s.booking_opens_at),
            booking_closes_at: Set(s.booking_closes_at),
            seat_price: Set(s.seat_price),
            created_at: Set(now),
            ..Default::default()
        })
        .exec_with_returning(&txn)
        .await?;
        seats::Entity::insert_many((1..=SEATS_PER_SCHEDULE).map(|number| seats::ActiveModel {
            schedule_id: Set(schedule.id),
            number: Set(number),
            price: Set(s.seat_price),
            status: Set("AVAILABLE".to_owned()),
            version: Set(0),
            ..Default::default()
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    let schedules = schedules_where(&txn, "s.concert_id = $1", concert.id).await?;
    txn.commit().await?;
    Ok(ConcertWithSchedules {
        id: concert.id,
        title: concert.title,
        schedules,
    })
}

/// Every concert, oldest first.
pub async fn list_concerts(db: &impl ConnectionTrait) -> Result<Vec<Concert>> {
    let rows = concerts::Entity::find()
        .order_by_asc(concerts::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|c| Concert {
            id: c.id,
            title: c.title,
        })
        .collect())
}

/// A concert's schedules with seat counts (availability by PostgreSQL's clock);
/// unknown concert → not found.
pub async fn list_schedules(db: &impl ConnectionTrait, concert_id: i64) -> Result<Vec<Schedule>> {
    if concerts::Entity::find_by_id(concert_id)
        .one(db)
        .await?
        .is_none()
    {
        return Err(Error::not_found("concert", concert_id));
    }
    schedules_where(db, "s.concert_id = $1", concert_id).await
}

/// One schedule with seat counts; unknown → not found.
pub async fn get_schedule(db: &impl ConnectionTrait, schedule_id: i64) -> Result<Schedule> {
    schedules_where(db, "s.id = $1", schedule_id)
        .await?
        .pop()
        .ok_or_else(|| Error::not_found("schedule", schedule_id))
}

/// Schedules matching `filter` (on `$1`), counted as of the statement's `now()`.
async fn schedules_where(
    db: &impl ConnectionTrait,
    filter: &str,
    id: i64,
) -> Result<Vec<Schedule>> {
    let sql = format!(
        "SELECT s.id, s.concert_id, s.starts_at, s.booking_opens_at, s.booking_closes_at, s.seat_price,
                count(se.id) AS total_seats,
                CASE WHEN now() >= s.booking_opens_at AND now() < s.booking_closes_at
                     THEN count(se.id) FILTER (WHERE se.status = 'AVAILABLE'
                                               OR (se.status = 'HELD' AND se.hold_expires_at <= now()))
                     ELSE 0 END AS available_seats,
                (now() >= s.booking_opens_at AND now() < s.booking_closes_at) AS booking_open
         FROM schedules s LEFT JOIN seats se ON se.schedule_id = s.id
         WHERE {filter}
         GROUP BY s.id
         ORDER BY s.starts_at, s.id"
    );
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, sql, [id.into()]);
    Ok(Schedule::find_by_statement(stmt).all(db).await?)
}

/// A schedule's seats in number order, an overdue hold shown free by
/// PostgreSQL's clock; unknown schedule → not found.
pub async fn list_seats(db: &impl ConnectionTrait, schedule_id: i64) -> Result<Vec<Seat>> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let Some((_, now)) = crate::platform::db::one_with_now::<schedules::Model>(
        db,
        "SELECT s.*, now() AS db_now FROM schedules s WHERE s.id = $1",
        [schedule_id.into()],
    )
    .await?
    else {
        return Err(Error::not_found("schedule", schedule_id));
    };
    let rows = seats::Entity::find()
        .filter(seats::Column::ScheduleId.eq(schedule_id))
        .order_by_asc(seats::Column::Number)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|s| Seat {
            id: s.id,
            number: s.number,
            price: s.price,
            status: SeatStatus::effective(&s.status, s.hold_expires_at, now),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn schedule(now: DateTime<Utc>) -> NewSchedule {
        NewSchedule {
            starts_at: now + Duration::days(2),
            booking_opens_at: now - Duration::hours(1),
            booking_closes_at: now + Duration::days(1),
            seat_price: 50_000,
        }
    }

    fn field_of(result: Result<String>) -> String {
        match result {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn an_overdue_hold_reads_as_available() {
        let now = Utc::now();
        assert_eq!(
            SeatStatus::effective("HELD", Some(now - Duration::seconds(1)), now),
            SeatStatus::Available
        );
        assert_eq!(
            SeatStatus::effective("HELD", Some(now + Duration::seconds(1)), now),
            SeatStatus::Held
        );
        assert_eq!(SeatStatus::effective("SOLD", None, now), SeatStatus::Sold);
        assert_eq!(
            SeatStatus::effective("AVAILABLE", None, now),
            SeatStatus::Available
        );
    }

    #[test]
    fn a_valid_concert_passes_with_a_trimmed_title() {
        let now = Utc::now();
        assert_eq!(
            validate_new_concert(" Tour ", &[schedule(now)], now).expect("valid"),
            "Tour"
        );
    }

    #[test]
    fn bad_concerts_name_the_offending_field() {
        let now = Utc::now();
        assert_eq!(
            field_of(validate_new_concert("", &[schedule(now)], now)),
            "title"
        );
        assert_eq!(field_of(validate_new_concert("t", &[], now)), "schedules");
        let mut s = schedule(now);
        s.seat_price = 0;
        assert_eq!(
            field_of(validate_new_concert("t", &[schedule(now), s], now)),
            "schedules[1].seatPrice"
        );
        let mut s = schedule(now);
        s.booking_closes_at = s.booking_opens_at;
        assert_eq!(
            field_of(validate_new_concert("t", &[s], now)),
            "schedules[0].bookingClosesAt"
        );
        let mut s = schedule(now);
        s.starts_at = s.booking_closes_at - Duration::seconds(1);
        assert_eq!(
            field_of(validate_new_concert("t", &[s], now)),
            "schedules[0].bookingClosesAt"
        );
    }
}

//! Concert, date and seat listings.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{Enum, Object, OpenApi, param::Path, payload::Json};

use crate::{
    endpoints::tags::Tag, http::auth::ActiveFan, http::problem::Problem, http::state::AppState,
};

/// A concert in the listing.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Concert {
    pub concert_id: i64,
    pub title: String,
}

/// One date of a concert.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Schedule {
    pub schedule_id: i64,
    pub starts_at: DateTime<Utc>,
    pub booking_opens_at: DateTime<Utc>,
    pub booking_closes_at: DateTime<Utc>,
    /// Won per seat.
    pub seat_price: i64,
    pub total_seats: i64,
    /// Seats reservable right now; 0 while booking is not open.
    pub available_seats: i64,
    /// Whether the booking window is open now.
    pub booking_open: bool,
}

impl From<domain::catalog::Schedule> for Schedule {
    fn from(s: domain::catalog::Schedule) -> Self {
        Self {
            schedule_id: s.id,
            starts_at: s.starts_at,
            booking_opens_at: s.booking_opens_at,
            booking_closes_at: s.booking_closes_at,
            seat_price: s.seat_price,
            total_seats: s.total_seats,
            available_seats: s.available_seats,
            booking_open: s.booking_open,
        }
    }
}

/// A seat's status; an overdue hold reads `AVAILABLE`.
#[derive(Debug, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

/// One seat.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Seat {
    pub seat_id: i64,
    /// 1..50.
    pub number: i16,
    /// Won.
    pub price: i64,
    pub status: SeatStatus,
}

/// `{ items: [Concert] }`.
#[derive(Debug, Object)]
pub struct ConcertList {
    pub items: Vec<Concert>,
}

/// `{ items: [Schedule] }`.
#[derive(Debug, Object)]
pub struct ScheduleList {
    pub items: Vec<Schedule>,
}

/// `{ items: [Seat] }`.
#[derive(Debug, Object)]
pub struct SeatList {
    pub items: Vec<Seat>,
}

fn converted<T, U: From<T>>(rows: Vec<T>) -> Vec<U> {
    rows.into_iter().map(U::from).collect()
}

impl From<domain::catalog::Concert> for Concert {
    fn from(c: domain::catalog::Concert) -> Self {
        Self {
            concert_id: c.id,
            title: c.title,
        }
    }
}

impl From<domain::catalog::Seat> for Seat {
    fn from(s: domain::catalog::Seat) -> Self {
        let status = match s.status {
            domain::catalog::SeatStatus::Available => SeatStatus::Available,
            domain::catalog::SeatStatus::Held => SeatStatus::Held,
            domain::catalog::SeatStatus::Sold => SeatStatus::Sold,
        };
        Self {
            seat_id: s.id,
            number: s.number,
            price: s.price,
            status,
        }
    }
}

/// Catalog endpoints.
#[derive(Debug, Default)]
pub struct CatalogApi;

#[OpenApi(tag = "Tag::Catalog")]
impl CatalogApi {
    /// All concerts. Requires an ACTIVE queue token.
    #[oai(path = "/v1/concerts", method = "get")]
    async fn concerts(
        &self,
        state: Data<&AppState>,
        _fan: ActiveFan,
    ) -> Result<Json<ConcertList>, Problem> {
        Ok(Json(ConcertList {
            items: converted(domain::catalog::list_concerts(&state.db).await?),
        }))
    }

    /// A concert's dates with total and currently available seats. Requires an ACTIVE queue token.
    #[oai(path = "/v1/concerts/:concertId/schedules", method = "get")]
    async fn schedules(
        &self,
        state: Data<&AppState>,
        _fan: ActiveFan,
        #[oai(name = "concertId")] concert_id: Path<i64>,
    ) -> Result<Json<ScheduleList>, Problem> {
        let rows = domain::catalog::list_schedules(&state.db, concert_id.0).await?;
        Ok(Json(ScheduleList {
            items: converted(rows),
        }))
    }

    /// A date's seats 1..50 with price and status. Requires an ACTIVE queue token.
    #[oai(path = "/v1/schedules/:scheduleId/seats", method = "get")]
    async fn seats(
        &self,
        state: Data<&AppState>,
        _fan: ActiveFan,
        #[oai(name = "scheduleId")] schedule_id: Path<i64>,
    ) -> Result<Json<SeatList>, Problem> {
        let rows = domain::catalog::list_seats(&state.db, schedule_id.0).await?;
        Ok(Json(SeatList {
            items: converted(rows),
        }))
    }
}

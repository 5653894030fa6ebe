//! Reserving seats (queued) and reading a reservation.

use chrono::{DateTime, Utc};
use poem::{http::StatusCode, web::Data};
use poem_openapi::{Object, OpenApi, param::Header, param::Path, payload::Json};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    endpoints::tags::Tag, http::accepted::AcceptedResponse, http::auth::ActiveFan,
    http::json_body::JsonBody, http::problem::Problem, http::request_id::RequestId,
    http::state::AppState,
};

/// Seats to hold.
#[derive(Debug, Object, Deserialize)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct ReserveRequest {
    pub schedule_id: i64,
    /// 1 to 4 distinct seat numbers, each 1..50.
    #[oai(validator(min_items = 1, max_items = 4))]
    pub seat_numbers: Vec<i64>,
}

/// A reservation as its owner sees it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Reservation {
    pub reservation_id: Uuid,
    pub schedule_id: i64,
    pub seat_numbers: Vec<i16>,
    /// Won.
    pub total_price: i64,
    /// `HELD`, `CONFIRMED` or `EXPIRED`.
    pub status: String,
    pub expires_at: DateTime<Utc>,
}

/// Reservation endpoints.
#[derive(Debug, Default)]
pub struct ReservationsApi;

#[OpenApi(tag = "Tag::Reservations")]
impl ReservationsApi {
    /// Hold 1–4 seats for 5 minutes, all or none. Answers at once with a job to poll;
    /// the job ends `SUCCEEDED` with the hold or `FAILED` (e.g. `SEAT_UNAVAILABLE`).
    #[oai(path = "/v1/reservations", method = "post")]
    async fn reserve(
        &self,
        state: Data<&AppState>,
        fan: ActiveFan,
        request_id: Data<&RequestId>,
        /// Repeat a request safely: the same key returns the same job (kept 25 h).
        #[oai(
            name = "Idempotency-Key",
            validator(min_length = 1, max_length = 128, pattern = r"^[\x21-\x7E]+$")
        )]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<ReserveRequest>,
    ) -> Result<AcceptedResponse, Problem> {
        let seats = domain::booking::validate_seat_numbers(&body.seat_numbers)?;
        match state.schedules.window(&state.db, body.schedule_id).await? {
            None => {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!("schedule {} was not found", body.schedule_id),
                )
                .with_field("scheduleId"));
            }
            Some(w) if !w.is_open(Utc::now()) => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "BOOKING_CLOSED",
                    format!("booking for schedule {} is not open", body.schedule_id),
                )
                .with_field("scheduleId"));
            }
            Some(_) => {}
        }
        let submitted = state
            .jobs
            .submit_reserve(
                fan.0.user_id,
                body.schedule_id,
                &seats,
                idempotency_key.0.as_deref(),
                Some(request_id.0.0.clone()),
            )
            .await?;
        tracing::info!(job.id = %submitted.job_id, replayed = submitted.replayed, "reserve accepted");
        Ok(AcceptedResponse::for_job(submitted.job_id))
    }

    /// Your reservation; anyone else's reads as not found.
    #[oai(path = "/v1/reservations/:reservationId", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        fan: ActiveFan,
        #[oai(name = "reservationId")] reservation_id: Path<Uuid>,
    ) -> Result<Json<Reservation>, Problem> {
        let r =
            domain::booking::get_reservation(&state.db, reservation_id.0, fan.0.user_id).await?;
        Ok(Json(Reservation {
            reservation_id: r.id,
            schedule_id: r.schedule_id,
            seat_numbers: r.seat_numbers,
            total_price: r.total_price,
            status: r.status,
            expires_at: r.expires_at,
        }))
    }
}

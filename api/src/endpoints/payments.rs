//! Paying a held reservation (queued).

use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Header};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    endpoints::tags::Tag, http::accepted::AcceptedResponse, http::auth::ActiveFan,
    http::json_body::JsonBody, http::problem::Problem, http::request_id::RequestId,
    http::state::AppState,
};

/// What to pay.
#[derive(Debug, Object, Deserialize)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct Pay {
    pub reservation_id: Uuid,
}

/// Payment endpoints.
#[derive(Debug, Default)]
pub struct PaymentsApi;

#[OpenApi(tag = "Tag::Payments")]
impl PaymentsApi {
    /// Pay your held reservation from your balance. Answers at once with a job; it ends
    /// `SUCCEEDED` with `{ paymentId, reservationId, amount, balance }` — and your queue
    /// token then expires, freeing your slot — or `FAILED` with `HOLD_EXPIRED`,
    /// `INSUFFICIENT_BALANCE`, `ALREADY_PAID` or `RESERVATION_NOT_FOUND`.
    #[oai(path = "/v1/payments", method = "post")]
    async fn pay(
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
        body: JsonBody<Pay>,
    ) -> Result<AcceptedResponse, Problem> {
        let fan = fan.0;
        let submitted = state
            .jobs
            .submit_pay(
                fan.user_id,
                body.reservation_id,
                &fan.token_id,
                idempotency_key.0.as_deref(),
                Some(request_id.0.0.clone()),
            )
            .await?;
        tracing::info!(job.id = %submitted.job_id, replayed = submitted.replayed, "payment accepted");
        Ok(AcceptedResponse::for_job(submitted.job_id))
    }
}

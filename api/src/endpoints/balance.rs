//! Balance: queued recharges and reads.

use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Header, param::Path, payload::Json};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    endpoints::tags::Tag, http::accepted::AcceptedResponse, http::auth::Caller,
    http::json_body::JsonBody, http::problem::Problem, http::request_id::RequestId,
    http::state::AppState,
};

/// A top-up.
#[derive(Debug, Object, Deserialize)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct Recharge {
    /// Whole won, 1..=10,000,000.
    #[oai(validator(minimum(value = "1"), maximum(value = "10000000")))]
    pub amount: i64,
}

/// A user's balance.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Balance {
    pub user_id: Uuid,
    /// Whole won.
    pub balance: i64,
}

/// Balance endpoints.
#[derive(Debug, Default)]
pub struct BalanceApi;

#[OpenApi(tag = "Tag::Balance")]
impl BalanceApi {
    /// Top up your balance. Answers at once with a job; the job's result is `{ balance }`.
    /// Send an `Idempotency-Key` so a double click is applied once.
    #[oai(path = "/v1/users/:userId/balance/recharges", method = "post")]
    async fn recharge(
        &self,
        state: Data<&AppState>,
        caller: Caller,
        request_id: Data<&RequestId>,
        #[oai(name = "userId")] user_id: Path<Uuid>,
        /// Repeat a request safely: the same key returns the same job (kept 25 h).
        #[oai(
            name = "Idempotency-Key",
            validator(min_length = 1, max_length = 128, pattern = r"^[\x21-\x7E]+$")
        )]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<Recharge>,
    ) -> Result<AcceptedResponse, Problem> {
        caller.owns(user_id.0)?;
        let amount = domain::wallet::validate_amount(body.amount)?;
        // The user may have been deleted since the token was issued: 404, nothing queued.
        let exists = domain::accounts::get_user(&state.db, user_id.0);
        state
            .known_user(user_id.0, async { exists.await.map(drop) })
            .await?;
        let submitted = state
            .jobs
            .submit_recharge(
                user_id.0,
                amount,
                idempotency_key.0.as_deref(),
                Some(request_id.0.0.clone()),
            )
            .await?;
        tracing::info!(job.id = %submitted.job_id, replayed = submitted.replayed, "recharge accepted");
        Ok(AcceptedResponse::for_job(submitted.job_id))
    }

    /// Your balance in won.
    #[oai(path = "/v1/users/:userId/balance", method = "get")]
    async fn balance(
        &self,
        state: Data<&AppState>,
        caller: Caller,
        #[oai(name = "userId")] user_id: Path<Uuid>,
    ) -> Result<Json<Balance>, Problem> {
        caller.owns(user_id.0)?;
        let balance = domain::wallet::balance(&state.db, user_id.0).await?;
        Ok(Json(Balance {
            user_id: user_id.0,
            balance,
        }))
    }
}

//! Operator endpoints, guarded by the admin bearer token.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    endpoints::catalog::Schedule, endpoints::tags::Tag, http::auth::AdminAuth,
    http::client_addr::ClientAddr, http::json_body::JsonBody, http::problem::Problem,
    http::state::AppState,
};

/// One date of a new concert. Each gets seats 1..50 priced `seatPrice`.
#[derive(Debug, Object, Deserialize)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct NewSchedule {
    pub starts_at: DateTime<Utc>,
    /// Must be before `bookingClosesAt`.
    pub booking_opens_at: DateTime<Utc>,
    /// Must be in the future and not after `startsAt`.
    pub booking_closes_at: DateTime<Utc>,
    /// Won per seat.
    #[oai(validator(minimum(value = "1"), maximum(value = "10000000")))]
    pub seat_price: i64,
}

/// A new concert with its dates.
#[derive(Debug, Object, Deserialize)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct NewConcert {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: String,
    #[oai(validator(min_items = 1, max_items = 100))]
    pub schedules: Vec<NewSchedule>,
}

/// A created concert.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct CreatedConcert {
    pub concert_id: i64,
    pub title: String,
    pub schedules: Vec<Schedule>,
}

#[derive(ApiResponse)]
enum Created {
    /// The concert, its schedules and their seats were created.
    #[oai(status = 201)]
    Created(Json<CreatedConcert>, #[oai(header = "Location")] String),
}

/// An access token minted by an operator.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct AccessToken {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum Minted {
    /// A new access token for the user (earlier ones stay valid until they expire).
    #[oai(status = 201)]
    Created(Json<AccessToken>),
}

/// Operator endpoints.
#[derive(Debug, Default)]
pub struct AdminApi;

#[OpenApi(tag = "Tag::Admin")]
impl AdminApi {
    /// Mint an access token for an existing user: for seeded users, load tests and
    /// support. 409 when an external identity provider issues the tokens. At
    /// most `SIGNUP_PER_MINUTE_PER_ADDRESS` mints per client address per minute
    /// (429 `RATE_LIMITED`), so a leaked admin token cannot mint tokens in bulk
    /// from one address.
    #[oai(path = "/v1/admin/users/:userId/access-tokens", method = "post")]
    async fn mint_access_token(
        &self,
        state: Data<&AppState>,
        _auth: AdminAuth,
        client: ClientAddr,
        #[oai(name = "userId")] user_id: Path<Uuid>,
    ) -> Result<Minted, Problem> {
        if state.identity.is_external() {
            return Err(crate::endpoints::users::external_issuer());
        }
        let action = domain::rate_limit::Action::MintToken;
        domain::rate_limit::admit(&state.redis, &state.config, action, client.0).await?;
        domain::accounts::get_user(&state.db, user_id.0).await?;
        let minted = state
            .identity
            .mint(user_id.0)
            .ok_or_else(Problem::internal)?;
        tracing::info!(user.id = %user_id.0, "access token minted by an operator");
        Ok(Minted::Created(Json(AccessToken {
            access_token: minted.token,
            expires_at: minted.expires_at,
        })))
    }

    /// Create a concert with its schedules; each schedule gets seats 1..50.
    #[oai(path = "/v1/admin/concerts", method = "post")]
    async fn create_concert(
        &self,
        state: Data<&AppState>,
        _auth: AdminAuth,
        body: JsonBody<NewConcert>,
    ) -> Result<Created, Problem> {
        let schedules: Vec<_> = body
            .schedules
            .iter()
            .map(|s| domain::catalog::NewSchedule {
                starts_at: s.starts_at,
                booking_opens_at: s.booking_opens_at,
                booking_closes_at: s.booking_closes_at,
                seat_price: s.seat_price,
            })
            .collect();
        let concert = domain::catalog::create_concert(&state.db, &body.title, &schedules).await?;
        tracing::info!(
            concert.id = concert.id,
            schedules = schedules.len(),
            "concert created"
        );
        let location = format!("/v1/concerts/{}/schedules", concert.id);
        Ok(Created::Created(
            Json(CreatedConcert {
                concert_id: concert.id,
                title: concert.title,
                schedules: concert.schedules.into_iter().map(Schedule::from).collect(),
            }),
            location,
        ))
    }
}

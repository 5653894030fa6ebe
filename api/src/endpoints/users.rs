//! Sign-up and user lookup.

use chrono::{DateTime, Utc};
use poem::{http::StatusCode, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    endpoints::tags::Tag, http::auth::Caller, http::client_addr::ClientAddr,
    http::json_body::JsonBody, http::problem::Problem, http::state::AppState,
};

/// Sign-up request.
#[derive(Debug, Object, Deserialize)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct CreateUser {
    /// Display name, 1–100 characters (trimmed).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: String,
}

/// A fan's account.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct User {
    pub user_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<domain::accounts::User> for User {
    fn from(u: domain::accounts::User) -> Self {
        Self {
            user_id: u.id,
            name: u.name,
            created_at: u.created_at,
        }
    }
}

/// A new account and the access token that proves it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct SignedUp {
    pub user_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Send as `Authorization: Bearer <accessToken>` on every user-scoped call.
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum Created {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<SignedUp>, #[oai(header = "Location")] String),
}

/// Account endpoints.
#[derive(Debug, Default)]
pub struct UsersApi;

#[OpenApi(tag = "Tag::Users")]
impl UsersApi {
    /// Sign up. Returns the new user's UUID and an access token for it.
    /// With an external identity provider there is no sign-up here (409): its
    /// first valid token creates the user. At most `SIGNUP_PER_MINUTE_PER_ADDRESS`
    /// sign-ups per client address per minute (429 `RATE_LIMITED`).
    #[oai(path = "/v1/users", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        client: ClientAddr,
        body: JsonBody<CreateUser>,
    ) -> Result<Created, Problem> {
        if state.identity.is_external() {
            return Err(external_issuer());
        }
        // Before anything is written: a refused sign-up leaves no user and no wallet.
        let action = domain::rate_limit::Action::SignUp;
        domain::rate_limit::admit(&state.redis, &state.config, action, client.0).await?;
        let user = domain::accounts::create_user(&state.db, &body.name).await?;
        let minted = state.identity.mint(user.id).ok_or_else(Problem::internal)?;
        // Warm the waiting room's known-users cache; a miss only costs one lookup later.
        if let Err(error) = state.waiting_room.remember_user(user.id).await {
            tracing::warn!(%error, "could not cache the new user id");
        }
        let location = format!("/v1/users/{}", user.id);
        let body = SignedUp {
            user_id: user.id,
            name: user.name,
            created_at: user.created_at,
            access_token: minted.token,
            access_token_expires_at: minted.expires_at,
        };
        Ok(Created::Created(Json(body), location))
    }

    /// Your account (another user's id reads as not found).
    #[oai(path = "/v1/users/:userId", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        caller: Caller,
        #[oai(name = "userId")] user_id: Path<Uuid>,
    ) -> Result<Json<User>, Problem> {
        caller.owns(user_id.0)?;
        Ok(Json(
            domain::accounts::get_user(&state.db, user_id.0)
                .await?
                .into(),
        ))
    }
}

/// 409 where the service would mint a token but an external provider is the issuer.
pub fn external_issuer() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "EXTERNAL_IDENTITY_PROVIDER",
        "access tokens come from the configured identity provider (AUTH_ISSUER); \
         its first valid token creates the user",
    )
}

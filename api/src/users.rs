//! Sign-up and user lookup.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use serde::Deserialize;
use uuid::Uuid;

use crate::{json_body::JsonBody, problem::Problem, state::AppState, tags::Tag};

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

#[derive(ApiResponse)]
enum Created {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<User>, #[oai(header = "Location")] String),
}

/// Account endpoints.
#[derive(Debug, Default)]
pub struct UsersApi;

#[OpenApi(tag = "Tag::Users")]
impl UsersApi {
    /// Sign up. Returns the new user's UUID.
    #[oai(path = "/v1/users", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        body: JsonBody<CreateUser>,
    ) -> Result<Created, Problem> {
        let user = domain::accounts::create_user(&state.db, &body.name).await?;
        // Warm the waiting room's known-users cache; a miss only costs one lookup later.
        if let Err(error) = state.waiting_room.remember_user(user.id).await {
            tracing::warn!(%error, "could not cache the new user id");
        }
        let location = format!("/v1/users/{}", user.id);
        Ok(Created::Created(Json(user.into()), location))
    }

    /// Look a user up by id.
    #[oai(path = "/v1/users/:userId", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        #[oai(name = "userId")] user_id: Path<Uuid>,
    ) -> Result<Json<User>, Problem> {
        Ok(Json(
            domain::accounts::get_user(&state.db, user_id.0)
                .await?
                .into(),
        ))
    }
}

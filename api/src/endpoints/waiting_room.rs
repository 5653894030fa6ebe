//! Waiting-room endpoints and the queue-token guard.

use chrono::{DateTime, Utc};
use domain::waiting_room::{Issued, Standing, TokenState};
use poem::{http::StatusCode, web::Data};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, payload::Json};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    endpoints::tags::Tag,
    http::auth::Caller,
    http::auth::{AnyQueueToken, invalid_token},
    http::json_body::OptionalJsonBody,
    http::problem::Problem,
    http::state::AppState,
};

/// Request for a place in line. The body may be left out: the user is the access token's.
#[derive(Debug, Object, Deserialize)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct IssueToken {
    /// Optional; if given it must be the caller's own id (else 403).
    pub user_id: Option<Uuid>,
}

/// Where a token stands in the waiting room.
#[derive(Debug, Enum, PartialEq, Eq)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueStatus {
    Waiting,
    Active,
}

/// A queue token and its standing.
#[derive(Debug, Object)]
// A field without a value is left out, as the document says (not `null`).
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct QueueTicket {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub status: QueueStatus,
    /// 1-based place in line while waiting.
    pub position: Option<u64>,
    /// From the admission rate observed over the last minute; 0 when active.
    pub estimated_wait_seconds: u64,
    /// End of the session when active (sessions are not extended by activity).
    pub active_until: Option<DateTime<Utc>>,
}

impl From<TokenState> for QueueTicket {
    fn from(s: TokenState) -> Self {
        match s.standing {
            Standing::Waiting {
                position,
                estimated_wait_seconds,
            } => Self {
                token: s.token,
                status: QueueStatus::Waiting,
                position: Some(position),
                estimated_wait_seconds,
                active_until: None,
            },
            Standing::Active { until } => Self {
                token: s.token,
                status: QueueStatus::Active,
                position: None,
                estimated_wait_seconds: 0,
                active_until: Some(until),
            },
        }
    }
}

#[derive(ApiResponse)]
enum IssueResponse {
    /// A new token: the user joined the end of the line (or was admitted at once).
    #[oai(status = 201)]
    Created(Json<QueueTicket>),
    /// The user's live token, unchanged: asking again never buys a second place.
    #[oai(status = 200)]
    Existing(Json<QueueTicket>),
}

#[derive(ApiResponse)]
enum LeaveResponse {
    /// The token is gone and its place or slot freed.
    #[oai(status = 204)]
    Left,
}

/// Waiting-room endpoints.
#[derive(Debug, Default)]
pub struct WaitingRoomApi;

#[OpenApi(tag = "Tag::WaitingRoom")]
impl WaitingRoomApi {
    /// Get a place in line for yourself (or your live token). Needs your access token.
    #[oai(path = "/v1/queue/tokens", method = "post")]
    async fn issue(
        &self,
        state: Data<&AppState>,
        caller: Caller,
        body: OptionalJsonBody<IssueToken>,
    ) -> Result<IssueResponse, Problem> {
        let user_id = caller.user_id();
        if let Some(other) = body.0.and_then(|b| b.user_id).filter(|id| *id != user_id) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                format!("a queue token for {other} needs that user's access token"),
            )
            .with_field("userId"));
        }
        let room = &state.waiting_room;
        let mut issued = room.issue(user_id).await?;
        if issued == Issued::UnknownUser {
            // Cache miss: PostgreSQL decides (404 if the user no longer exists).
            domain::accounts::get_user(&state.db, user_id).await?;
            room.remember_user(user_id).await?;
            issued = room.issue(user_id).await?;
        }
        match issued {
            Issued::Token(t) if t.created => Ok(IssueResponse::Created(Json(t.into()))),
            Issued::Token(t) => Ok(IssueResponse::Existing(Json(t.into()))),
            Issued::UnknownUser => Err(Problem::internal()),
        }
    }

    /// Poll the token's standing. Cheap (one Redis call); polling keeps a waiting token in line.
    #[oai(path = "/v1/queue/tokens/current", method = "get")]
    async fn current(
        &self,
        state: Data<&AppState>,
        auth: AnyQueueToken,
    ) -> Result<Json<QueueTicket>, Problem> {
        let ticket = state
            .waiting_room
            .status(auth.token())
            .await?
            .ok_or_else(invalid_token)?;
        Ok(Json(ticket.into()))
    }

    /// Leave the line, or free the active slot for the next fan.
    #[oai(path = "/v1/queue/tokens/current", method = "delete")]
    async fn leave(
        &self,
        state: Data<&AppState>,
        auth: AnyQueueToken,
    ) -> Result<LeaveResponse, Problem> {
        if state.waiting_room.leave(auth.token()).await? {
            Ok(LeaveResponse::Left)
        } else {
            Err(invalid_token())
        }
    }
}

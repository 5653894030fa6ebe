//! Credentials at the door, one poem-openapi `SecurityScheme` per kind, so
//! Swagger UI's Authorize dialog offers each:
//!
//! - [`Caller`]: an access token (a verified JWT) on user-scoped endpoints.
//!   Another user's resource answers 404 exactly as an absent one does.
//! - [`ActiveFan`] / [`AnyQueueToken`]: a waiting-room queue token; the user is
//!   always the token's, never the request's.
//! - [`JobReader`]: a job's owner, by access token or by queue token.
//! - [`AdminAuth`]: the operator's `ADMIN_TOKEN`.

use domain::{
    identity,
    waiting_room::{Admitted, Denied},
};
use poem::{Request, http::StatusCode};
use poem_openapi::{SecurityScheme, auth::Bearer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::http::{problem::Problem, state::AppState};

/// `Authorization: Bearer <access token>`: a JWT whose `sub` is the caller.
#[derive(Debug, SecurityScheme)]
#[oai(
    rename = "AccessToken",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_access"
)]
pub struct Caller(pub identity::Caller);

impl Caller {
    /// The caller's user id.
    pub fn user_id(&self) -> Uuid {
        self.0.user_id
    }

    /// `Ok` when `user_id` is the caller; another user's resource is 404, as if absent.
    pub fn owns(&self, user_id: Uuid) -> Result<(), Problem> {
        if user_id == self.user_id() {
            Ok(())
        } else {
            Err(Problem::not_found("user", user_id))
        }
    }
}

async fn check_access(req: &Request, bearer: Bearer) -> poem::Result<identity::Caller> {
    let state = req.data::<AppState>().ok_or_else(Problem::internal)?;
    let caller = verify(state, &bearer.token)?;
    if state.identity.is_external() {
        // A provider's first token of a new `sub` creates the user (once: PostgreSQL decides).
        // Boxed: sea-orm's insert futures are large, and every request future that
        // checks an access token would otherwise carry their size while it waits.
        state
            .known_user(
                caller.user_id,
                Box::pin(identity::provision(&state.db, &caller)),
            )
            .await?;
    }
    Ok(caller)
}

fn verify(state: &AppState, token: &str) -> Result<identity::Caller, Problem> {
    state
        .identity
        .verify(token)
        .map_err(|why| Problem::unauthorized(why.to_string()))
}

/// `Authorization: Bearer <queue token>` of the fan, waiting or active, for reading their jobs.
#[derive(Debug, SecurityScheme)]
#[oai(rename = "QueueToken", ty = "bearer", checker = "check_queue_holder")]
pub struct QueueHolder(pub Uuid);

async fn check_queue_holder(req: &Request, bearer: Bearer) -> poem::Result<Uuid> {
    let state = req.data::<AppState>().ok_or_else(Problem::internal)?;
    if !bearer.token.starts_with("wr1.") {
        // Not a queue token: report why it fails as an access token, the form it has.
        return Err(verify(state, &bearer.token)
            .err()
            .unwrap_or_else(invalid_token)
            .into());
    }
    match state
        .waiting_room
        .holder(&bearer.token)
        .await
        .map_err(Problem::from)?
    {
        Some(user) => Ok(user),
        None => Err(invalid_token().into()),
    }
}

/// Who may read a job: its owner, by access token or by queue token.
#[derive(Debug, SecurityScheme)]
pub enum JobReader {
    Access(Caller),
    Queue(QueueHolder),
}

impl JobReader {
    /// The reading user.
    pub fn user_id(&self) -> Uuid {
        match self {
            Self::Access(caller) => caller.user_id(),
            Self::Queue(holder) => holder.0,
        }
    }
}

/// `Authorization: Bearer <queue token>` of an ACTIVE (admitted) fan. The user
/// is always taken from the token, never from the request.
#[derive(Debug, SecurityScheme)]
#[oai(rename = "QueueToken", ty = "bearer", checker = "check_active")]
pub struct ActiveFan(pub Admitted);

async fn check_active(req: &Request, bearer: Bearer) -> poem::Result<Admitted> {
    let state = req.data::<AppState>().ok_or_else(Problem::internal)?;
    match state
        .waiting_room
        .authorize(&bearer.token)
        .await
        .map_err(Problem::from)?
    {
        Ok(admitted) => Ok(admitted),
        Err(Denied::Invalid) => Err(invalid_token().into()),
        Err(Denied::Waiting { position }) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "QUEUE_WAITING",
            format!(
                "still waiting in line at position {position}; poll GET /v1/queue/tokens/current"
            ),
        )
        .with_field("Authorization")
        .into()),
    }
}

/// Any queue token, waiting or active (for polling and leaving).
#[derive(Debug, SecurityScheme)]
#[oai(rename = "QueueToken", ty = "bearer")]
pub struct AnyQueueToken(Bearer);

impl AnyQueueToken {
    /// The bearer string, for the waiting room to decode.
    pub fn token(&self) -> &str {
        &self.0.token
    }
}

/// 401 for a queue token that does not admit anyone.
pub fn invalid_token() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "TOKEN_INVALID",
        "the queue token is malformed, unknown or expired; request a new one",
    )
    .with_field("Authorization")
}

/// `Authorization: Bearer <ADMIN_TOKEN>`.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", checker = "check_admin")]
pub struct AdminAuth(());

async fn check_admin(req: &Request, bearer: Bearer) -> poem::Result<()> {
    let state = req.data::<AppState>().ok_or_else(Problem::internal)?;
    if constant_time_eq(bearer.token.as_bytes(), state.config.admin_token.as_bytes()) {
        Ok(())
    } else {
        Err(Problem::unauthorized("the admin token is not valid").into())
    }
}

/// Compares SHA-256 digests without an early exit, so the response time leaks
/// neither a matching prefix nor the token's length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}

//! Access tokens at the door: who is calling, and may they see this resource.
//!
//! A user-scoped endpoint takes [`Caller`] (a verified JWT). Resources of
//! another user answer 404 exactly as absent ones do, so ids cannot be probed.
//! Job status also accepts the owner's queue token ([`JobReader`]): a fan in the
//! reservation flow already holds one.

use domain::identity;
use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use uuid::Uuid;

use crate::{problem::Problem, queue::invalid_token, state::AppState};

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
        provision(state, &caller).await?;
    }
    Ok(caller)
}

fn verify(state: &AppState, token: &str) -> Result<identity::Caller, Problem> {
    state
        .identity
        .verify(token)
        .map_err(|why| Problem::unauthorized(why.to_string()))
}

/// An external provider's first token of a new `sub` creates the user (once:
/// PostgreSQL decides, the Redis set of known users spares later calls the trip).
async fn provision(state: &AppState, caller: &identity::Caller) -> Result<(), Problem> {
    if !state.waiting_room.knows_user(caller.user_id).await? {
        identity::provision(&state.db, caller).await?;
        state.waiting_room.remember_user(caller.user_id).await?;
    }
    Ok(())
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

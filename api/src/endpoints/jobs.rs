//! Job status, with optional long-polling.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::jobs::{JobKind, status::Phase};
use poem::web::Data;
use poem_openapi::{Enum, Object, OpenApi, param::Path, param::Query, payload::Json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{
    endpoints::tags::Tag, http::auth::JobReader, http::problem::Problem, http::state::AppState,
};

/// Longest allowed `waitSeconds`.
pub const MAX_WAIT_SECONDS: u64 = 30;
/// Safety net while long-polling: re-read the status at least this often.
const RECHECK: Duration = Duration::from_secs(1);

/// Job kinds.
#[derive(Debug, Enum, PartialEq, Eq)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Reserve,
    Recharge,
    Pay,
}

/// Job phases.
#[derive(Debug, Enum, PartialEq, Eq)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// Why a job failed.
#[derive(Debug, Object)]
pub struct JobError {
    /// Stable code, e.g. `SEAT_UNAVAILABLE`.
    pub code: String,
    pub message: String,
}

/// A job and, once final, its result or error.
#[derive(Debug, Object)]
// A field without a value is left out, as the document says (not `null`).
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct Job {
    pub job_id: Uuid,
    pub kind: Kind,
    pub status: Status,
    /// The kind's result when `SUCCEEDED` (reserve: reservationId, scheduleId, seatNumbers, totalPrice, expiresAt).
    pub result: Option<serde_json::Value>,
    pub error: Option<JobError>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<domain::jobs::status::JobStatus> for Job {
    fn from(s: domain::jobs::status::JobStatus) -> Self {
        Self {
            job_id: s.job_id,
            kind: match s.kind {
                JobKind::Reserve => Kind::Reserve,
                JobKind::Recharge => Kind::Recharge,
                JobKind::Pay => Kind::Pay,
            },
            status: match s.phase {
                Phase::Queued => Status::Queued,
                Phase::Running => Status::Running,
                Phase::Succeeded => Status::Succeeded,
                Phase::Failed => Status::Failed,
            },
            result: s.result,
            error: s.error.map(|(code, message)| JobError { code, message }),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Job endpoints.
#[derive(Debug, Default)]
pub struct JobsApi;

#[OpenApi(tag = "Tag::Jobs")]
impl JobsApi {
    /// Your job's status (another user's job reads as not found). With
    /// `waitSeconds` (0–30) the answer waits until the job is final or the time
    /// is up, so clients need not poll in a loop; one user holds at most
    /// `USER_LONG_POLLS_MAX` (16) waiting polls at once, beyond that 429
    /// `TOO_MANY_LONG_POLLS`. Send your access token, or the queue token you
    /// reserved with (it ends when you pay; the access token does not).
    #[oai(path = "/v1/jobs/:jobId", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        reader: JobReader,
        #[oai(name = "jobId")] job_id: Path<Uuid>,
        #[oai(
            name = "waitSeconds",
            validator(minimum(value = "0"), maximum(value = "30"))
        )]
        wait_seconds: Query<Option<u64>>,
    ) -> Result<Json<Job>, Problem> {
        let (id, store, reader) = (job_id.0, state.jobs.status(), reader.user_id());
        let wait = Duration::from_secs(wait_seconds.0.unwrap_or(0).min(MAX_WAIT_SECONDS));
        let deadline = Instant::now() + wait;
        // Subscribe before the first read, so an announcement between the two is not
        // missed; the subscription ends when `watch` is dropped, on every way out.
        let mut watch = (!wait.is_zero()).then(|| state.watcher.watch(id));
        // Boxed reads: the waiting future then holds a pointer, not their state
        // (memory per open long-poll; loadtest/longpoll-memory).
        let mut status = Box::pin(store.get(&state.db, id)).await?;
        if status.user_id != Some(reader) {
            return Err(Problem::not_found("job", id));
        }
        // Only a poll that is going to wait takes one of its user's places.
        let _place = match watch {
            Some(_) if !status.phase.is_final() => {
                Some(Box::pin(state.long_polls.acquire(reader, wait)).await?)
            }
            _ => None,
        };
        while let Some(watch) = watch.as_mut() {
            let now = Instant::now();
            if status.phase.is_final() || now >= deadline {
                break;
            }
            let wake = tokio::time::timeout(RECHECK.min(deadline - now), watch.announced());
            if let Ok(carried) = wake.await {
                // The announcement carries the final status; an older writer's may not.
                status = match carried {
                    Some(announced) => (*announced).clone(),
                    None => Box::pin(store.get(&state.db, id)).await?,
                };
                break;
            }
            // The safety net re-reads Redis only: at most one PostgreSQL read per
            // request (the first), however long a backlog keeps jobs waiting.
            if let Some(fresh) = Box::pin(store.cached(id)).await? {
                status = fresh;
            }
        }
        Ok(Json(status.into()))
    }
}

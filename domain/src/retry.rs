//! The shared shape of job handlers: replay a stored outcome, else run one
//! transaction, retrying optimistic conflicts with jittered backoff.

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    jobs::{JobKind, Outcome, outcomes},
};

/// Attempts of one job's transaction when optimistic checks conflict, before
/// the job goes back to the queue (which retries it later, up to its cap).
pub const MAX_OPTIMISTIC_ATTEMPTS: u32 = 16;

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt {
    /// Committed with this outcome.
    Done(Outcome),
    /// Lost an optimistic race; nothing was written.
    Conflict,
}

/// Runs `attempt` until it commits, replaying a stored outcome first and after
/// losing a race against another delivery of the same job. Still contended
/// after every attempt is not a business failure: it returns
/// [`Error::Contention`] and the queue retries the job later.
pub async fn optimistic<F, Fut>(
    db: &DatabaseConnection,
    job_id: Uuid,
    mut attempt: F,
) -> Result<Outcome>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt>>,
{
    if let Some(done) = outcomes::find(db, job_id).await? {
        return Ok(done);
    }
    for n in 0..MAX_OPTIMISTIC_ATTEMPTS {
        match attempt().await {
            Ok(Attempt::Done(outcome)) => return Ok(outcome),
            Ok(Attempt::Conflict) => backoff(n).await,
            Err(e) if is_duplicate_outcome(&e) => {
                // Another delivery of this job committed first: its outcome stands.
                return outcomes::find(db, job_id).await?.ok_or(e);
            }
            Err(e) if is_conflict(&e) => backoff(n).await,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Contention)
}

/// Records the outcome in the transaction and commits.
pub async fn finish(
    txn: DatabaseTransaction,
    job_id: Uuid,
    kind: JobKind,
    user: Uuid,
    accepted_at: DateTime<Utc>,
    outcome: Outcome,
) -> Result<Attempt> {
    outcomes::insert(&txn, job_id, kind, user, accepted_at, &outcome).await?;
    txn.commit().await?;
    Ok(Attempt::Done(outcome))
}

/// Jittered exponential backoff between attempts: 2, 4, 8… up to 256 ms, ± 50 %.
pub async fn backoff(attempt: u32) {
    use rand::Rng;
    let base = 2u64 << Ord::min(attempt, 7);
    let jitter = rand::rng().random_range(base / 2..=base + base / 2);
    tokio::time::sleep(Duration::from_millis(jitter)).await;
}

fn database_error(e: &Error) -> Option<&(dyn sea_orm::sqlx::error::DatabaseError + 'static)> {
    let Error::Database(
        DbErr::Query(sea_orm::RuntimeErr::SqlxError(inner))
        | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(inner)),
    ) = e
    else {
        return None;
    };
    inner.as_database_error()
}

/// A second delivery of the same job lost the race to record its effect.
pub fn is_duplicate_outcome(e: &Error) -> bool {
    matches!(
        database_error(e).and_then(|d| d.constraint()),
        Some(
            "job_outcomes_pkey"
                | "reservations_job_unique"
                | "ledger_entries_job_unique"
                | "payments_job_unique"
        )
    )
}

/// True when `e` is a violation of the named constraint.
pub fn violates(e: &Error, constraint: &str) -> bool {
    database_error(e).and_then(|d| d.constraint()) == Some(constraint)
}

/// Lost an optimistic race: a live-seat uniqueness violation, deadlock or serialization failure.
pub fn is_conflict(e: &Error) -> bool {
    let Some(d) = database_error(e) else {
        return false;
    };
    d.constraint() == Some("reservation_seats_one_live_per_seat")
        || matches!(d.code().as_deref(), Some("40001" | "40P01"))
}

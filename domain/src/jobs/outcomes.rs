//! Durable job outcomes: written in the same transaction as the job's effect.

use chrono::{DateTime, Utc};
use entity::job_outcomes;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use uuid::Uuid;

use super::{JobKind, Outcome};
use crate::error::Result;

/// The stored outcome of `job_id`, if it already ran to the end.
pub async fn find(db: &impl ConnectionTrait, job_id: Uuid) -> Result<Option<Outcome>> {
    Ok(job_outcomes::Entity::find_by_id(job_id)
        .one(db)
        .await?
        .map(|o| match (o.status.as_str(), o.result) {
            ("SUCCEEDED", Some(result)) => Outcome::Succeeded(result),
            _ => Outcome::Failed {
                code: o.error_code.unwrap_or_default(),
                message: o.error_message.unwrap_or_default(),
            },
        }))
}

/// Records the outcome; a second record for one job violates `job_outcomes_pkey`.
pub async fn insert(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    kind: JobKind,
    user_id: Uuid,
    accepted_at: DateTime<Utc>,
    outcome: &Outcome,
) -> Result<()> {
    let (status, result, code, message) = match outcome {
        Outcome::Succeeded(v) => ("SUCCEEDED", Some(v.clone()), None, None),
        Outcome::Failed { code, message } => {
            ("FAILED", None, Some(code.clone()), Some(message.clone()))
        }
    };
    job_outcomes::Entity::insert(job_outcomes::ActiveModel {
        job_id: Set(job_id),
        kind: Set(kind.as_str().to_owned()),
        user_id: Set(Some(user_id)),
        status: Set(status.to_owned()),
        result: Set(result),
        error_code: Set(code),
        error_message: Set(message),
        accepted_at: Set(accepted_at),
        finished_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

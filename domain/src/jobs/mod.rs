//! Jobs: what the api enqueues and the worker runs.
//!
//! A job carries ids only (never entities) and its own `job_id`, which keys
//! every effect and the durable outcome in PostgreSQL. Delivery is at least
//! once, so every handler first looks for a stored outcome.

pub mod backend;
pub mod backlog;
pub mod housekeeping;
pub mod long_polls;
pub mod outcomes;
pub mod producer;
pub mod status;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kinds of client-visible jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobKind {
    Reserve,
    Recharge,
    Pay,
}

impl JobKind {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserve => "RESERVE",
            Self::Recharge => "RECHARGE",
            Self::Pay => "PAY",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RESERVE" => Some(Self::Reserve),
            "RECHARGE" => Some(Self::Recharge),
            "PAY" => Some(Self::Pay),
            _ => None,
        }
    }
}

/// The fields every client-visible job payload carries, whatever its kind:
/// enough to answer for a task found in a queue without its status hash, or
/// to finalize one apalis buried (read from the payload apalis stores as JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct JobHeader {
    pub job_id: Uuid,
    pub user_id: Uuid,
    pub accepted_at: DateTime<Utc>,
}

impl From<&ReserveJob> for JobHeader {
    fn from(job: &ReserveJob) -> Self {
        Self {
            job_id: job.job_id,
            user_id: job.user_id,
            accepted_at: job.accepted_at,
        }
    }
}

/// Hold `seat_numbers` of `schedule_id` for `user_id`, all or none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveJob {
    pub job_id: Uuid,
    pub user_id: Uuid,
    pub schedule_id: i64,
    pub seat_numbers: Vec<i16>,
    pub accepted_at: DateTime<Utc>,
    /// The request that enqueued it, for logs.
    pub request_id: Option<String>,
}

/// Add `amount` won to `user_id`'s balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RechargeJob {
    pub job_id: Uuid,
    pub user_id: Uuid,
    pub amount: i64,
    pub accepted_at: DateTime<Utc>,
    pub request_id: Option<String>,
}

/// Pay `reservation_id` from `user_id`'s balance, then end the queue session `token_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayJob {
    pub job_id: Uuid,
    pub user_id: Uuid,
    pub reservation_id: Uuid,
    /// The paying fan's queue token id: its session ends after a successful payment.
    pub token_id: String,
    pub accepted_at: DateTime<Utc>,
    pub request_id: Option<String>,
}

/// Expire the holds still held at their expiry time. One job per reserve
/// batch: its holds share the transaction's clock, so one expiry time, one
/// queued task and one statement when it runs instead of one of each per hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireHoldJob {
    /// The holds, all expiring at `expires_at`.
    #[serde(default)]
    pub reservation_ids: Vec<Uuid>,
    /// The one hold of a task queued before expiries were batched; read, never written.
    #[serde(default, skip_serializing)]
    pub reservation_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}

impl ExpireHoldJob {
    /// Every hold this job expires, whichever version queued it.
    pub fn holds(&self) -> Vec<Uuid> {
        let mut ids = self.reservation_ids.clone();
        ids.extend(self.reservation_id);
        ids
    }
}

/// A job's final result, stored in `job_outcomes` with the job's effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded(serde_json::Value),
    Failed { code: String, message: String },
}

impl Outcome {
    /// A business failure: final, never retried.
    pub fn failed(code: &str, message: impl Into<String>) -> Self {
        Self::Failed {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

//! The domain's one error type; the api maps it to problem+json in one place.

use sea_orm::DbErr;

/// What can go wrong in a domain call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request named something that does not exist (404).
    #[error("{entity} {id} was not found")]
    NotFound { entity: &'static str, id: String },
    /// Input that passed the schema but breaks a business rule (400), naming the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The idempotency key was used before with a different request (422).
    #[error("the Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// Optimistic retries ran out; the job goes back to the queue.
    #[error("the row stayed contended through every optimistic attempt")]
    Contention,
    /// Too many jobs of this kind are already waiting for a worker (429): come
    /// back in `retry_after` seconds. Nothing was queued.
    #[error("{backlog} {kind} jobs are waiting; retry in {retry_after} s")]
    Busy {
        kind: &'static str,
        backlog: u64,
        retry_after: u64,
    },
    /// The caller already has `limit` non-final jobs of this kind (429): one
    /// must finish before another is queued. Nothing was queued.
    #[error(
        "{in_flight} {kind} jobs of this user are not final yet (at most {limit}); retry in {retry_after} s"
    )]
    TooManyJobs {
        kind: &'static str,
        in_flight: u64,
        limit: u64,
        retry_after: u64,
    },
    /// The caller already holds `limit` open long-polls (429).
    #[error("{limit} long-polls of this user are already open; retry in {retry_after} s")]
    TooManyLongPolls { limit: u64, retry_after: u64 },
    /// Too many requests of this kind from one client address (429).
    #[error("too many {what} from this address; retry in {retry_after} s")]
    RateLimited {
        what: &'static str,
        retry_after: u64,
    },
    /// The job queue refused a push (503).
    #[error("queue error: {0}")]
    Queue(String),
    /// PostgreSQL failed (500, logged once).
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// Redis failed (500/503, logged once).
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }
}

/// Result alias of the domain layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! `GET /v1/admin/ops/snapshot`: the data of the `/ops` page (admin token).
//!
//! Computed from the stack-wide per-second window in Redis
//! (`domain::ops::window`), so every api instance answers the same.

use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::{
    endpoints::tags::Tag,
    http::{auth::AdminAuth, problem::Problem, state::AppState},
};

/// The waiting line now.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Line {
    /// Fans in line.
    pub waiting: u64,
    /// Admitted sessions.
    pub active: u64,
    /// Admissions per second over the last 10 s.
    pub admissions_per_second: f64,
    /// Seconds until the last fan in line is admitted, at the rate fans are told.
    pub last_in_line_eta_seconds: Option<u64>,
}

/// One job queue now.
#[derive(Debug, Object)]
pub struct QueueDepth {
    /// `reserve`, `expire_hold`, `recharge` or `pay`.
    pub queue: String,
    /// Ready to run.
    pub waiting: u64,
    /// Delayed (hold expiries, backend retries).
    pub scheduled: u64,
    /// In flight on a worker.
    pub running: u64,
}

/// Jobs over the last 10 s, settle time over the last 30 s.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobRates {
    pub succeeded_per_second: f64,
    pub failed_per_second: f64,
    /// Deliveries handed back to the queue on an error.
    pub retried_per_second: f64,
    /// Accepted → final, p50 (the upper bound of its histogram bucket).
    pub settle_p50_seconds: Option<f64>,
    pub settle_p99_seconds: Option<f64>,
}

/// Errors of one dependency over the window.
#[derive(Debug, Object)]
pub struct DependencyErrors {
    /// `postgres` or `redis`.
    pub dependency: String,
    pub count: u64,
}

/// Errors: HTTP 5xx answers plus worker dependency errors.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Errors {
    /// Per second over the last 10 s.
    pub per_second: f64,
    /// Worker dependency errors over the whole window.
    pub dependencies: Vec<DependencyErrors>,
}

/// One value per second, oldest first, `windowSeconds` long (column-wise, compact).
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Series {
    /// Unix seconds (Redis' clock).
    pub at: Vec<i64>,
    pub waiting: Vec<u64>,
    pub active: Vec<u64>,
    pub admitted: Vec<u64>,
    /// Tasks in all queues (waiting + scheduled + running).
    pub queued: Vec<u64>,
    pub succeeded: Vec<u64>,
    pub failed: Vec<u64>,
    pub retried: Vec<u64>,
    pub errors: Vec<u64>,
    /// Over the trailing 30 s at each second; null when no job settled.
    pub settle_p50: Vec<Option<f64>>,
    pub settle_p99: Vec<Option<f64>>,
}

/// The operations view of the last ten minutes.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct OpsSnapshot {
    /// Unix seconds of the last sample (Redis' clock).
    pub at: i64,
    pub window_seconds: i64,
    pub line: Line,
    pub queues: Vec<QueueDepth>,
    pub jobs: JobRates,
    pub errors: Errors,
    pub series: Series,
}

/// The ops page's data.
#[derive(Debug, Default)]
pub struct OpsSnapshotApi;

#[OpenApi(tag = "Tag::Admin")]
impl OpsSnapshotApi {
    /// The line, queues, job rates, settle times and errors of the whole stack over
    /// the last ten minutes (what `/ops` draws). The same from every api instance.
    #[oai(path = "/v1/admin/ops/snapshot", method = "get")]
    async fn snapshot(
        &self,
        _admin: AdminAuth,
        state: Data<&AppState>,
    ) -> Result<Json<OpsSnapshot>, Problem> {
        let s = domain::ops::snapshot::read(
            &state.redis,
            &state.config.redis_prefix,
            state.config.queue_admit_per_second,
        )
        .await
        .map_err(domain::Error::from)?;
        Ok(Json(from_domain(s)))
    }
}

fn from_domain(s: domain::ops::snapshot::Snapshot) -> OpsSnapshot {
    let col = |f: fn(&domain::ops::snapshot::Second) -> u64| s.seconds.iter().map(f).collect();
    let series = Series {
        at: s.seconds.iter().map(|x| x.at).collect(),
        waiting: col(|x| x.waiting),
        active: col(|x| x.active),
        admitted: col(|x| x.admitted),
        queued: col(|x| x.queued),
        succeeded: col(|x| x.succeeded),
        failed: col(|x| x.failed),
        retried: col(|x| x.retried),
        errors: col(|x| x.errors),
        settle_p50: s.seconds.iter().map(|x| x.settle_p50).collect(),
        settle_p99: s.seconds.iter().map(|x| x.settle_p99).collect(),
    };
    OpsSnapshot {
        at: s.at,
        window_seconds: domain::ops::window::WINDOW_SECONDS,
        line: Line {
            waiting: s.waiting,
            active: s.active,
            admissions_per_second: s.admissions_per_second,
            last_in_line_eta_seconds: s.last_in_line_eta_seconds,
        },
        queues: s
            .queues
            .iter()
            .map(|q| QueueDepth {
                queue: q.queue.to_owned(),
                waiting: q.waiting,
                scheduled: q.scheduled,
                running: q.running,
            })
            .collect(),
        jobs: JobRates {
            succeeded_per_second: s.succeeded_per_second,
            failed_per_second: s.failed_per_second,
            retried_per_second: s.retried_per_second,
            settle_p50_seconds: s.settle_p50,
            settle_p99_seconds: s.settle_p99,
        },
        errors: Errors {
            per_second: s.errors_per_second,
            dependencies: s
                .dependency_errors
                .into_iter()
                .map(|(dependency, count)| DependencyErrors { dependency, count })
                .collect(),
        },
        series,
    }
}

//! The Prometheus side: one process-wide recorder, the series' names, and the
//! functions every process records through.
//!
//! One recorder per process because `metrics` has one global recorder: tests run
//! several api and worker instances in one process, so [`install`] is
//! idempotent (a `OnceLock`) and every instance renders the same registry.
//! Label values are bounded by construction: route templates (never raw
//! paths), job kinds, fixed outcome words, queue kinds and dependency names.

use std::{sync::OnceLock, time::Duration};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::window;

/// Histogram buckets (seconds) for request latency and accept→final settle time:
/// from a fast cache hit to a job that waited out a minute of backlog.
pub const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// `concert_http_requests_total{method,route,status}`.
pub const HTTP_REQUESTS: &str = "concert_http_requests_total";
/// `concert_http_request_duration_seconds{method,route}`.
pub const HTTP_DURATION: &str = "concert_http_request_duration_seconds";
/// `concert_jobs_accepted_total{kind}` (api: 202 given).
pub const JOBS_ACCEPTED: &str = "concert_jobs_accepted_total";
/// `concert_jobs_started_total{kind}` (worker: a delivery began).
pub const JOBS_STARTED: &str = "concert_jobs_started_total";
/// `concert_jobs_finished_total{kind,outcome}`, outcome `succeeded` or `failed`.
pub const JOBS_FINISHED: &str = "concert_jobs_finished_total";
/// `concert_job_retries_total{kind}`: deliveries handed back to the queue on an error.
pub const JOB_RETRIES: &str = "concert_job_retries_total";
/// `concert_job_settle_seconds{kind}`: accepted → final status.
pub const JOB_SETTLE: &str = "concert_job_settle_seconds";
/// `concert_queue_jobs{queue,state}`, state `waiting`, `scheduled`, `running`, `dead`.
pub const QUEUE_JOBS: &str = "concert_queue_jobs";
/// `concert_waiting_room_waiting`: fans in line.
pub const WR_WAITING: &str = "concert_waiting_room_waiting";
/// `concert_waiting_room_active`: admitted sessions.
pub const WR_ACTIVE: &str = "concert_waiting_room_active";
/// `concert_waiting_room_events_total{event}`, event `admitted`, `left`, `reaped`.
pub const WR_EVENTS: &str = "concert_waiting_room_events_total";
/// `concert_db_pool_connections{state}`, state `in_use` or `idle`.
pub const DB_POOL: &str = "concert_db_pool_connections";
/// `concert_dependency_errors_total{dependency}`, dependency `postgres` or `redis`.
pub const DEPENDENCY_ERRORS: &str = "concert_dependency_errors_total";

/// `concert_reserve_batches_total{result}`, result `committed`, `conflict` or `error`
/// (the latter two re-run each job alone).
pub const RESERVE_BATCHES: &str = "concert_reserve_batches_total";
/// `concert_reserve_batched_jobs_total`: reserve jobs settled by committed batches.
pub const RESERVE_BATCHED_JOBS: &str = "concert_reserve_batched_jobs_total";
/// `concert_reserve_batch_open_jobs`: jobs in this worker's batch transaction right now.
pub const RESERVE_BATCH_OPEN: &str = "concert_reserve_batch_open_jobs";
/// `concert_jobs_refused_total{kind, reason}`: enqueueing requests answered 429
/// with nothing queued; reason `busy` (the queue's backlog at its
/// `…_BACKLOG_MAX`) or `too_many_jobs` (the caller at `USER_JOBS_IN_FLIGHT`).
pub const JOBS_REFUSED: &str = "concert_jobs_refused_total";
/// `concert_long_polls_refused_total`: long-polls answered 429 because the
/// caller already held `USER_LONG_POLLS_MAX` of them.
pub const LONG_POLLS_REFUSED: &str = "concert_long_polls_refused_total";
/// `concert_rate_limited_total{what}`, what `signup` or `mint`: requests
/// refused with 429 `RATE_LIMITED` because their client address was at
/// `SIGNUP_PER_MINUTE_PER_ADDRESS` (`crate::rate_limit`).
pub const RATE_LIMITED: &str = "concert_rate_limited_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on first use and returns its handle.
/// Later calls (a second api instance in one test process) get the same handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(&BUCKETS) {
            Ok(b) => b,
            Err(error) => {
                tracing::warn!(%error, "histogram buckets refused; histograms become summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder was installed first; /metrics will be empty");
        }
        describe();
        handle
    })
}

/// The registry in the Prometheus text format (upkeep first, so histograms stay bounded).
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency"
    );
    describe_counter!(JOBS_ACCEPTED, "Jobs accepted (202) by kind");
    describe_counter!(JOBS_STARTED, "Job deliveries started by kind");
    describe_counter!(
        JOBS_FINISHED,
        "Jobs that reached a final status, by kind and outcome"
    );
    describe_counter!(
        JOB_RETRIES,
        "Job deliveries handed back to the queue on an error"
    );
    describe_histogram!(
        JOB_SETTLE,
        metrics::Unit::Seconds,
        "Job accepted to final status"
    );
    describe_gauge!(
        QUEUE_JOBS,
        "Tasks per apalis-redis queue and state (stack-wide, from Redis)"
    );
    describe_gauge!(WR_WAITING, "Fans waiting in line (stack-wide, from Redis)");
    describe_gauge!(
        WR_ACTIVE,
        "Admitted waiting-room sessions (stack-wide, from Redis)"
    );
    describe_counter!(
        WR_EVENTS,
        "Waiting-room admissions, leaves and reaps (stack-wide, from Redis)"
    );
    describe_gauge!(
        DB_POOL,
        "PostgreSQL pool connections of this process by state"
    );
    describe_counter!(DEPENDENCY_ERRORS, "Errors talking to a dependency");
    describe_counter!(
        RESERVE_BATCHES,
        "Reserve batch transactions by result (conflict and error re-run each job alone)"
    );
    describe_counter!(
        RESERVE_BATCHED_JOBS,
        "Reserve jobs settled by committed batch transactions"
    );
    describe_gauge!(
        RESERVE_BATCH_OPEN,
        "Reserve jobs in this process's open batch transactions"
    );
    describe_counter!(
        JOBS_REFUSED,
        "Enqueueing requests refused with 429, nothing queued, by kind and reason (busy, too_many_jobs)"
    );
    describe_counter!(
        LONG_POLLS_REFUSED,
        "Long-polls refused with 429: the caller held USER_LONG_POLLS_MAX already"
    );
    describe_counter!(
        RATE_LIMITED,
        "Sign-ups and access-token mints refused with 429 because their client address was at its per-minute limit"
    );
}

/// A reserve batch transaction of `jobs` jobs began.
pub fn reserve_batch_opened(jobs: usize) {
    gauge!(RESERVE_BATCH_OPEN).increment(as_gauge(jobs));
}

/// A reserve batch of `jobs` jobs ended: `committed`, `conflict` or `error`.
pub fn reserve_batch_closed(jobs: usize, result: &'static str) {
    gauge!(RESERVE_BATCH_OPEN).decrement(as_gauge(jobs));
    counter!(RESERVE_BATCHES, "result" => result).increment(1);
    if result == "committed" {
        counter!(RESERVE_BATCHED_JOBS).increment(u64::try_from(jobs).unwrap_or(0));
    }
}

#[allow(clippy::cast_precision_loss)] // a batch is at most a thousand jobs
fn as_gauge(jobs: usize) -> f64 {
    jobs as f64
}

/// One answered HTTP request. `route` must be a template or a fixed label.
pub fn http_request(prefix: &str, method: &str, route: &str, status: u16, elapsed: Duration) {
    let (method, route) = (method.to_owned(), route.to_owned());
    counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route).record(elapsed.as_secs_f64());
    window::add(prefix, "http", 1);
    if status >= 500 {
        window::add(prefix, "http_5xx", 1);
    }
}

/// The `kind` label of a client-visible job (the worker adds `expire_hold`).
pub fn kind_label(kind: crate::jobs::JobKind) -> &'static str {
    match kind {
        crate::jobs::JobKind::Reserve => "reserve",
        crate::jobs::JobKind::Recharge => "recharge",
        crate::jobs::JobKind::Pay => "pay",
    }
}

/// A job accepted (pushed, so the 202 is earned).
pub fn job_accepted(prefix: &str, kind: crate::jobs::JobKind) {
    let kind = kind_label(kind);
    counter!(JOBS_ACCEPTED, "kind" => kind).increment(1);
    window::add(prefix, &format!("acc:{kind}"), 1);
}

/// An enqueueing request was refused (429) before anything was queued.
pub fn job_refused(kind: crate::jobs::JobKind, reason: &'static str) {
    counter!(JOBS_REFUSED, "kind" => kind_label(kind), "reason" => reason).increment(1);
}

/// A long-poll was refused (429): its user held the most allowed.
pub fn long_poll_refused() {
    counter!(LONG_POLLS_REFUSED).increment(1);
}

/// A sign-up or mint was refused (429) by the per-address limit; `what` is
/// `rate_limit::Action::label`, so the label set stays fixed.
pub fn rate_limited(what: &'static str) {
    counter!(RATE_LIMITED, "what" => what).increment(1);
}

/// A delivery of a job began.
pub fn job_started(kind: &'static str) {
    counter!(JOBS_STARTED, "kind" => kind).increment(1);
}

/// A job reached its final status; `settle` is accepted → now, when known.
pub fn job_finished(prefix: &str, kind: &'static str, succeeded: bool, settle: Option<Duration>) {
    let outcome = if succeeded { "succeeded" } else { "failed" };
    counter!(JOBS_FINISHED, "kind" => kind, "outcome" => outcome).increment(1);
    window::add(prefix, &format!("fin:{outcome}"), 1);
    if let Some(settle) = settle {
        histogram!(JOB_SETTLE, "kind" => kind).record(settle.as_secs_f64());
        window::add(prefix, &format!("settle:{}", window::bucket_of(settle)), 1);
    }
}

/// A delivery failed on an error and goes back to the queue.
pub fn job_retry(prefix: &str, kind: &'static str) {
    counter!(JOB_RETRIES, "kind" => kind).increment(1);
    window::add(prefix, "fin:retry", 1);
}

/// An error from PostgreSQL or Redis reached a boundary (an HTTP answer, a job delivery).
pub fn dependency_error(prefix: Option<&str>, dependency: &'static str) {
    counter!(DEPENDENCY_ERRORS, "dependency" => dependency).increment(1);
    if let Some(prefix) = prefix {
        window::add(prefix, &format!("dep:{dependency}"), 1);
    }
}

/// The dependency a domain error came from, if it came from one.
pub fn dependency_of(error: &crate::Error) -> Option<&'static str> {
    match error {
        crate::Error::Database(_) => Some("postgres"),
        crate::Error::Redis(_) | crate::Error::Queue(_) => Some("redis"),
        _ => None,
    }
}

/// This process's PostgreSQL pool, refreshed on every sample.
pub fn db_pool(db: &sea_orm::DatabaseConnection) {
    // Checked first: sea-orm's pool getter panics on anything but a PostgreSQL pool.
    if !matches!(
        db.inner,
        sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_)
    ) {
        return;
    }
    let pool = db.get_postgres_connection_pool();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    let in_use = pool.size().saturating_sub(idle);
    gauge!(DB_POOL, "state" => "in_use").set(f64::from(in_use));
    gauge!(DB_POOL, "state" => "idle").set(f64::from(idle));
}

/// The stack-wide gauges read from Redis by a sample.
pub fn stack_gauges(sample: &window::Sample) {
    for (queue, depth) in &sample.queues {
        for (state, n) in [
            ("waiting", depth.waiting),
            ("scheduled", depth.scheduled),
            ("running", depth.running),
            ("dead", depth.dead),
        ] {
            gauge!(QUEUE_JOBS, "queue" => *queue, "state" => state).set(n as f64);
        }
    }
    gauge!(WR_WAITING).set(sample.waiting as f64);
    gauge!(WR_ACTIVE).set(sample.active as f64);
    // Counters kept in Redis by the admission script: absolute, so set, not added.
    for (event, total) in [
        ("admitted", sample.admitted_total),
        ("left", sample.left_total),
        ("reaped", sample.reaped_total),
    ] {
        counter!(WR_EVENTS, "event" => event).absolute(total);
    }
}

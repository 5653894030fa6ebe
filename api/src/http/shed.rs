//! Load shedding at the front door: past a queue's `…_BACKLOG_MAX` waiting
//! jobs, the request that would add one (`POST /v1/reservations`,
//! `POST /v1/payments`, `POST /v1/users/{userId}/balance/recharges`) is
//! answered 429 `BUSY` with `Retry-After` before anything is spent on it — no
//! token check, no Redis, no JSON — so an overload costs the api as little as
//! possible per refused request and the requests it does accept keep their
//! latency (see `domain::jobs::backlog`).
//!
//! A client's retry with the same `Idempotency-Key` is refused the same way
//! while the backlog lasts and gets its one job afterwards: nothing was queued.

use domain::jobs::JobKind;
use poem::{Endpoint, IntoResponse, Request, Response, http::Method};

use crate::http::{json_body::BodyLimit, problem::Problem, state::AppState};

/// Middleware (`Route::around`): sheds enqueueing requests while their queue's
/// backlog is at its bound; other requests pass untouched.
pub async fn shed_enqueues<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    if req.method() == Method::POST
        && let Some(kind) = enqueued_kind(req.uri().path())
        && let Some(Err(busy)) = req.data::<AppState>().map(|s| s.backlog_gate.admit(kind))
    {
        // Read the (small, capped) body so the connection stays reusable.
        let limit = req.data::<BodyLimit>().map_or(4096, |l| l.0);
        let _ = req.take_body().into_bytes_limit(limit).await;
        return Ok(Problem::from(busy).into_response());
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// The kind of job a POST to `path` enqueues, if it enqueues one.
fn enqueued_kind(path: &str) -> Option<JobKind> {
    match path {
        "/v1/reservations" => Some(JobKind::Reserve),
        "/v1/payments" => Some(JobKind::Pay),
        _ => {
            let user = path.strip_prefix("/v1/users/")?;
            let user = user.strip_suffix("/balance/recharges")?;
            (!user.is_empty() && !user.contains('/')).then_some(JobKind::Recharge)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_enqueueing_paths_are_told_apart() {
        assert_eq!(enqueued_kind("/v1/reservations"), Some(JobKind::Reserve));
        assert_eq!(enqueued_kind("/v1/payments"), Some(JobKind::Pay));
        assert_eq!(
            enqueued_kind("/v1/users/7f0c/balance/recharges"),
            Some(JobKind::Recharge)
        );
        for other in [
            "/v1/users",
            "/v1/users//balance/recharges",
            "/v1/users/a/b/balance/recharges",
            "/v1/users/7f0c/balance",
            "/v1/reservations/1",
            "/v1/jobs/1",
        ] {
            assert_eq!(enqueued_kind(other), None, "{other}");
        }
    }
}

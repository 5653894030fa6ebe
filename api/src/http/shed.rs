//! Load shedding at the front door: past `RESERVE_BACKLOG_MAX` waiting
//! reserves, `POST /v1/reservations` is answered 429 `BUSY` with `Retry-After`
//! before anything is spent on it — no token check, no Redis, no JSON — so an
//! overload costs the api as little as possible per refused request and the
//! requests it does accept keep their latency (see `domain::jobs::backlog`).
//!
//! A client's retry with the same `Idempotency-Key` is refused the same way
//! while the backlog lasts and gets its one job afterwards: nothing was queued.

use poem::{Endpoint, IntoResponse, Request, Response, http::Method};

use crate::http::{json_body::BodyLimit, problem::Problem, state::AppState};

/// The path shed; other requests pass untouched.
const RESERVE_PATH: &str = "/v1/reservations";

/// Middleware (`Route::around`): sheds reserves while the backlog is at its bound.
pub async fn shed_reserves<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    if req.method() == Method::POST
        && req.uri().path() == RESERVE_PATH
        && let Some(Err(busy)) = req.data::<AppState>().map(|s| s.reserve_gate.admit())
    {
        // Read the (small, capped) body so the connection stays reusable.
        let limit = req.data::<BodyLimit>().map_or(4096, |l| l.0);
        let _ = req.take_body().into_bytes_limit(limit).await;
        return Ok(Problem::from(busy).into_response());
    }
    next.call(req).await.map(IntoResponse::into_response)
}

//! Liveness and readiness for operators and load balancers.

use std::time::Duration;

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use crate::{endpoints::tags::Tag, http::state::AppState};

/// Longest a readiness probe waits for one dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness answer.
#[derive(Debug, Object)]
struct Health {
    /// Always `ok` while the process serves requests.
    status: String,
}

/// Readiness answer: the state of each dependency.
#[derive(Debug, Object)]
struct Readiness {
    /// `up` or `down`.
    postgres: String,
    /// `up` or `down`.
    redis: String,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// PostgreSQL and Redis both answer.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// At least one dependency does not answer.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

/// Operations endpoints.
#[derive(Debug, Default)]
pub struct OpsApi;

fn word(up: bool) -> String {
    if up { "up" } else { "down" }.to_owned()
}

#[OpenApi(tag = "Tag::Ops")]
impl OpsApi {
    /// Liveness: the process is up. Touches no dependency.
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
        })
    }

    /// Readiness: PostgreSQL and Redis both reachable (each probed with a 2 s timeout).
    #[oai(path = "/ready", method = "get")]
    async fn ready(&self, state: Data<&AppState>) -> ReadyResponse {
        let mut redis = state.redis.clone();
        let (pg, rd) = tokio::join!(
            tokio::time::timeout(PROBE_TIMEOUT, domain::platform::db::ping(&state.db)),
            tokio::time::timeout(
                PROBE_TIMEOUT,
                domain::platform::redis_conn::ping(&mut redis)
            ),
        );
        let (pg, rd) = (matches!(pg, Ok(Ok(()))), matches!(rd, Ok(Ok(()))));
        let body = Json(Readiness {
            postgres: word(pg),
            redis: word(rd),
        });
        if pg && rd {
            ReadyResponse::Ready(body)
        } else {
            ReadyResponse::NotReady(body)
        }
    }
}

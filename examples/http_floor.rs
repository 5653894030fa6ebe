//! The HTTP floor (#17): the least an HTTP service on this machine can do per
//! request, so the waiting room's figures have an honest yardstick measured in
//! the same run, by the same k6 executor (`loadtest/floor.js`):
//!
//! - `GET /static`: a fixed JSON body — poem, the socket, k6; nothing else.
//! - `POST /evalsha`: one `EVALSHA` of a one-line script (an `INCR`) on the
//!   same kind of Redis connection the api uses — the floor under any endpoint
//!   that must touch Redis once, as a waiting-room issue does (its script does
//!   more inside that one call).
//!
//! ```sh
//! FLOOR_ADDR=127.0.0.1:18090 cargo run --release --example http_floor
//! ```

use std::sync::LazyLock;

use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, get, handler, http::StatusCode,
    listener::TcpListener, post, web::Data,
};
use redis::aio::ConnectionManager;

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new("return redis.call('INCR', KEYS[1])"));

#[handler]
fn fixed() -> Response {
    Response::builder()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

/// The Redis key the floor counts in (under `REDIS_PREFIX`).
#[derive(Clone, Debug)]
struct CountKey(String);

#[handler]
async fn one_evalsha(redis: Data<&ConnectionManager>, key: Data<&CountKey>) -> Response {
    let counted: redis::RedisResult<i64> = SCRIPT
        .key(key.0.0.as_str())
        .invoke_async(&mut redis.clone())
        .await;
    match counted {
        Ok(n) => Response::builder()
            .content_type("application/json")
            .body(format!(r#"{{"n":{n}}}"#)),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("FLOOR_ADDR").unwrap_or_else(|_| "127.0.0.1:18090".into());
    let config = domain::Config::from_env()?;
    let redis = domain::platform::redis_conn::connect(&config).await?;
    let app = Route::new()
        .at("/static", get(fixed))
        .at("/evalsha", post(one_evalsha))
        .data(redis)
        .data(CountKey(format!("{}:http-floor", config.redis_prefix)));
    Server::new(TcpListener::bind(addr)).run(app).await?;
    Ok(())
}

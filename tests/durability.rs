//! Durability (SPEC §5): a 202 survives a `kill -9` of Redis; api and worker
//! refuse a Redis without an append-only file; while a dependency is down the
//! api answers 503 with Retry-After, and everything recovers by itself.
//! Each test runs its own Redis on a free port (tests/common/own_redis.rs).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::time::Duration;

use common::{TestApp, eventually, own_redis::OwnRedis, problem};
use domain::Config;

fn config_for(redis: &OwnRedis, extra: &[(&'static str, &str)]) -> Config {
    let mut vars = std::collections::HashMap::from([
        ("REDIS_URL", redis.url()),
        (
            "REDIS_PREFIX",
            format!("t{}", uuid::Uuid::new_v4().simple()),
        ),
    ]);
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Config::from_map(&vars).unwrap()
}

#[tokio::test]
async fn api_and_worker_refuse_a_redis_without_aof_and_name_the_fix() {
    let volatile = OwnRedis::start(false, &[]).await;
    let config = config_for(&volatile, &[]);
    let refused = domain::platform::redis_conn::require_durable(&config)
        .await
        .unwrap_err()
        .to_string();
    for fix in ["appendonly yes", "appendfsync", "REDIS_ALLOW_VOLATILE=true"] {
        assert!(refused.contains(fix), "{fix} not named: {refused}");
    }
    let worker = worker::run(config, std::future::pending()).await;
    assert!(
        worker
            .unwrap_err()
            .to_string()
            .contains("REDIS_ALLOW_VOLATILE"),
        "the worker refuses before consuming"
    );
    // The binary: `concert api` exits non-zero with the same message.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_concert"))
        .arg("api")
        .env("REDIS_URL", volatile.url())
        .env("API_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REDIS_ALLOW_VOLATILE"), "{stderr}");
    // On purpose: allowed.
    let allowed = config_for(&volatile, &[("REDIS_ALLOW_VOLATILE", "true")]);
    domain::platform::redis_conn::require_durable(&allowed)
        .await
        .unwrap();
}

#[tokio::test]
async fn persistence_is_read_from_info_where_config_is_disabled() {
    // A managed Redis often renames CONFIG away; INFO persistence still tells.
    for aof in [true, false] {
        let redis = OwnRedis::start(aof, &["--rename-command", "CONFIG", ""]).await;
        let config = config_for(&redis, &[]);
        let mut conn = domain::platform::redis_conn::connect(&config)
            .await
            .unwrap();
        let found = domain::platform::redis_conn::persistence(&mut conn)
            .await
            .unwrap();
        assert_eq!((found.aof, found.fsync), (aof, None));
        assert_eq!(
            domain::platform::redis_conn::require_durable(&config)
                .await
                .is_ok(),
            aof
        );
    }
}

/// The issue's reproduction: worker down, a recharge accepted, Redis killed
/// with `kill -9` and restarted, worker started: the money arrives. Also the
/// fan's place in line survives, and during the outage the api says 503 with
/// Retry-After and recovers without a restart.
#[tokio::test]
async fn an_accepted_job_and_a_place_in_line_survive_a_redis_kill_9() {
    let mut redis = OwnRedis::start(true, &[]).await;
    let app = TestApp::builder()
        .env("REDIS_URL", redis.url())
        .env("QUEUE_MAX_ACTIVE", "1")
        .spawn()
        .await;
    let fan = app.active_fan().await;
    // A second fan waits behind the first: their place in line must survive too.
    let waiting_user = app.sign_up("second").await;
    let ticket: serde_json::Value = app.issue_token(&waiting_user).await.json().await.unwrap();
    assert_eq!(
        (ticket["status"].as_str(), ticket["position"].as_i64()),
        (Some("WAITING"), Some(1))
    );
    let waiting_token = ticket["token"].as_str().unwrap().to_owned();
    let resp = app.recharge(&fan, 5_000).await;
    let job = TestApp::accepted_job(resp).await;

    redis.kill();
    // Down: a clear 503 with Retry-After, never a 202.
    let resp = app.issue_token(&fan.user_id).await;
    let retry_after = resp.headers().get("retry-after").cloned();
    let body = problem(resp, 503).await;
    assert_eq!(body["code"], "UNAVAILABLE");
    assert_eq!(retry_after.unwrap(), "2");
    let resp = app.recharge(&fan, 1).await;
    assert_eq!(resp.status(), 503, "no 202 while the queue is away");

    redis.restart().await;
    // The same api process recovers by itself, and the session survived.
    let current = eventually(Duration::from_secs(10), || async {
        let resp = app.get_as(&fan.token, "/v1/queue/tokens/current").await;
        (resp.status() == 200).then_some(resp)
    })
    .await;
    let current: serde_json::Value = current.json().await.unwrap();
    assert_eq!(current["status"], "ACTIVE", "{current}");
    let place: serde_json::Value = app
        .get_as(&waiting_token, "/v1/queue/tokens/current")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (place["status"].as_str(), place["position"].as_i64()),
        (Some("WAITING"), Some(1)),
        "{place}"
    );

    // A worker started only now finds the job and applies it once.
    let worker = TestApp::builder().sibling_of(&app).workers(1).spawn().await;
    let done = worker.final_job(&fan.access, &job).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let balance = app
        .scalar(&format!(
            "SELECT balance FROM wallets WHERE user_id = '{}'",
            fan.user_id
        ))
        .await;
    let ledger = app
        .scalar(&format!(
            "SELECT count(*) FROM ledger_entries WHERE user_id = '{}'",
            fan.user_id
        ))
        .await;
    assert_eq!((balance, ledger), (5_000, 1));
}

/// While PostgreSQL is unreachable, a request that needs it answers 503 with
/// Retry-After (the api's pool gives up after API_DEPENDENCY_TIMEOUT_MS).
#[tokio::test]
async fn a_request_needing_an_unreachable_postgres_is_503_with_retry_after() {
    // Nothing listens on port 1: a real, unreachable PostgreSQL.
    let app = TestApp::builder()
        .env(
            "DATABASE_URL",
            "postgres://postgres:postgres@127.0.0.1:1/none",
        )
        .spawn()
        .await;
    let resp = app
        .post_json("/v1/users", &serde_json::json!({ "name": "fan" }))
        .await;
    assert_eq!(resp.status(), 503, "{:?}", resp.headers());
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(problem(resp, 503).await["code"], "UNAVAILABLE");
}

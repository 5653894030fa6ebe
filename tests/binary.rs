//! The real `concert` binary: seed, serve, and stop cleanly on SIGTERM.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{TestDb, free_port, redis_url};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

fn concert(db: &TestDb, prefix: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_concert"));
    cmd.args(args)
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", prefix)
        .env("RUST_LOG", "warn")
        // Not the default port, which a developer's own stack may hold; tests that
        // scrape set a free one.
        .env("API_METRICS_ADDR", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Polls until `child` exits (bounded), returning its exit status.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls the api on `port` until `/ready` answers 200 (bounded).
async fn wait_ready(port: u16) {
    let started = Instant::now();
    loop {
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/ready")).await;
        if matches!(&ready, Ok(r) if r.status() == 200) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "api never became ready: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Prometheus text a metrics listener on `port` serves, polled until it
/// listens (bounded): standalone's worker half binds it after the api is up.
async fn scrape(port: u16) -> String {
    let started = Instant::now();
    loop {
        match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            Ok(resp) => {
                assert_eq!(resp.status(), 200);
                return resp.text().await.unwrap();
            }
            Err(error) => assert!(
                started.elapsed() < Duration::from_secs(30),
                "nothing serves metrics on {port}: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    let conn = domain::platform::db::connect_url(&db.url, 1, false)
        .await
        .unwrap();
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn seed_creates_users_whose_ledger_matches_their_balance() {
    let db = TestDb::create().await;
    let out = concert(
        &db,
        "seedtest",
        &[
            "seed",
            "--users",
            "2500",
            "--balance",
            "70000",
            "--concerts",
            "2",
            "--schedules",
            "3",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(scalar(&db, "SELECT count(*) FROM users").await, 2500);
    assert_eq!(scalar(&db, "SELECT count(*) FROM schedules").await, 6);
    assert_eq!(scalar(&db, "SELECT count(*) FROM seats").await, 300);
    let mismatched = "SELECT count(*) FROM wallets w WHERE w.balance <> (SELECT coalesce(sum(amount), 0) FROM ledger_entries l WHERE l.user_id = w.user_id)";
    assert_eq!(scalar(&db, mismatched).await, 0);
    assert_eq!(
        scalar(&db, "SELECT sum(balance)::bigint FROM wallets").await,
        2500 * 70000
    );
}

#[tokio::test]
async fn seed_refuses_a_negative_balance_without_writing() {
    let db = TestDb::create().await;
    let out = concert(&db, "seedtest2", &["seed", "--users", "10", "--balance=-5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(scalar(&db, "SELECT count(*) FROM users").await, 0);
}

#[tokio::test]
async fn api_and_worker_processes_exit_cleanly_on_sigterm() {
    let db = TestDb::create().await;
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    assert!(
        concert(&db, &prefix, &["migrate"])
            .status()
            .unwrap()
            .success()
    );
    let (port, metrics_port) = (free_port(), free_port());
    let mut api = concert(&db, &prefix, &["api"])
        .env("API_ADDR", format!("127.0.0.1:{port}"))
        .env("API_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .spawn()
        .unwrap();
    let mut worker = concert(&db, &prefix, &["worker"]).spawn().unwrap();
    wait_ready(port).await;
    // The api's registry is on its own listener, not on the public address.
    let public = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let text = scrape(metrics_port).await;
    assert!(text.contains(r#"route="/ready",status="200""#), "{text}");
    sigterm(&api);
    sigterm(&worker);
    assert!(wait_exit(&mut api, Duration::from_secs(15)).success());
    assert!(wait_exit(&mut worker, Duration::from_secs(15)).success());
}

#[tokio::test]
async fn standalone_serves_its_one_registry_once_at_the_worker_metrics_address() {
    let db = TestDb::create().await;
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let (port, api_metrics, worker_metrics) = (free_port(), free_port(), free_port());
    let mut standalone = concert(&db, &prefix, &["standalone"])
        .env("API_ADDR", format!("127.0.0.1:{port}"))
        .env("API_METRICS_ADDR", format!("127.0.0.1:{api_metrics}"))
        .env("WORKER_METRICS_ADDR", format!("127.0.0.1:{worker_metrics}"))
        .spawn()
        .unwrap();
    wait_ready(port).await;
    // The worker half's listener shows the api half's requests: one registry.
    let text = scrape(worker_metrics).await;
    assert!(text.contains(r#"route="/ready",status="200""#), "{text}");
    assert!(
        reqwest::get(format!("http://127.0.0.1:{api_metrics}/metrics"))
            .await
            .is_err(),
        "API_METRICS_ADDR must not serve it a second time"
    );
    sigterm(&standalone);
    assert!(wait_exit(&mut standalone, Duration::from_secs(15)).success());
}

#[tokio::test]
async fn the_api_refuses_a_public_address_while_a_secret_is_its_development_default() {
    let db = TestDb::create().await;
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let public = format!("0.0.0.0:{}", free_port());
    // Every default left in place: refused, each variable named, nothing migrated.
    for command in ["api", "standalone"] {
        let out = concert(&db, &prefix, &[command])
            .env("API_ADDR", &public)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command} must refuse");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for name in ["ADMIN_TOKEN", "QUEUE_TOKEN_SECRET", "AUTH_JWT_SECRET"] {
            assert!(
                stderr.contains(name),
                "{command}: {name} not named: {stderr}"
            );
        }
    }
    // The database is a clone of the migrated template: standalone's seed never ran.
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM users").await
            + scalar(&db, "SELECT count(*) FROM concerts").await,
        0,
        "standalone refused before seeding"
    );
    // One default left: still refused, and only that one is named.
    let out = concert(&db, &prefix, &["api"])
        .env("API_ADDR", &public)
        .env("ADMIN_TOKEN", "a-real-admin-token")
        .env("QUEUE_TOKEN_SECRET", "a-real-queue-token-secret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AUTH_JWT_SECRET") && !stderr.contains("ADMIN_TOKEN"),
        "{stderr}"
    );
    // Every secret set: it serves on the public address.
    let mut api = concert(&db, &prefix, &["api"])
        .env("API_ADDR", &public)
        .env("ADMIN_TOKEN", "a-real-admin-token")
        .env("QUEUE_TOKEN_SECRET", "a-real-queue-token-secret")
        .env("AUTH_JWT_SECRET", "a-real-jwt-secret-of-at-least-32-bytes")
        .spawn()
        .unwrap();
    let port = public.rsplit(':').next().unwrap();
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !matches!(
        http.get(format!("http://127.0.0.1:{port}/health")).send().await,
        Ok(r) if r.status() == 200
    ) {
        assert!(api.try_wait().unwrap().is_none(), "the api exited");
        assert!(started.elapsed() < Duration::from_secs(20), "never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&api);
    assert!(wait_exit(&mut api, Duration::from_secs(15)).success());
}

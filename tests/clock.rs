//! One clock (#13, SPEC §3.3): hold expiry is judged by PostgreSQL's `now()`
//! inside the transaction, never by the clock of the host a worker runs on.
//! A real `concert worker` process runs 10 minutes ahead under libfaketime.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::process::{Child, Command, Stdio};

use common::TestApp;

/// Debian's libfaketime (package `faketime`, installed by `scripts/services.sh --test-tools`).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Kills the worker process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_clock_runs_ahead_pays_a_hold_postgres_says_is_live() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "install Debian's faketime (scripts/services.sh --test-tools)"
    );
    let app = TestApp::spawn().await;
    let _worker = Killed(
        Command::new(env!("CARGO_BIN_EXE_concert"))
            .arg("worker")
            .env("DATABASE_URL", &app.config.database_url)
            .env("REDIS_URL", &app.config.redis_url)
            .env("REDIS_PREFIX", app.redis_prefix())
            .env("WORKER_METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME", "+10m")
            // Timers and timeouts keep real time; only the wall clock is ahead.
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let schedule = app.open_concert(1, 1_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let fan = app.active_fan().await;
    let topped = TestApp::accepted_job(app.recharge(&fan, 1_000).await).await;
    let topped = app.final_job(&fan.access, &topped).await;
    assert_eq!(topped["status"], "SUCCEEDED", "{topped}");
    // The worker really runs ahead: it stamped the job's last change ~10 min from now.
    let stamped =
        chrono::DateTime::parse_from_rfc3339(topped["updatedAt"].as_str().unwrap()).unwrap();
    assert!(
        stamped.with_timezone(&chrono::Utc) - chrono::Utc::now() > chrono::Duration::minutes(9),
        "worker clock not skewed: {topped}"
    );

    // A 5-minute hold: by the worker's clock it expired 5 minutes ago, by
    // PostgreSQL's it has 5 minutes left. Its expiry job (due at once by the
    // worker's clock) must not expire it, and paying it must succeed.
    let held = TestApp::accepted_job(app.reserve(&fan, schedule, &[1], None).await).await;
    let held = app.final_job(&fan.access, &held).await;
    assert_eq!(held["status"], "SUCCEEDED", "{held}");
    let reservation = held["result"]["reservationId"].as_str().unwrap().to_owned();
    let resp = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth(&fan.token)
        .json(&serde_json::json!({ "reservationId": reservation }))
        .send()
        .await
        .unwrap();
    let paid = TestApp::accepted_job(resp).await;
    let paid = app.final_job(&fan.access, &paid).await;
    assert_eq!(paid["status"], "SUCCEEDED", "{paid}");
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM reservations WHERE id = '{reservation}' AND status = 'CONFIRMED'"
        ))
        .await,
        1
    );
}

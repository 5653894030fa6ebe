//! Paths around the happy ones: every accepted job still reaches a final status.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use common::TestApp;
use serde_json::json;

/// Deletes a user (and, by cascade, their wallet and ledger) behind the api's back.
async fn delete_user(app: &TestApp, user: &str) {
    use sea_orm::ConnectionTrait;
    app.db
        .execute_unprepared(&format!("DELETE FROM users WHERE id = '{user}'"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recharge_for_a_user_deleted_after_acceptance_ends_user_not_found() {
    let app = TestApp::builder().workers(1).spawn().await;
    let user = app.sign_up("gone").await;
    let access = app.access_token(&user).await;
    delete_user(&app, &user).await;
    // The api's known-users cache still vouches for the id: the recharge is accepted.
    let resp = app
        .http
        .post(app.url(&format!("/v1/users/{user}/balance/recharges")))
        .bearer_auth(&access)
        .json(&json!({ "amount": 1000 }))
        .send()
        .await
        .unwrap();
    let job = TestApp::accepted_job(resp).await;
    let done = app.final_job(&access, &job).await;
    assert_eq!(
        (done["status"].as_str(), done["error"]["code"].as_str()),
        (Some("FAILED"), Some("USER_NOT_FOUND")),
        "{done}"
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM job_outcomes WHERE job_id = '{job}'"
        ))
        .await,
        1,
        "the outcome is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_for_a_user_deleted_after_acceptance_ends_user_not_found() {
    let app = TestApp::builder().workers(1).spawn().await;
    let schedule = app.open_concert(1, 1_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let fan = app.active_fan().await;
    delete_user(&app, &fan.user_id).await;
    let job = TestApp::accepted_job(app.reserve(&fan, schedule, &[1], None).await).await;
    let done = app.final_job(&fan.access, &job).await;
    assert_eq!(done["error"]["code"], "USER_NOT_FOUND", "{done}");
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status <> 'AVAILABLE'")
            .await,
        0,
        "nothing was held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_whose_status_write_was_lost_still_reads_queued_then_final() {
    // No workers yet: the job waits in its queue.
    let app = TestApp::spawn().await;
    let schedule = app.open_concert(1, 1_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let (fan, other) = (app.active_fan().await, app.active_fan().await);
    let job = TestApp::accepted_job(app.reserve(&fan, schedule, &[3], None).await).await;
    // The QUEUED write is gone (as if it had failed after the push).
    let mut redis = app.redis().await;
    let removed: i64 = redis::cmd("DEL")
        .arg(format!("{}:job:{job}", app.redis_prefix()))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let read: serde_json::Value = app
        .get_as(&fan.access, &format!("/v1/jobs/{job}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (read["status"].as_str(), read["kind"].as_str()),
        (Some("QUEUED"), Some("RESERVE")),
        "{read}"
    );
    common::problem(
        app.get_as(&other.access, &format!("/v1/jobs/{job}")).await,
        404,
    )
    .await;
    // A worker comes: the job ends as usual.
    let _worker = TestApp::builder().sibling_of(&app).workers(1).spawn().await;
    assert_eq!(
        app.final_job(&fan.access, &job).await["status"],
        "SUCCEEDED"
    );
}

/// A job context like the worker's, over `db` (which may be unreachable).
fn job_context(app: &TestApp, db: sea_orm::DatabaseConnection) -> worker::handlers::JobContext {
    worker::handlers::JobContext::new(db, app.state.redis.clone(), &app.config)
}

/// #13 (1b): apalis-redis buries a task after 25 failed deliveries (PostgreSQL
/// away ~5.5 min) and nothing finalized it. The worker's reaper does, as soon
/// as PostgreSQL answers — and not a moment before.
#[tokio::test]
async fn a_job_apalis_buried_is_finalized_once_postgres_answers() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    let resp = app.recharge(&fan, 700).await;
    let job = TestApp::accepted_job(resp).await;
    // Bury it as apalis' handle_results.lua does on the 25th failure: out of the
    // queue, into the dead set, payload kept.
    let queue = format!("{}_recharge", app.redis_prefix());
    let mut redis = app.redis().await;
    let (active, scheduled, dead): (i64, i64, i64) = redis::pipe()
        .lrem(format!("{queue}:active"), 0, &job)
        .zrem(format!("{queue}:scheduled"), &job)
        .sadd(format!("{queue}:dead"), &job)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        (active + scheduled, dead),
        (1, 1),
        "the task was queued, now buried"
    );

    // PostgreSQL still away: the job stays buried and not final.
    let away = domain::platform::db::connect_url("postgres://postgres@127.0.0.1:1/none", 1, true)
        .await
        .unwrap();
    assert_eq!(
        worker::housekeeping::reap_once(&job_context(&app, away)).await,
        0
    );
    let still: bool = redis::cmd("SISMEMBER")
        .arg(format!("{queue}:dead"))
        .arg(&job)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(still, "kept for the next pass");
    let status: serde_json::Value = app
        .get_as(&fan.access, &format!("/v1/jobs/{job}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "QUEUED", "{status}");

    // PostgreSQL back: finalized FAILED, nothing applied, the dead set emptied.
    assert_eq!(
        worker::housekeeping::reap_once(&job_context(&app, app.db.clone())).await,
        1
    );
    let done = app.final_job(&fan.access, &job).await;
    assert_eq!(done["error"]["code"], "ATTEMPTS_EXHAUSTED", "{done}");
    let left: (i64, bool) = redis::pipe()
        .scard(format!("{queue}:dead"))
        .hexists(format!("{queue}:data"), &job)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(left, (0, false));
    assert_eq!(
        app.scalar(&format!(
            "SELECT balance FROM wallets WHERE user_id = '{}'",
            fan.user_id
        ))
        .await,
        0,
        "a finalized failure applies nothing"
    );
}

/// #13 (5): apalis-redis writes a metadata hash per worker start and never
/// deletes it; a gone worker's is pruned, a registered one's kept.
#[tokio::test]
async fn metadata_of_gone_workers_is_pruned_and_live_ones_kept() {
    let app = TestApp::spawn().await;
    let redis = app.state.redis.clone();
    let queue = format!("{}_reserve", app.redis_prefix());
    let mut conn = app.redis().await;
    for name in ["gone-worker", "live-worker"] {
        domain::jobs::housekeeping::record_worker(&redis, &app.config, "reserve", name)
            .await
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg(format!("{queue}:workers:metadata:{name}"))
            .arg("service")
            .arg("test")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("ZADD")
        .arg(format!("{queue}:workers"))
        .arg(chrono::Utc::now().timestamp())
        .arg("live-worker")
        .query_async(&mut conn)
        .await
        .unwrap();
    let pruned = domain::jobs::housekeeping::prune_worker_metadata(
        &redis,
        &app.config,
        "reserve",
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(pruned, 1);
    let left: (bool, bool) = redis::pipe()
        .exists(format!("{queue}:workers:metadata:gone-worker"))
        .exists(format!("{queue}:workers:metadata:live-worker"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, (false, true));
}

/// #13 (5): a status hash lives `JOB_STATUS_TTL_SECONDS` after its last write,
/// the delivery counter goes with the final status, and the job still reads
/// final from PostgreSQL once the hash is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_hash_expires_and_the_job_still_reads_final() {
    let app = TestApp::builder()
        .env("JOB_STATUS_TTL_SECONDS", "120")
        .workers(1)
        .spawn()
        .await;
    let fan = app.active_fan().await;
    let resp = app.recharge(&fan, 300).await;
    let job = TestApp::accepted_job(resp).await;
    assert_eq!(
        app.final_job(&fan.access, &job).await["status"],
        "SUCCEEDED"
    );
    let key = format!("{}:job:{job}", app.redis_prefix());
    let mut conn = app.redis().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=120).contains(&ttl), "ttl {ttl}");
    let counter: bool = redis::cmd("EXISTS")
        .arg(format!("{key}:deliveries"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!counter, "a final job's delivery counter is gone");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let job: serde_json::Value = app
        .get_as(&fan.access, &format!("/v1/jobs/{job}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_delivered_past_its_cap_is_finalized_by_its_batch_without_holding() {
    // An api without workers, so the job waits while its counter is set.
    let app = TestApp::spawn().await;
    let schedule = app.open_concert(1, 10_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let fan = app.active_fan().await;
    let job = TestApp::accepted_job(app.reserve(&fan, schedule, &[5], None).await).await;
    // As if it had been delivered WORKER_MAX_ATTEMPTS times already.
    let cap = app.config.worker_max_attempts;
    let _: () = redis::cmd("SET")
        .arg(format!("{}:job:{job}:deliveries", app.redis_prefix()))
        .arg(cap)
        .query_async(&mut app.redis().await)
        .await
        .unwrap();
    let _worker = TestApp::builder().sibling_of(&app).workers(1).spawn().await;
    let done = app.final_job(&fan.access, &job).await;
    assert_eq!(
        (done["status"].as_str(), done["error"]["code"].as_str()),
        (Some("FAILED"), Some("ATTEMPTS_EXHAUSTED")),
        "{done}"
    );
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 0);
}

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

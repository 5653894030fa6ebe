//! Load shedding: past `RESERVE_BACKLOG_MAX` waiting reserve jobs the api
//! answers 429 `BUSY` with `Retry-After` and queues nothing; once the workers
//! catch up reserves are accepted again — the shed one included, and a
//! retried one gets the job it was first given.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::time::Duration;

use common::{TestApp, eventually, problem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserves_past_the_backlog_bound_are_shed_with_429_and_taken_again_once_it_drains() {
    // No worker at first: every accepted reserve stays in the backlog.
    let app = TestApp::builder()
        .env("RESERVE_BACKLOG_MAX", "3")
        .spawn()
        .await;
    let schedule = app.open_concert(1, 10_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let fans = app.active_fans(12).await;
    let mut accepted = Vec::new();
    for (seat, fan) in (1..=3).zip(&fans) {
        let key = format!("k{seat}");
        let id = TestApp::accepted_job(app.reserve(fan, schedule, &[seat], Some(&key)).await).await;
        accepted.push((fan, seat, key, id));
    }
    assert_eq!(app.backlog("reserve").await, 3);

    // The gate reads the backlog every 100 ms: reserves are shed once it has
    // (one or two may still get in before that: the bound is soft by a refresh).
    let mut next = 4..;
    let (shed_fan, shed_seat, before, response) = eventually(Duration::from_secs(10), || {
        let seat = next.next().unwrap();
        let fan = &fans[usize::try_from(seat).unwrap() - 1];
        let app = &app;
        async move {
            let before = app.backlog("reserve").await;
            let response = app
                .reserve(fan, schedule, &[seat], Some(&format!("k{seat}")))
                .await;
            (response.status() == 429).then_some((fan, seat, before, response))
        }
    })
    .await;
    assert!(before >= 3, "shed only at the bound: backlog {before}");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    let p = problem(response, 429).await;
    assert_eq!(p["code"], "BUSY", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("retry in"), "{p}");
    assert_eq!(
        app.backlog("reserve").await,
        before,
        "a shed reserve queues nothing"
    );

    // A retried request is shed too (nothing is spent on a shed request)...
    let (fan, seat, key, id) = &accepted[0];
    let again = app.reserve(fan, schedule, &[*seat], Some(key)).await;
    assert_eq!(problem(again, 429).await["code"], "BUSY");

    // A worker drains the backlog; the shed request, tried again, is accepted and runs.
    let drained = TestApp::builder().sibling_of(&app).workers(1).spawn().await;
    for (fan, _, _, id) in &accepted {
        assert_eq!(
            drained.final_job(&fan.access, id).await["status"],
            "SUCCEEDED"
        );
    }
    // ...and, once the backlog is gone, gets the job it was first given: one effect.
    let replay = eventually(Duration::from_secs(10), || async {
        let response = app.reserve(fan, schedule, &[*seat], Some(key)).await;
        (response.status() == 202).then_some(response)
    })
    .await;
    assert_eq!(&TestApp::accepted_job(replay).await, id);
    let retried = eventually(Duration::from_secs(10), || async {
        let response = app
            .reserve(
                shed_fan,
                schedule,
                &[shed_seat],
                Some(&format!("k{shed_seat}")),
            )
            .await;
        (response.status() == 202).then_some(response)
    })
    .await;
    let id = TestApp::accepted_job(retried).await;
    let job = drained.final_job(&shed_fan.access, &id).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["seatNumbers"], serde_json::json!([shed_seat]));
}

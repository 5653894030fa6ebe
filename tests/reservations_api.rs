//! The reservation pipeline end to end: api → apalis-redis → worker → PostgreSQL.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::time::Duration;

use common::{Fan, TestApp, eventually, problem};
use futures::future::join_all;
use serde_json::Value;

async fn first_schedule(app: &TestApp) -> i64 {
    app.open_concert(1, 10_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap()
}

async fn seat_status(app: &TestApp, fan: &Fan, schedule: i64, number: usize) -> String {
    let seats: Value = app
        .get_as(&fan.token, &format!("/v1/schedules/{schedule}/seats"))
        .await
        .json()
        .await
        .unwrap();
    seats["items"][number - 1]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Seats that are in more than one live reservation, or held/sold by a reservation that does not list them.
async fn inconsistencies(app: &TestApp) -> i64 {
    app.scalar(
        "SELECT (SELECT count(*) FROM (SELECT seat_id FROM reservation_seats
                   WHERE reservation_status IN ('HELD','CONFIRMED') GROUP BY seat_id HAVING count(*) > 1) d)
              + (SELECT count(*) FROM seats s WHERE s.status <> 'AVAILABLE' AND NOT EXISTS (
                   SELECT 1 FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
                   WHERE rs.seat_id = s.id AND r.id = s.reservation_id AND r.status IN ('HELD','CONFIRMED')))",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_is_accepted_at_once_and_its_job_holds_the_seats() {
    let app = TestApp::builder().workers(1).spawn().await;
    let schedule = first_schedule(&app).await;
    let fan = app.active_fan().await;
    let job_id = TestApp::accepted_job(app.reserve(&fan, schedule, &[7, 3], None).await).await;
    let job = app.final_job(&fan.token, &job_id).await;
    assert_eq!(
        (job["status"].as_str(), job["kind"].as_str()),
        (Some("SUCCEEDED"), Some("RESERVE")),
        "{job}"
    );
    let hold = &job["result"];
    assert_eq!(hold["seatNumbers"], serde_json::json!([3, 7]));
    assert_eq!(hold["totalPrice"], 20_000);
    assert_eq!(seat_status(&app, &fan, schedule, 3).await, "HELD");
    let rid = hold["reservationId"].as_str().unwrap();
    let mine: Value = app
        .get_as(&fan.token, &format!("/v1/reservations/{rid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (mine["status"].as_str(), mine["seatNumbers"].clone()),
        (Some("HELD"), serde_json::json!([3, 7]))
    );
    let stranger = app.active_fan().await;
    problem(
        app.get_as(&stranger.token, &format!("/v1/reservations/{rid}"))
            .await,
        404,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_reserves_of_one_seat_make_exactly_one_hold() {
    let app = TestApp::builder()
        .workers(2)
        .env("DATABASE_MAX_CONNECTIONS", "16")
        .env("QUEUE_ADMIT_PER_SECOND", "1000")
        .spawn()
        .await;
    let schedule = first_schedule(&app).await;
    // 125 fans × 8 reserves: each fan at its USER_JOBS_IN_FLIGHT bound, none past it.
    let fans = app.active_fans(125).await;
    let requests = (0..1000).map(|i| {
        let (app, fan) = (&app, &fans[i % fans.len()]);
        async move {
            let id = TestApp::accepted_job(app.reserve(fan, schedule, &[25], None).await).await;
            (fan, id)
        }
    });
    let job_ids = join_all(requests).await;
    let jobs = join_all(
        job_ids
            .iter()
            .map(|(fan, id)| app.final_job(&fan.access, id)),
    )
    .await;
    let won = jobs.iter().filter(|j| j["status"] == "SUCCEEDED").count();
    let lost = jobs
        .iter()
        .filter(|j| j["status"] == "FAILED" && j["error"]["code"] == "SEAT_UNAVAILABLE")
        .count();
    assert_eq!((won, lost), (1, 999));
    assert_eq!(
        app.scalar("SELECT count(*) FROM reservations WHERE status = 'HELD'")
            .await,
        1
    );
    assert_eq!(app.scalar("SELECT count(*) FROM job_outcomes").await, 1000);
    assert_eq!(inconsistencies(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_multi_seat_requests_never_hold_partially_or_twice() {
    // Each fan holds up to 24 seats over the rounds: lift the per-person cap.
    let app = TestApp::builder()
        .workers(2)
        .env("MAX_SEATS_PER_USER", "50")
        .spawn()
        .await;
    let schedule = first_schedule(&app).await;
    let fans = app.active_fans(6).await;
    for round in 0..12_i64 {
        let a = round * 4 + 1;
        let wanted = [[a, a + 1], [a + 1, a + 2], [a + 2, a + 3]];
        let requests = (0..6).map(|i| {
            let (app, fan, seats) = (&app, &fans[i], wanted[i % 3]);
            async move {
                (
                    seats,
                    fan,
                    TestApp::accepted_job(app.reserve(fan, schedule, &seats, None).await).await,
                )
            }
        });
        let submitted = join_all(requests).await;
        let mut held: Vec<i64> = Vec::new();
        for (seats, fan, job_id) in submitted {
            let job = app.final_job(&fan.token, &job_id).await;
            if job["status"] == "SUCCEEDED" {
                let got: Vec<i64> = job["result"]["seatNumbers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect();
                assert_eq!(
                    got,
                    seats.to_vec(),
                    "a hold has exactly the requested seats"
                );
                assert!(
                    got.iter().all(|s| !held.contains(s)),
                    "round {round}: seat held twice"
                );
                held.extend(got);
            } else {
                assert_eq!(job["error"]["code"], "SEAT_UNAVAILABLE", "{job}");
            }
        }
        assert!(!held.is_empty(), "round {round}: someone must win");
    }
    assert_eq!(inconsistencies(&app).await, 0);
    let held_seats = app
        .scalar(&format!(
            "SELECT count(*) FROM seats WHERE schedule_id = {schedule} AND status = 'HELD'"
        ))
        .await;
    let listed = app
        .scalar("SELECT count(*) FROM reservation_seats WHERE reservation_status = 'HELD'")
        .await;
    assert_eq!(
        held_seats, listed,
        "every held seat belongs to exactly one hold and vice versa"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_expires_after_its_ttl_and_the_seat_can_be_reserved_again() {
    let app = TestApp::builder()
        .workers(1)
        .env("HOLD_TTL_SECONDS", "2")
        .env("WORKER_SWEEP_INTERVAL_SECONDS", "3600")
        .spawn()
        .await;
    let schedule = first_schedule(&app).await;
    let fan = app.active_fan().await;
    let job = app
        .final_job(
            &fan.access,
            &TestApp::accepted_job(app.reserve(&fan, schedule, &[10], None).await).await,
        )
        .await;
    let rid = job["result"]["reservationId"].as_str().unwrap().to_owned();
    // The delayed ExpireHold job (not the sweep, which is off) expires it in PostgreSQL.
    eventually(Duration::from_secs(15), || async {
        let n = app
            .scalar(&format!(
                "SELECT count(*) FROM reservations WHERE id = '{rid}' AND status = 'EXPIRED'"
            ))
            .await;
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(seat_status(&app, &fan, schedule, 10).await, "AVAILABLE");
    let again = app
        .final_job(
            &fan.access,
            &TestApp::accepted_job(app.reserve(&fan, schedule, &[10], None).await).await,
        )
        .await;
    assert_eq!(again["status"], "SUCCEEDED", "{again}");
}

/// One worker whose reserves gather into one batch (a one-second linger), holds
/// of 3 s, and no sweep: only the batch's expiry task frees them.
async fn one_batch_of_short_holds() -> TestApp {
    TestApp::builder()
        .workers(1)
        .env("HOLD_TTL_SECONDS", "3")
        .env("RESERVE_BATCH_LINGER_MS", "1000")
        .env("WORKER_SWEEP_INTERVAL_SECONDS", "3600")
        .spawn()
        .await
}

async fn until_expired(app: &TestApp, holds: i64) {
    eventually(Duration::from_secs(30), || async {
        let n = app
            .scalar("SELECT count(*) FROM reservations WHERE status = 'EXPIRED'")
            .await;
        (n == holds).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holds_of_one_batch_share_one_expiry_task_that_expires_them_all() {
    // A one-second linger gathers the four reserves into one batch.
    let app = one_batch_of_short_holds().await;
    let schedule = first_schedule(&app).await;
    let fans = app.active_fans(4).await;
    let app = &app;
    let jobs = join_all(fans.iter().zip(21..).map(|(fan, seat)| async move {
        let id = TestApp::accepted_job(app.reserve(fan, schedule, &[seat], None).await).await;
        app.final_job(&fan.access, &id).await
    }))
    .await;
    let mut holds: Vec<String> = jobs
        .iter()
        .map(|job| {
            assert_eq!(job["status"], "SUCCEEDED", "{job}");
            job["result"]["reservationId"].as_str().unwrap().to_owned()
        })
        .collect();
    holds.sort();
    let queue = format!("{}_expire_hold", app.redis_prefix());
    let mut redis = app.redis().await;
    let tasks: Vec<String> = redis::cmd("HVALS")
        .arg(format!("{queue}:data"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut scheduled: Vec<String> = tasks
        .iter()
        .flat_map(|task| {
            let task: Value = serde_json::from_str(task).unwrap();
            task["reservation_ids"].as_array().unwrap().clone()
        })
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    scheduled.sort();
    assert_eq!(scheduled, holds, "every hold is in exactly one expiry task");
    assert_eq!(tasks.len(), 1, "one task for the batch: {tasks:?}");
    // That one task (the sweep is off) expires all four and frees their seats.
    until_expired(app, 4).await;
    for seat in 21..25 {
        assert_eq!(
            seat_status(app, &fans[0], schedule, seat).await,
            "AVAILABLE"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_task_larger_than_one_statement_expires_every_hold() {
    // 70 reserves gathered into one batch (a one-second linger) → one expiry
    // task of 70 holds, which the worker expires 64 holds per statement.
    let app = one_batch_of_short_holds().await;
    let concert = app.open_concert(2, 10_000).await;
    let dates: Vec<i64> = (0..2)
        .map(|i| concert["schedules"][i]["scheduleId"].as_i64().unwrap())
        .collect();
    let fans = app.active_fans(70).await;
    let app = &app;
    let jobs = join_all(fans.iter().zip(0_i64..).map(|(fan, i)| {
        let (schedule, seat) = (dates[usize::from(i >= 50)], i % 50 + 1);
        async move {
            let id = TestApp::accepted_job(app.reserve(fan, schedule, &[seat], None).await).await;
            app.final_job(&fan.access, &id).await
        }
    }))
    .await;
    assert!(
        jobs.iter().all(|job| job["status"] == "SUCCEEDED"),
        "{jobs:?}"
    );
    let tasks: Vec<String> = redis::cmd("HVALS")
        .arg(format!("{}_expire_hold:data", app.redis_prefix()))
        .query_async(&mut app.redis().await)
        .await
        .unwrap();
    assert_eq!(
        tasks.len(),
        1,
        "one expiry task for the one batch: {tasks:?}"
    );
    until_expired(app, 70).await;
    let held = app
        .scalar("SELECT count(*) FROM seats WHERE status <> 'AVAILABLE'")
        .await;
    assert_eq!(held, 0, "every seat of the 70 holds is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_expires_a_hold_whose_expiry_job_was_lost() {
    let app = TestApp::builder()
        .workers(1)
        .env("HOLD_TTL_SECONDS", "2")
        .env("WORKER_SWEEP_INTERVAL_SECONDS", "1")
        .spawn()
        .await;
    let schedule = first_schedule(&app).await;
    let fan = app.active_fan().await;
    let job = app
        .final_job(
            &fan.access,
            &TestApp::accepted_job(app.reserve(&fan, schedule, &[12], None).await).await,
        )
        .await;
    let rid = job["result"]["reservationId"].as_str().unwrap().to_owned();
    // Delete the delayed job from Redis: it can no longer run.
    let queue = format!("{}_expire_hold", app.redis_prefix());
    let mut redis = app.redis().await;
    let removed: i64 = redis::cmd("ZREM")
        .arg(format!("{queue}:scheduled"))
        .arg(&rid)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(removed, 1, "the delayed expiry job was scheduled");
    let _: i64 = redis::cmd("HDEL")
        .arg(format!("{queue}:data"))
        .arg(&rid)
        .query_async(&mut redis)
        .await
        .unwrap();
    eventually(Duration::from_secs(15), || async {
        let n = app
            .scalar(&format!(
                "SELECT count(*) FROM reservations WHERE id = '{rid}' AND status = 'EXPIRED'"
            ))
            .await;
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(seat_status(&app, &fan, schedule, 12).await, "AVAILABLE");
    let ran: bool = redis::cmd("SISMEMBER")
        .arg(format!("{queue}:done"))
        .arg(&rid)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!ran, "the deleted job did not run: the sweep did it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_returns_the_same_job_and_one_effect_and_another_body_is_422() {
    let app = TestApp::builder().workers(1).spawn().await;
    let schedule = first_schedule(&app).await;
    let fan = app.active_fan().await;
    let ids = join_all((0..10).map(|_| async {
        TestApp::accepted_job(app.reserve(&fan, schedule, &[30], Some("click-1")).await).await
    }))
    .await;
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(
        app.final_job(&fan.access, &ids[0]).await["status"],
        "SUCCEEDED"
    );
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 1);
    let p = problem(
        app.reserve(&fan, schedule, &[31], Some("click-1")).await,
        422,
    )
    .await;
    assert_eq!(
        (p["code"].as_str(), p["field"].as_str()),
        (Some("IDEMPOTENCY_KEY_REUSED"), Some("Idempotency-Key"))
    );
    // The same key from another user is another job.
    let other = app.active_fan().await;
    let theirs =
        TestApp::accepted_job(app.reserve(&other, schedule, &[32], Some("click-1")).await).await;
    assert_ne!(theirs, ids[0]);
    let p = problem(
        app.reserve(&fan, schedule, &[33], Some("bad key")).await,
        400,
    )
    .await;
    assert_eq!(p["field"], "Idempotency-Key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_queued_until_a_worker_runs_it_and_a_long_poll_returns_when_it_is_final() {
    // An api without workers: the job stays QUEUED.
    let app = TestApp::spawn().await;
    let schedule = first_schedule(&app).await;
    let fan = app.active_fan().await;
    let job_id = TestApp::accepted_job(app.reserve(&fan, schedule, &[40], None).await).await;
    let queued: Value = app
        .get_as(&fan.access, &format!("/v1/jobs/{job_id}?waitSeconds=1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queued["status"], "QUEUED");
    // SPEC: `result?`, `error?` — absent, not null, until the job is final (#27).
    let keys: Vec<&String> = queued.as_object().unwrap().keys().collect();
    assert!(
        !keys.iter().any(|k| *k == "result" || *k == "error"),
        "{queued}"
    );
    // Start waiting (up to 30 s), then start a worker: the answer is the final status, not a timeout.
    let waiting = app
        .http
        .get(app.url(&format!("/v1/jobs/{job_id}?waitSeconds=30")))
        .bearer_auth(&fan.token)
        .send();
    let worker = TestApp::builder().sibling_of(&app).workers(1).spawn();
    let (resp, _worker) = tokio::join!(waiting, worker);
    let job: Value = resp.unwrap().json().await.unwrap();
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
}

#[tokio::test]
async fn job_status_errors_are_problems() {
    let app = TestApp::spawn().await;
    let user = app.sign_up("reader").await;
    let access = app.access_token(&user).await;
    let unknown = format!("/v1/jobs/{}", uuid::Uuid::new_v4());
    problem(app.get_as(&access, &unknown).await, 404).await;
    problem(app.get(&unknown).await, 401).await;
    assert_eq!(
        problem(app.get_as(&access, "/v1/jobs/not-a-uuid").await, 400).await["field"],
        "jobId"
    );
    let p = problem(
        app.get_as(&access, &format!("{unknown}?waitSeconds=31"))
            .await,
        400,
    )
    .await;
    assert_eq!(p["field"], "waitSeconds");
}

#[tokio::test]
async fn bad_reserve_requests_are_refused_before_anything_is_queued() {
    let app = TestApp::builder()
        .env("QUEUE_MAX_ACTIVE", "1")
        .spawn()
        .await;
    let schedule = first_schedule(&app).await;
    let fan = app.active_fan().await;
    for (seats, field) in [
        (serde_json::json!([]), "seatNumbers"),
        (serde_json::json!([1, 2, 3, 4, 5]), "seatNumbers"),
        (serde_json::json!([0]), "seatNumbers[0]"),
        (serde_json::json!([1, 51]), "seatNumbers[1]"),
        (serde_json::json!([5, 5]), "seatNumbers[1]"),
        (serde_json::json!(["x"]), "seatNumbers[0]"),
    ] {
        let resp = app
            .http
            .post(app.url("/v1/reservations"))
            .bearer_auth(&fan.token)
            .json(&serde_json::json!({ "scheduleId": schedule, "seatNumbers": seats }))
            .send()
            .await
            .unwrap();
        assert_eq!(problem(resp, 400).await["field"], field, "{seats}");
    }
    assert_eq!(
        problem(app.reserve(&fan, 999_999, &[1], None).await, 404).await["field"],
        "scheduleId"
    );
    let now = chrono::Utc::now();
    let later = app
        .create_concert(&serde_json::json!({"title": "later", "schedules": [{
            "startsAt": now + chrono::Duration::days(9), "bookingOpensAt": now + chrono::Duration::days(1),
            "bookingClosesAt": now + chrono::Duration::days(8), "seatPrice": 1000}]}))
        .await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    assert_eq!(
        problem(app.reserve(&fan, later, &[1], None).await, 409).await["code"],
        "BOOKING_CLOSED"
    );
    // The guard: no token 401, a waiting token 403.
    let resp = app
        .http
        .post(app.url("/v1/reservations"))
        .json(&serde_json::json!({"scheduleId": schedule, "seatNumbers": [1]}))
        .send()
        .await
        .unwrap();
    problem(resp, 401).await;
    let waiting_user = app.sign_up("late").await;
    let waiting: Value = app.issue_token(&waiting_user).await.json().await.unwrap();
    let late = Fan {
        access: app.access_token(&waiting_user).await,
        user_id: waiting_user,
        token: waiting["token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        problem(app.reserve(&late, schedule, &[1], None).await, 403).await["code"],
        "QUEUE_WAITING"
    );
    let queued: i64 = redis::cmd("EXISTS")
        .arg(format!("{}_reserve:data", app.redis_prefix()))
        .query_async(&mut app.redis().await)
        .await
        .unwrap();
    assert_eq!(queued, 0, "nothing was enqueued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_leave_no_waiter_behind_whatever_their_answer() {
    // No workers: the fan's job stays QUEUED, so its long-polls time out.
    // 200 at once of one fan: the per-user long-poll bound is lifted here.
    let app = TestApp::builder()
        .env("USER_LONG_POLLS_MAX", "0")
        .spawn()
        .await;
    let schedule = first_schedule(&app).await;
    let (fan, other) = (app.active_fan().await, app.active_fan().await);
    let job = TestApp::accepted_job(app.reserve(&fan, schedule, &[1], None).await).await;
    let polls = (0..600).map(|i| {
        let (app, fan, other, job) = (&app, &fan, &other, &job);
        async move {
            let (token, path, status) = match i % 3 {
                // Unknown ids: 404 after registering to wait.
                0 => (
                    &fan.access,
                    format!("/v1/jobs/{}?waitSeconds=5", uuid::Uuid::new_v4()),
                    404,
                ),
                // Someone else's job: 404 as well.
                1 => (&other.access, format!("/v1/jobs/{job}?waitSeconds=5"), 404),
                // One's own job, never final here: the wait runs out.
                _ => (&fan.access, format!("/v1/jobs/{job}?waitSeconds=1"), 200),
            };
            assert_eq!(app.get_as(token, &path).await.status(), status, "{path}");
        }
    });
    join_all(polls).await;
    assert_eq!(
        app.state.watcher.watched_jobs(),
        0,
        "every long-poll removed its registration"
    );
}

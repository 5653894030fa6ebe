//! Fair use: one client's loop cannot take the places of everybody else.
//! At most `USER_JOBS_IN_FLIGHT` non-final jobs per user and kind (429
//! `TOO_MANY_JOBS`, nothing queued), a backlog bound per queue (429 `BUSY`),
//! at most `USER_LONG_POLLS_MAX` open long-polls per user, and an
//! idempotency key that answers its first job for its whole life — never a
//! second run, never QUEUED for a finished job.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::time::Duration;

use common::{TestApp, eventually, problem};
use domain::jobs::JobKind;
use serde_json::{Value, json};

async fn pay(app: &TestApp, token: &str, reservation: &str, key: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/payments"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({ "reservationId": reservation }))
        .send()
        .await
        .unwrap()
}

/// Splits answers into accepted job ids and the problems of the refused ones.
async fn sort_answers(answers: Vec<reqwest::Response>) -> (Vec<String>, Vec<Value>) {
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for response in answers {
        if response.status() == 202 {
            accepted.push(TestApp::accepted_job(response).await);
        } else {
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let mut p = problem(response, 429).await;
            p["retryAfter"] = json!(retry_after);
            refused.push(p);
        }
    }
    (accepted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fans_reserve_loop_gets_too_many_jobs_and_never_crowds_out_another_fan() {
    // The reproduction: a backlog bound one fan could fill, and no worker, so
    // nothing drains while the loop runs.
    let app = TestApp::builder()
        .env("RESERVE_BACKLOG_MAX", "20")
        .env("USER_JOBS_IN_FLIGHT", "8")
        .spawn()
        .await;
    let schedule = app.open_concert(1, 10_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let fans = app.active_fans(2).await;
    let (flooder, other) = (&fans[0], &fans[1]);

    // 40 reserves at once, from one fan.
    let app = &app;
    let answers = futures::future::join_all((1..=40).map(|seat| async move {
        app.reserve(flooder, schedule, &[seat], Some(&format!("k{seat}")))
            .await
    }))
    .await;
    let (accepted, refused) = sort_answers(answers).await;
    assert_eq!(accepted.len(), 8, "refused: {refused:?}");
    assert_eq!(refused.len(), 32);
    for p in &refused {
        assert_eq!(p["code"], "TOO_MANY_JOBS", "{p}");
        assert_eq!(p["retryAfter"], "1", "{p}");
    }
    assert_eq!(
        app.backlog("reserve").await,
        8,
        "refused reserves queue nothing"
    );

    // More tries by the same fan keep failing, and cost nobody else anything.
    let again = app.reserve(flooder, schedule, &[45], None).await;
    assert_eq!(problem(again, 429).await["code"], "TOO_MANY_JOBS");
    let theirs = app.reserve(other, schedule, &[50], None).await;
    let other_job = TestApp::accepted_job(theirs).await;

    // A keyed replay of an accepted job still answers that job, bound or not.
    let first_key = futures::future::join_all((1..=40).map(|seat| async move {
        let r = app
            .reserve(flooder, schedule, &[seat], Some(&format!("k{seat}")))
            .await;
        (seat, r.status().as_u16())
    }))
    .await;
    let replayed: Vec<_> = first_key.iter().filter(|(_, s)| *s == 202).collect();
    assert_eq!(replayed.len(), 8, "{first_key:?}");
    assert_eq!(app.backlog("reserve").await, 9, "a replay queues nothing");

    // Once the flooder's jobs are final, their places are free again.
    let worker = TestApp::builder().sibling_of(app).workers(1).spawn().await;
    for id in &accepted {
        worker.final_job(&flooder.access, id).await;
    }
    worker.final_job(&other.access, &other_job).await;
    let freed = app.reserve(flooder, schedule, &[46], None).await;
    let id = TestApp::accepted_job(freed).await;
    // Four of the eight held a seat each: the fifth seat is past the per-person cap.
    let job = worker.final_job(&flooder.access, &id).await;
    assert_eq!(job["error"]["code"], "SEAT_LIMIT_EXCEEDED", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recharge_flood_is_bounded_per_user_and_by_the_recharge_backlog() {
    let app = TestApp::builder()
        .env("USER_JOBS_IN_FLIGHT", "8")
        .env("RECHARGE_BACKLOG_MAX", "12")
        .spawn()
        .await;
    let fans = app.active_fans(3).await;

    // One fresh account: 30 recharges at once, 8 taken.
    let answers = futures::future::join_all((0..30).map(|_| app.recharge(&fans[0], 1_000))).await;
    let (accepted, refused) = sort_answers(answers).await;
    assert_eq!(accepted.len(), 8);
    assert!(
        refused.iter().all(|p| p["code"] == "TOO_MANY_JOBS"),
        "{refused:?}"
    );
    assert_eq!(app.backlog("recharge").await, 8);

    // Others fill the recharge backlog to its bound; past it, recharges are shed
    // (the gate reads the backlog every 100 ms, so wait for it to see it).
    for _ in 0..4 {
        TestApp::accepted_job(app.recharge(&fans[1], 1_000).await).await;
    }
    assert_eq!(app.backlog("recharge").await, 12);
    // The gate reads the backlog every 100 ms: wait until this api's gate has.
    eventually(Duration::from_secs(10), || async {
        app.state
            .backlog_gate
            .admit(JobKind::Recharge)
            .is_err()
            .then_some(())
    })
    .await;
    let shed = eventually(Duration::from_secs(10), || async {
        let response = app.recharge(&fans[2], 1_000).await;
        (response.status() == 429).then_some(response)
    })
    .await;
    assert!(shed.headers().contains_key("retry-after"));
    let p = problem(shed, 429).await;
    assert_eq!(p["code"], "BUSY", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("RECHARGE"), "{p}");
    assert_eq!(
        app.backlog("recharge").await,
        12,
        "a shed recharge queues nothing"
    );

    // The reserve queue has its own bound: a reserve still goes through.
    let schedule = app.open_concert(1, 10_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    TestApp::accepted_job(app.reserve(&fans[2], schedule, &[1], None).await).await;

    // Drained, every accepted recharge is applied once: 12 × 1,000 won.
    let worker = TestApp::builder().sibling_of(&app).workers(1).spawn().await;
    for id in &accepted {
        assert_eq!(
            worker.final_job(&fans[0].access, id).await["status"],
            "SUCCEEDED"
        );
    }
    eventually(Duration::from_secs(30), || async {
        (app.scalar("SELECT COUNT(*) FROM ledger_entries").await == 12).then_some(())
    })
    .await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT balance FROM wallets WHERE user_id = '{}'",
            fans[0].user_id
        ))
        .await,
        8_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_user_long_polls_max_open_long_polls() {
    let app = TestApp::builder()
        .env("USER_LONG_POLLS_MAX", "2")
        .spawn()
        .await;
    let fans = app.active_fans(2).await;
    let job = TestApp::accepted_job(app.recharge(&fans[0], 500).await).await;
    let others = TestApp::accepted_job(app.recharge(&fans[1], 500).await).await;

    // Two long-polls wait on the queued job (no worker yet)...
    let polls: Vec<_> = (0..2)
        .map(|_| {
            let (http, url, token) = (
                app.http.clone(),
                app.url(&format!("/v1/jobs/{job}?waitSeconds=30")),
                fans[0].access.clone(),
            );
            tokio::spawn(async move {
                let r = http.get(url).bearer_auth(token).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let places = format!("{}:longpolls:{}", app.redis_prefix(), fans[0].user_id);
    places_held(&app, &places, 2).await;

    // ...so a third is refused, while a plain read and another fan's long-poll are not.
    let third = app
        .get_as(&fans[0].access, &format!("/v1/jobs/{job}?waitSeconds=30"))
        .await;
    assert!(third.headers().contains_key("retry-after"));
    let p = problem(third, 429).await;
    assert_eq!(p["code"], "TOO_MANY_LONG_POLLS", "{p}");
    assert_eq!(p["field"], "waitSeconds", "{p}");
    let plain = app
        .get_as(&fans[0].access, &format!("/v1/jobs/{job}"))
        .await;
    assert_eq!(plain.status(), 200);
    let worker = TestApp::builder().sibling_of(&app).workers(1).spawn().await;
    assert_eq!(
        worker.final_job(&fans[1].access, &others).await["status"],
        "SUCCEEDED"
    );

    // The job finishes: both polls answer it and give their places back.
    for poll in polls {
        let (status, body) = poll.await.unwrap();
        assert_eq!((status, body["status"].as_str()), (200, Some("SUCCEEDED")));
    }
    places_held(&app, &places, 0).await;
}

/// Waits until the user's long-poll places in Redis number `n`.
async fn places_held(app: &TestApp, places: &str, n: i64) {
    eventually(Duration::from_secs(10), || async {
        let held: i64 = redis::cmd("ZCARD")
            .arg(places)
            .query_async(&mut app.redis().await)
            .await
            .unwrap();
        (held == n).then_some(())
    })
    .await;
}

/// Waits until Redis has forgotten the job's status hash (its TTL ran out).
async fn status_expired(app: &TestApp, job: &str) {
    let key = format!("{}:job:{job}", app.redis_prefix());
    eventually(Duration::from_secs(20), || async {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut app.redis().await)
            .await
            .unwrap();
        (exists == 0).then_some(())
    })
    .await;
}

/// Deletes the job's task from its queue, as the workers' vacuum does an hour after it finished.
async fn vacuum_task(app: &TestApp, queue: &str, job: &str) {
    let data = format!("{}_{queue}:data", app.redis_prefix());
    let _: i64 = redis::cmd("HDEL")
        .arg(&data)
        .arg(job)
        .query_async(&mut app.redis().await)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_replay_after_the_status_expired_answers_the_finished_job_and_runs_nothing() {
    let app = TestApp::builder()
        .env("JOB_STATUS_TTL_SECONDS", "1")
        .workers(1)
        .spawn()
        .await;
    let fan = app.active_fan().await;
    let id = TestApp::accepted_job(app.recharge_keyed(&fan, 5_000, Some("top-up")).await).await;
    assert_eq!(app.final_job(&fan.access, &id).await["status"], "SUCCEEDED");
    status_expired(&app, &id).await;

    // The task is still in its queue's data (finished): the replay answers it.
    let replay = app.recharge_keyed(&fan, 5_000, Some("top-up")).await;
    assert_eq!(TestApp::accepted_job(replay).await, id);
    let job = app.job_now(&fan.access, &id).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");

    // Vacuumed too: the answer comes from PostgreSQL, and still nothing runs again.
    status_expired(&app, &id).await;
    vacuum_task(&app, "recharge", &id).await;
    let replay = app.recharge_keyed(&fan, 5_000, Some("top-up")).await;
    assert_eq!(TestApp::accepted_job(replay).await, id);
    assert_eq!(app.backlog("recharge").await, 0, "nothing queued again");
    let job = app.job_now(&fan.access, &id).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["balance"], 5_000, "{job}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM ledger_entries").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_payment_never_ends_the_fans_current_session() {
    let app = TestApp::builder()
        .env("JOB_STATUS_TTL_SECONDS", "1")
        .workers(1)
        .spawn()
        .await;
    let schedule = app.open_concert(1, 1_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let fan = app.active_fan().await;
    let topped = TestApp::accepted_job(app.recharge(&fan, 10_000).await).await;
    app.final_job(&fan.access, &topped).await;
    let hold = TestApp::accepted_job(app.reserve(&fan, schedule, &[7], None).await).await;
    let reservation = app.final_job(&fan.access, &hold).await["result"]["reservationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid = TestApp::accepted_job(pay(&app, &fan.token, &reservation, "pay-once").await).await;
    assert_eq!(
        app.final_job(&fan.access, &paid).await["status"],
        "SUCCEEDED"
    );

    // Paying ended that session; the fan lines up again and is admitted anew.
    let ticket: Value = app.issue_token(&fan.user_id).await.json().await.unwrap();
    assert_eq!(ticket["status"], "ACTIVE", "{ticket}");
    let session = ticket["token"].as_str().unwrap().to_owned();
    assert_ne!(session, fan.token);

    // A late replay of the payment, once its status and task are gone, with the new session.
    status_expired(&app, &paid).await;
    vacuum_task(&app, "pay", &paid).await;
    let replay = pay(&app, &session, &reservation, "pay-once").await;
    assert_eq!(TestApp::accepted_job(replay).await, paid);
    assert_eq!(app.backlog("pay").await, 0, "nothing queued again");
    let job = app.job_now(&fan.access, &paid).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    let current: Value = app
        .get_as(&session, "/v1/queue/tokens/current")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(current["status"], "ACTIVE", "{current}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments").await, 1);
}

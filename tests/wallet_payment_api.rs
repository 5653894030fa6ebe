//! Wallet and payment end to end: recharges, payments, their races, the journey.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::time::{Duration, Instant};

use common::{Fan, TestApp, problem};
use futures::future::join_all;
use serde_json::{Value, json};

/// Recharges `user` with their own access token.
async fn recharge(
    app: &TestApp,
    user: &str,
    amount: Value,
    key: Option<&str>,
) -> reqwest::Response {
    let token = app.access_token(user).await;
    recharge_as(app, &token, user, amount, key).await
}

async fn recharge_as(
    app: &TestApp,
    token: &str,
    user: &str,
    amount: Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(&format!("/v1/users/{user}/balance/recharges")))
        .bearer_auth(token)
        .json(&json!({ "amount": amount }));
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

async fn balance(app: &TestApp, user: &str) -> i64 {
    let token = app.access_token(user).await;
    let body: Value = app
        .get_as(&token, &format!("/v1/users/{user}/balance"))
        .await
        .json()
        .await
        .unwrap();
    body["balance"].as_i64().unwrap()
}

async fn pay(app: &TestApp, fan: &Fan, reservation: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/payments"))
        .bearer_auth(&fan.token)
        .json(&json!({ "reservationId": reservation }))
        .send()
        .await
        .unwrap()
}

/// Tops `fan` up by `amount` and waits for it.
async fn funded(app: &TestApp, fan: &Fan, amount: i64) {
    let job = TestApp::accepted_job(recharge(app, &fan.user_id, json!(amount), None).await).await;
    assert_eq!(
        app.final_job(&fan.access, &job).await["status"],
        "SUCCEEDED"
    );
}

/// A held reservation of `seat` for `fan`; returns its id.
async fn held(app: &TestApp, fan: &Fan, schedule: i64, seat: i64) -> String {
    let job = app
        .final_job(
            &fan.access,
            &TestApp::accepted_job(app.reserve(fan, schedule, &[seat], None).await).await,
        )
        .await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    job["result"]["reservationId"].as_str().unwrap().to_owned()
}

async fn schedule(app: &TestApp, price: i64) -> i64 {
    app.open_concert(1, price).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap()
}

/// Balance == Σ ledger for every user; every sold seat belongs to exactly one paid reservation.
async fn assert_money_invariants(app: &TestApp) {
    let mismatched = app
        .scalar("SELECT count(*) FROM wallets w WHERE w.balance <> (SELECT coalesce(sum(amount), 0) FROM ledger_entries l WHERE l.user_id = w.user_id)")
        .await;
    assert_eq!(mismatched, 0, "a balance disagrees with its ledger");
    let unpaid = app
        .scalar("SELECT count(*) FROM seats s WHERE s.status = 'SOLD' AND (SELECT count(*) FROM payments p WHERE p.reservation_id = s.reservation_id) <> 1")
        .await;
    assert_eq!(unpaid, 0, "a sold seat without exactly one payment");
    let charged = app.scalar("SELECT count(*) FROM payments p JOIN reservations r ON r.id = p.reservation_id WHERE r.status <> 'CONFIRMED'").await;
    assert_eq!(
        charged, 0,
        "a payment for a reservation that is not confirmed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_recharges_never_lose_an_update() {
    // One wallet under 100 concurrent jobs, long-polled at once: the per-user
    // bounds are lifted.
    let app = TestApp::builder()
        .workers(2)
        .env("USER_JOBS_IN_FLIGHT", "0")
        .env("USER_LONG_POLLS_MAX", "0")
        .spawn()
        .await;
    let user = app.sign_up("saver").await;
    let jobs = join_all((0..100).map(|_| async {
        TestApp::accepted_job(recharge(&app, &user, json!(1000), None).await).await
    }))
    .await;
    let token = app.access_token(&user).await;
    let done = join_all(jobs.iter().map(|j| app.final_job(&token, j))).await;
    assert!(
        done.iter().all(|j| j["status"] == "SUCCEEDED"),
        "{:?}",
        done.iter().find(|j| j["status"] != "SUCCEEDED")
    );
    assert_eq!(balance(&app, &user).await, 100_000);
    assert_eq!(
        app.scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'RECHARGE'")
            .await,
        100
    );
    assert_money_invariants(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_recharge_sent_ten_times_at_once_with_one_key_is_applied_once() {
    let app = TestApp::builder().workers(1).spawn().await;
    let user = app.sign_up("double-clicker").await;
    let jobs = join_all((0..10).map(|_| async {
        TestApp::accepted_job(recharge(&app, &user, json!(5000), Some("topup-1")).await).await
    }))
    .await;
    assert!(jobs.iter().all(|j| j == &jobs[0]));
    let token = app.access_token(&user).await;
    assert_eq!(
        app.final_job(&token, &jobs[0]).await["result"]["balance"],
        5000
    );
    assert_eq!(balance(&app, &user).await, 5000);
    let p = problem(
        recharge(&app, &user, json!(6000), Some("topup-1")).await,
        422,
    )
    .await;
    assert_eq!(p["code"], "IDEMPOTENCY_KEY_REUSED");
    assert_money_invariants(&app).await;
}

#[tokio::test]
async fn bad_recharges_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let user = app.sign_up("x").await;
    for amount in [
        json!(0),
        json!(-1),
        json!(10_000_001),
        json!("100"),
        json!(1.5),
        json!(1e20),
    ] {
        let p = problem(recharge(&app, &user, amount.clone(), None).await, 400).await;
        assert_eq!(p["field"], "amount", "{amount}");
    }
    // Another user's id, even with a valid token of one's own, is not found.
    let token = app.access_token(&user).await;
    let other = app.sign_up("other").await;
    for stranger in [uuid::Uuid::new_v4().to_string(), other] {
        let p = problem(
            recharge_as(&app, &token, &stranger, json!(100), None).await,
            404,
        )
        .await;
        assert_eq!(p["code"], "NOT_FOUND");
        let path = format!("/v1/users/{stranger}/balance");
        problem(app.get_as(&token, &path).await, 404).await;
    }
    // No token at all is 401.
    problem(recharge_as(&app, "", &user, json!(100), None).await, 401).await;
    problem(app.get(&format!("/v1/users/{user}/balance")).await, 401).await;
    assert_eq!(app.scalar("SELECT count(*) FROM ledger_entries").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_payments_at_once_with_balance_for_two_confirm_exactly_two() {
    // One fan holds five seats here: lift the per-person cap of four.
    let app = TestApp::builder()
        .workers(1)
        .env("MAX_SEATS_PER_USER", "5")
        .spawn()
        .await;
    let sid = schedule(&app, 2000).await;
    let fan = app.active_fan().await;
    funded(&app, &fan, 5000).await;
    let holds = join_all((1..=5).map(|seat| held(&app, &fan, sid, seat))).await;
    let jobs = join_all(
        holds
            .iter()
            .map(|r| async { TestApp::accepted_job(pay(&app, &fan, r).await).await }),
    )
    .await;
    let done = join_all(jobs.iter().map(|j| app.final_job(&fan.access, j))).await;
    let paid = done.iter().filter(|j| j["status"] == "SUCCEEDED").count();
    let short = done
        .iter()
        .filter(|j| j["error"]["code"] == "INSUFFICIENT_BALANCE")
        .count();
    assert_eq!((paid, short), (2, 3), "{done:?}");
    assert_eq!(balance(&app, &fan.user_id).await, 1000);
    assert_eq!(
        app.scalar("SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'")
            .await,
        2
    );
    assert_money_invariants(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_concurrent_payments_of_one_reservation_make_one_payment() {
    let app = TestApp::builder().workers(2).spawn().await;
    let sid = schedule(&app, 3000).await;
    let fan = app.active_fan().await;
    funded(&app, &fan, 100_000).await;
    let rid = held(&app, &fan, sid, 9).await;
    let jobs = join_all(
        (0..5).map(|_| async { TestApp::accepted_job(pay(&app, &fan, &rid).await).await }),
    )
    .await;
    let done = join_all(jobs.iter().map(|j| app.final_job(&fan.access, j))).await;
    assert_eq!(
        done.iter().filter(|j| j["status"] == "SUCCEEDED").count(),
        1,
        "{done:?}"
    );
    assert!(
        done.iter()
            .filter(|j| j["status"] == "FAILED")
            .all(|j| j["error"]["code"] == "ALREADY_PAID")
    );
    assert_eq!(app.scalar("SELECT count(*) FROM payments").await, 1);
    assert_eq!(balance(&app, &fan.user_id).await, 97_000);
    assert_money_invariants(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_an_expired_hold_fails_and_charges_nothing() {
    let app = TestApp::builder()
        .workers(1)
        .env("HOLD_TTL_SECONDS", "1")
        .spawn()
        .await;
    let sid = schedule(&app, 4000).await;
    let fan = app.active_fan().await;
    funded(&app, &fan, 10_000).await;
    let rid = held(&app, &fan, sid, 4).await;
    let started = Instant::now();
    while app
        .scalar(&format!(
            "SELECT count(*) FROM reservations WHERE id = '{rid}' AND expires_at < now()"
        ))
        .await
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = app
        .final_job(
            &fan.access,
            &TestApp::accepted_job(pay(&app, &fan, &rid).await).await,
        )
        .await;
    assert_eq!(job["error"]["code"], "HOLD_EXPIRED", "{job}");
    assert_eq!(balance(&app, &fan.user_id).await, 10_000);
    assert_money_invariants(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_racing_expiry_never_both_and_never_neither_but_charged() {
    let app = TestApp::builder()
        .workers(2)
        .env("HOLD_TTL_SECONDS", "1")
        .env("WORKER_SWEEP_INTERVAL_SECONDS", "1")
        .spawn()
        .await;
    let sid = schedule(&app, 1000).await;
    let (mut paid, mut expired) = (0, 0);
    for seat in 1..=16 {
        let fan = app.active_fan().await;
        funded(&app, &fan, 1000).await;
        let job = app
            .final_job(
                &fan.access,
                &TestApp::accepted_job(app.reserve(&fan, sid, &[seat], None).await).await,
            )
            .await;
        let rid = job["result"]["reservationId"].as_str().unwrap().to_owned();
        let expires =
            chrono::DateTime::parse_from_rfc3339(job["result"]["expiresAt"].as_str().unwrap())
                .unwrap();
        // Aim the payment across the expiry instant: from 200 ms before to 200 ms after.
        let aim = expires + chrono::Duration::milliseconds(seat * 25 - 200);
        if let Ok(wait) = (aim.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        let outcome = app
            .final_job(
                &fan.access,
                &TestApp::accepted_job(pay(&app, &fan, &rid).await).await,
            )
            .await;
        // Let expiry have its chance too, then read the truth.
        let started = Instant::now();
        let status = loop {
            let confirmed = app
                .scalar(&format!(
                    "SELECT count(*) FROM reservations WHERE id = '{rid}' AND status = 'CONFIRMED'"
                ))
                .await;
            let expired = app
                .scalar(&format!(
                    "SELECT count(*) FROM reservations WHERE id = '{rid}' AND status = 'EXPIRED'"
                ))
                .await;
            if confirmed + expired == 1 {
                break if confirmed == 1 {
                    "CONFIRMED"
                } else {
                    "EXPIRED"
                };
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "reservation {rid} neither paid nor expired"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let payments = app
            .scalar(&format!(
                "SELECT count(*) FROM payments WHERE reservation_id = '{rid}'"
            ))
            .await;
        let left = balance(&app, &fan.user_id).await;
        if status == "CONFIRMED" {
            assert_eq!(
                (outcome["status"].as_str(), payments, left),
                (Some("SUCCEEDED"), 1, 0),
                "round {seat}"
            );
            paid += 1;
        } else {
            assert_eq!(
                (outcome["error"]["code"].as_str(), payments, left),
                (Some("HOLD_EXPIRED"), 0, 1000),
                "round {seat}"
            );
            expired += 1;
        }
    }
    assert_eq!(paid + expired, 16);
    // Aims run from 175 ms before to 200 ms after expiry: both sides must have won some.
    assert!(paid > 0 && expired > 0, "paid {paid}, expired {expired}");
    assert_money_invariants(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_reservation_reads_as_not_found() {
    let app = TestApp::builder().workers(1).spawn().await;
    let sid = schedule(&app, 1000).await;
    let (owner, thief) = (app.active_fan().await, app.active_fan().await);
    funded(&app, &thief, 10_000).await;
    let rid = held(&app, &owner, sid, 1).await;
    let job = app
        .final_job(
            &thief.access,
            &TestApp::accepted_job(pay(&app, &thief, &rid).await).await,
        )
        .await;
    assert_eq!(job["error"]["code"], "RESERVATION_NOT_FOUND");
    assert_eq!(balance(&app, &thief.user_id).await, 10_000);
    let missing = app
        .final_job(
            &thief.access,
            &TestApp::accepted_job(pay(&app, &thief, &uuid::Uuid::new_v4().to_string()).await)
                .await,
        )
        .await;
    assert_eq!(missing["error"]["code"], "RESERVATION_NOT_FOUND");
    assert_money_invariants(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_payment_the_token_is_401_and_the_next_fan_is_admitted() {
    let app = TestApp::builder()
        .workers(1)
        .env("QUEUE_MAX_ACTIVE", "1")
        .spawn()
        .await;
    let sid = schedule(&app, 1000).await;
    let buyer = app.active_fan().await;
    let next_user = app.sign_up("next").await;
    let next: Value = app.issue_token(&next_user).await.json().await.unwrap();
    assert_eq!(next["status"], "WAITING");
    funded(&app, &buyer, 1000).await;
    let rid = held(&app, &buyer, sid, 2).await;
    let job = app
        .final_job(
            &buyer.access,
            &TestApp::accepted_job(pay(&app, &buyer, &rid).await).await,
        )
        .await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(
        (
            job["result"]["amount"].as_i64(),
            job["result"]["balance"].as_i64()
        ),
        (Some(1000), Some(0))
    );
    problem(
        app.get_as(&buyer.token, "/v1/queue/tokens/current").await,
        401,
    )
    .await;
    problem(app.get_as(&buyer.token, "/v1/concerts").await, 401).await;
    let now: Value = app
        .get_as(next["token"].as_str().unwrap(), "/v1/queue/tokens/current")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["status"], "ACTIVE");
    assert_money_invariants(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_hold_is_untouched_by_its_expiry_job() {
    let app = TestApp::builder()
        .workers(1)
        .env("HOLD_TTL_SECONDS", "2")
        .spawn()
        .await;
    let sid = schedule(&app, 1000).await;
    let fan = app.active_fan().await;
    funded(&app, &fan, 1000).await;
    let rid = held(&app, &fan, sid, 3).await;
    assert_eq!(
        app.final_job(
            &fan.access,
            &TestApp::accepted_job(pay(&app, &fan, &rid).await).await
        )
        .await["status"],
        "SUCCEEDED"
    );
    let done = format!("{}_expire_hold:done", app.redis_prefix());
    let mut redis = app.redis().await;
    let started = Instant::now();
    while !redis::cmd("SISMEMBER")
        .arg(&done)
        .arg(&rid)
        .query_async::<bool>(&mut redis)
        .await
        .unwrap()
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the expiry job never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM reservations WHERE id = '{rid}' AND status = 'CONFIRMED'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'SOLD'")
            .await,
        1
    );
    assert_money_invariants(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_walks_the_whole_journey_over_http() {
    let app = TestApp::builder()
        .workers(1)
        .env("QUEUE_MAX_ACTIVE", "1")
        .spawn()
        .await;
    app.open_concert(2, 55_000).await;
    // Someone is ahead in line.
    let ahead = app.active_fan().await;
    // Sign up and top up.
    let user = app.sign_up("Journey Kim").await;
    let topup =
        TestApp::accepted_job(recharge(&app, &user, json!(200_000), Some("first-topup")).await)
            .await;
    let access = app.access_token(&user).await;
    assert_eq!(
        app.final_job(&access, &topup).await["result"]["balance"],
        200_000
    );
    // Get in line and wait to be admitted (the fan ahead leaves).
    let ticket: Value = app.issue_token(&user).await.json().await.unwrap();
    assert_eq!(
        (ticket["status"].as_str(), ticket["position"].as_u64()),
        (Some("WAITING"), Some(1))
    );
    let token = ticket["token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.http
            .delete(app.url("/v1/queue/tokens/current"))
            .bearer_auth(&ahead.token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let started = Instant::now();
    loop {
        let t: Value = app
            .get_as(&token, "/v1/queue/tokens/current")
            .await
            .json()
            .await
            .unwrap();
        if t["status"] == "ACTIVE" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never admitted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fan = Fan {
        user_id: user.clone(),
        access,
        token: token.clone(),
    };
    // Browse dates and seats.
    let concerts: Value = app
        .get_as(&token, "/v1/concerts")
        .await
        .json()
        .await
        .unwrap();
    let cid = &concerts["items"][0]["concertId"];
    let dates: Value = app
        .get_as(&token, &format!("/v1/concerts/{cid}/schedules"))
        .await
        .json()
        .await
        .unwrap();
    let sid = dates["items"][1]["scheduleId"].as_i64().unwrap();
    let seats: Value = app
        .get_as(&token, &format!("/v1/schedules/{sid}/seats"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seats["items"][19]["status"], "AVAILABLE");
    // Reserve two seats and poll.
    let hold = app
        .final_job(
            &fan.token,
            &TestApp::accepted_job(app.reserve(&fan, sid, &[20, 21], Some("r-1")).await).await,
        )
        .await;
    assert_eq!(hold["status"], "SUCCEEDED", "{hold}");
    let rid = hold["result"]["reservationId"].as_str().unwrap().to_owned();
    // Pay and poll.
    let paid = app
        .final_job(
            &fan.access,
            &TestApp::accepted_job(pay(&app, &fan, &rid).await).await,
        )
        .await;
    assert_eq!(
        (paid["status"].as_str(), paid["result"]["amount"].as_i64()),
        (Some("SUCCEEDED"), Some(110_000))
    );
    assert_eq!(balance(&app, &user).await, 90_000);
    // The seats show SOLD (read by a new token: the paying one has expired).
    problem(app.get_as(&token, "/v1/concerts").await, 401).await;
    let viewer = app.active_fan().await;
    let seats: Value = app
        .get_as(&viewer.token, &format!("/v1/schedules/{sid}/seats"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            seats["items"][19]["status"].as_str(),
            seats["items"][20]["status"].as_str()
        ),
        (Some("SOLD"), Some("SOLD"))
    );
    assert_money_invariants(&app).await;
}

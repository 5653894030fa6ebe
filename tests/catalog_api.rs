//! Catalog reads: seat counts and effective seat statuses.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use common::{Fan, TestApp, problem};
use sea_orm::ConnectionTrait;
use serde_json::Value;

async fn seats(app: &TestApp, fan: &Fan, schedule_id: &Value) -> Vec<Value> {
    let body: Value = app
        .get_as(&fan.token, &format!("/v1/schedules/{schedule_id}/seats"))
        .await
        .json()
        .await
        .unwrap();
    body["items"].as_array().unwrap().clone()
}

/// Holds seat `number` of schedule `schedule` with an expiry `interval` from now (negative = overdue).
async fn hold(app: &TestApp, schedule: i64, number: i16, interval: &str, status: &str) {
    let sql = format!(
        "WITH u AS (INSERT INTO users (id, name) VALUES (gen_random_uuid(), 'f') RETURNING id),
              r AS (INSERT INTO reservations (id, user_id, schedule_id, status, total_price, expires_at, job_id)
                    SELECT gen_random_uuid(), id, {schedule}, 'HELD', 1, now() + interval '{interval}', gen_random_uuid() FROM u RETURNING id)
         UPDATE seats SET status = '{status}', reservation_id = (SELECT id FROM r),
                hold_expires_at = CASE WHEN '{status}' = 'HELD' THEN now() + interval '{interval}' END
         WHERE schedule_id = {schedule} AND number = {number}"
    );
    app.db.execute_unprepared(&sql).await.unwrap();
}

#[tokio::test]
async fn a_new_schedule_lists_seats_1_to_50_all_available() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    let concert = app.open_concert(1, 30000).await;
    let seats = seats(&app, &fan, &concert["schedules"][0]["scheduleId"]).await;
    let numbers: Vec<i64> = seats
        .iter()
        .map(|s| s["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=50).collect::<Vec<_>>());
    assert!(
        seats
            .iter()
            .all(|s| s["status"] == "AVAILABLE" && s["price"] == 30000)
    );
}

#[tokio::test]
async fn held_sold_and_overdue_seats_show_their_effective_status_and_counts() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    let concert = app.open_concert(1, 30000).await;
    let sid = concert["schedules"][0]["scheduleId"].as_i64().unwrap();
    hold(&app, sid, 1, "5 minutes", "HELD").await;
    hold(&app, sid, 2, "-1 second", "HELD").await; // overdue: counts as available
    hold(&app, sid, 3, "5 minutes", "SOLD").await;
    let seats = seats(&app, &fan, &Value::from(sid)).await;
    let status = |n: usize| seats[n - 1]["status"].as_str().unwrap().to_owned();
    assert_eq!(
        (status(1), status(2), status(3), status(4)),
        (
            "HELD".into(),
            "AVAILABLE".into(),
            "SOLD".into(),
            "AVAILABLE".into()
        )
    );
    let cid = &concert["concertId"];
    let schedules: Value = app
        .get_as(&fan.token, &format!("/v1/concerts/{cid}/schedules"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(schedules["items"][0]["totalSeats"], 50);
    assert_eq!(schedules["items"][0]["availableSeats"], 48);
}

#[tokio::test]
async fn a_schedule_not_yet_open_for_booking_has_no_available_seats() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now();
    let concert = app
        .create_concert(&serde_json::json!({
            "title": "Later",
            "schedules": [{
                "startsAt": now + chrono::Duration::days(30),
                "bookingOpensAt": now + chrono::Duration::days(1),
                "bookingClosesAt": now + chrono::Duration::days(29),
                "seatPrice": 1000
            }]
        }))
        .await;
    let schedule = &concert["schedules"][0];
    assert_eq!(schedule["bookingOpen"], false);
    assert_eq!(schedule["availableSeats"], 0);
    assert_eq!(schedule["totalSeats"], 50);
}

#[tokio::test]
async fn concerts_and_schedules_are_listed_in_order() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    app.open_concert(3, 1000).await;
    app.open_concert(1, 2000).await;
    let concerts: Value = app
        .get_as(&fan.token, "/v1/concerts")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(concerts["items"].as_array().unwrap().len(), 2);
    let first = &concerts["items"][0]["concertId"];
    let schedules: Value = app
        .get_as(&fan.token, &format!("/v1/concerts/{first}/schedules"))
        .await
        .json()
        .await
        .unwrap();
    let starts: Vec<&str> = schedules["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["startsAt"].as_str().unwrap())
        .collect();
    assert_eq!(starts.len(), 3);
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
}

#[tokio::test]
async fn unknown_concerts_and_schedules_are_404() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    assert_eq!(
        problem(
            app.get_as(&fan.token, "/v1/concerts/999/schedules").await,
            404
        )
        .await["code"],
        "NOT_FOUND"
    );
    assert_eq!(
        problem(app.get_as(&fan.token, "/v1/schedules/999/seats").await, 404).await["code"],
        "NOT_FOUND"
    );
}

//! Operator API: the admin token guards concert creation.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use common::{TestApp, problem};
use serde_json::json;

fn concert() -> serde_json::Value {
    let now = chrono::Utc::now();
    json!({
        "title": "Spring Tour",
        "schedules": [{
            "startsAt": now + chrono::Duration::days(3),
            "bookingOpensAt": now - chrono::Duration::hours(1),
            "bookingClosesAt": now + chrono::Duration::days(2),
            "seatPrice": 80000
        }]
    })
}

#[tokio::test]
async fn creating_a_concert_without_the_admin_token_is_401() {
    let app = TestApp::spawn().await;
    let resp = app.post_json("/v1/admin/concerts", &concert()).await;
    let body = problem(resp, 401).await;
    assert_eq!(body["code"], "UNAUTHORIZED");
    assert_eq!(body["field"], "Authorization");
}

#[tokio::test]
async fn creating_a_concert_with_a_wrong_token_is_401_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    let resp = app
        .http
        .post(app.url("/v1/admin/concerts"))
        .bearer_auth("not-the-token")
        .json(&concert())
        .send()
        .await
        .unwrap();
    problem(resp, 401).await;
    let list: serde_json::Value = app
        .get_as(&fan.token, "/v1/concerts")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_admin_creates_a_concert_whose_schedules_have_50_free_seats() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    let resp = app.admin_post("/v1/admin/concerts", &concert()).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(created["title"], "Spring Tour");
    let schedule = &created["schedules"][0];
    assert_eq!(schedule["totalSeats"], 50);
    assert_eq!(schedule["availableSeats"], 50);
    assert_eq!(schedule["seatPrice"], 80000);
    let listed: serde_json::Value = app
        .get_as(&fan.token, &location)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["scheduleId"], schedule["scheduleId"]);
}

#[tokio::test]
async fn an_invalid_concert_names_the_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    let mut body = concert();
    body["schedules"][0]["bookingClosesAt"] = body["schedules"][0]["bookingOpensAt"].clone();
    let p = problem(app.admin_post("/v1/admin/concerts", &body).await, 400).await;
    assert_eq!(p["field"], "schedules[0].bookingClosesAt");
    let mut body = concert();
    body["schedules"][0]["seatPrice"] = json!(10_000_001);
    let p = problem(app.admin_post("/v1/admin/concerts", &body).await, 400).await;
    assert_eq!(p["field"], "seatPrice");
    let p = problem(
        app.admin_post(
            "/v1/admin/concerts",
            &json!({"title": "x", "schedules": []}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(p["field"], "schedules");
    let list: serde_json::Value = app
        .get_as(&fan.token, "/v1/concerts")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

//! Bad input: always a 4xx problem+json naming the field, never a 5xx, nothing written.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use common::{TestApp, problem};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

async fn user_count(app: &TestApp) -> u64 {
    entity::users::Entity::find().count(&app.db).await.unwrap()
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_body() {
    let app = TestApp::spawn().await;
    let p = problem(
        post_raw(&app, "/v1/users", "application/json", "{\"name\": ").await,
        400,
    )
    .await;
    assert_eq!(p["field"], "body");
    assert_eq!(p["code"], "VALIDATION_FAILED");
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn a_wrong_type_is_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let p = problem(app.post_json("/v1/users", &json!({"name": 42})).await, 400).await;
    assert_eq!(p["field"], "name");
    let p = problem(
        app.post_json("/v1/users", &json!(["not", "an", "object"]))
            .await,
        400,
    )
    .await;
    assert_eq!(p["field"], "body");
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn a_missing_or_blank_field_is_400_naming_it() {
    let app = TestApp::spawn().await;
    assert_eq!(
        problem(app.post_json("/v1/users", &json!({})).await, 400).await["field"],
        "name"
    );
    assert_eq!(
        problem(
            app.post_json("/v1/users", &json!({"name": "   "})).await,
            400
        )
        .await["field"],
        "name"
    );
    assert_eq!(
        problem(
            app.post_json("/v1/users", &json!({"name": "x".repeat(101)}))
                .await,
            400
        )
        .await["field"],
        "name"
    );
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn out_of_range_numbers_are_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    let now = chrono::Utc::now();
    let schedule = |price: serde_json::Value| {
        json!({"title": "t", "schedules": [{
            "startsAt": now + chrono::Duration::days(3),
            "bookingOpensAt": now,
            "bookingClosesAt": now + chrono::Duration::days(2),
            "seatPrice": price}]})
    };
    for price in [
        json!(0),
        json!(-5),
        json!(10_000_001),
        json!(1e30),
        json!(1.5),
    ] {
        let p = problem(
            app.admin_post("/v1/admin/concerts", &schedule(price.clone()))
                .await,
            400,
        )
        .await;
        assert!(
            p["field"].as_str().unwrap().ends_with("seatPrice"),
            "{price}: {p}"
        );
    }
    let p = problem(
        app.get_as(&fan.token, "/v1/concerts/99999999999999999999/schedules")
            .await,
        400,
    )
    .await;
    assert_eq!(p["field"], "concertId");
}

#[tokio::test]
async fn malformed_and_unknown_ids_are_400_and_404() {
    let app = TestApp::spawn().await;
    let fan = app.active_fan().await;
    assert_eq!(
        problem(app.get_as(&fan.access, "/v1/users/not-a-uuid").await, 400).await["field"],
        "userId"
    );
    assert_eq!(
        problem(app.get_as(&fan.token, "/v1/schedules/abc/seats").await, 400).await["field"],
        "scheduleId"
    );
    let p = problem(
        app.get_as(&fan.access, &format!("/v1/users/{}", uuid::Uuid::new_v4()))
            .await,
        404,
    )
    .await;
    assert_eq!(p["code"], "NOT_FOUND");
}

#[tokio::test]
async fn an_oversized_body_is_413_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let big = format!(
        "{{\"name\": \"{}\"}}",
        "a".repeat(app.config.api_body_limit_bytes)
    );
    let p = problem(
        post_raw(&app, "/v1/users", "application/json", big.clone()).await,
        413,
    )
    .await;
    assert_eq!(p["field"], "body");
    // Without a Content-Length (chunked) the limit still holds.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(big.into_bytes())]);
    let resp = post_raw(
        &app,
        "/v1/users",
        "application/json",
        reqwest::Body::wrap_stream(stream),
    )
    .await;
    problem(resp, 413).await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415_naming_the_content_type() {
    let app = TestApp::spawn().await;
    let p = problem(
        post_raw(&app, "/v1/users", "text/plain", "name=x").await,
        415,
    )
    .await;
    assert_eq!(p["field"], "Content-Type");
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_json() {
    let app = TestApp::spawn().await;
    assert_eq!(
        problem(app.get("/v1/nowhere").await, 404).await["code"],
        "ROUTE_NOT_FOUND"
    );
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    // The long-poll's bounds are in the document as the service enforces them (#27).
    let wait = spec["paths"]["/v1/jobs/{jobId}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "waitSeconds")
        .unwrap();
    assert_eq!(
        (
            wait["schema"]["minimum"].as_f64(),
            wait["schema"]["maximum"].as_f64()
        ),
        (Some(0.0), Some(30.0))
    );
    // Every Idempotency-Key declares the rule the service checks: 1–128 visible ASCII.
    let mut keyed = 0;
    for operation in spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
    {
        let params = operation["parameters"].as_array().into_iter().flatten();
        for key in params.filter(|p| p["name"] == "Idempotency-Key") {
            let schema = &key["schema"];
            assert_eq!(schema["maxLength"], 128, "{key}");
            assert_eq!(schema["minLength"], 1, "{key}");
            assert_eq!(schema["pattern"], r"^[\x21-\x7E]+$", "{key}");
            keyed += 1;
        }
    }
    assert_eq!(keyed, 3, "reserve, recharge and pay take a key");
    for (path, template) in [
        ("/v1/concerts", "/v1/concerts"),
        (
            "/v1/jobs/0193a0c4-1a2b-7c3d-8e4f-5a6b7c8d9e0f",
            "/v1/jobs/{jobId}",
        ),
    ] {
        let resp = app.http.delete(app.url(path)).send().await.unwrap();
        // RFC 9110 §15.5.6: a 405 lists the methods the resource has.
        let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
        let mut allowed: Vec<&str> = allow.split(", ").collect();
        let mut documented: Vec<String> = spec["paths"][template]
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        allowed.sort_unstable();
        documented.sort_unstable();
        assert!(!allowed.contains(&"DELETE"), "{path}: {allow}");
        assert_eq!(allowed, documented, "{path}");
        assert_eq!(problem(resp, 405).await["code"], "METHOD_NOT_ALLOWED");
    }
}

#[tokio::test]
async fn a_valid_sign_up_creates_exactly_one_user_with_an_empty_wallet() {
    let app = TestApp::spawn().await;
    let resp = app
        .post_json("/v1/users", &json!({"name": "  Kim  "}))
        .await;
    assert_eq!(resp.status(), 201);
    let user: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(user["name"], "Kim");
    let id = user["userId"].as_str().unwrap();
    let access = user["accessToken"].as_str().unwrap();
    assert!(user["accessTokenExpiresAt"].is_string(), "{user}");
    let fetched: serde_json::Value = app
        .get_as(access, &format!("/v1/users/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["userId"], id);
    let wallet = entity::wallets::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wallet.balance, 0);
    assert_eq!(user_count(&app).await, 1);
}

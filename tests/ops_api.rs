//! Health, readiness, docs and request ids.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use common::TestApp;

#[tokio::test]
async fn health_is_200_and_ready_is_200_with_both_services_up() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health").await.status(), 200);
    let resp = app.get("/ready").await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (body["postgres"].as_str(), body["redis"].as_str()),
        (Some("up"), Some("up"))
    );
}

#[tokio::test]
async fn ready_is_503_when_redis_is_down() {
    // Nothing listens on port 1: a real, unreachable Redis.
    let app = TestApp::builder()
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .spawn()
        .await;
    let resp = app.get("/ready").await;
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (body["postgres"].as_str(), body["redis"].as_str()),
        (Some("up"), Some("down"))
    );
    assert_eq!(
        app.get("/health").await.status(),
        200,
        "liveness does not depend on Redis"
    );
}

#[tokio::test]
async fn ready_is_503_when_postgres_is_down() {
    let app = TestApp::builder()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .spawn()
        .await;
    let resp = app.get("/ready").await;
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (body["postgres"].as_str(), body["redis"].as_str()),
        (Some("down"), Some("up"))
    );
}

#[tokio::test]
async fn a_request_to_a_down_database_is_a_retryable_503_problem() {
    let app = TestApp::builder()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .spawn()
        .await;
    // A well-formed caller, so the request gets as far as the database.
    let user = uuid::Uuid::new_v4();
    let identity = domain::identity::Identity::from_config(&app.config).unwrap();
    let access = identity.mint(user).unwrap().token;
    let body = common::problem(app.get_as(&access, &format!("/v1/users/{user}")).await, 503).await;
    assert_eq!(body["code"], "UNAVAILABLE");
}

#[tokio::test]
async fn swagger_ui_and_the_spec_document_every_endpoint() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/docs").await.status(), 200);
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/v1/users",
        "/v1/users/{userId}",
        "/v1/admin/concerts",
        "/v1/concerts",
        "/v1/concerts/{concertId}/schedules",
        "/v1/schedules/{scheduleId}/seats",
        "/health",
        "/ready",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    assert!(spec["components"]["securitySchemes"]["AdminAuth"].is_object());
    assert!(spec["components"]["schemas"]["Problem"].is_object());
    // Swagger UI's Authorize dialog offers the queue token, and the guarded
    // operations declare it, so a person can authorize and call them.
    let scheme = &spec["components"]["securitySchemes"]["QueueToken"];
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
    for path in [
        "/v1/concerts",
        "/v1/concerts/{concertId}/schedules",
        "/v1/schedules/{scheduleId}/seats",
        "/v1/queue/tokens/current",
    ] {
        let security = &spec["paths"][path]["get"]["security"];
        assert!(
            security.to_string().contains("QueueToken"),
            "{path}: {security}"
        );
    }
    // The access token is offered too, and declared by every user-scoped operation.
    let access = &spec["components"]["securitySchemes"]["AccessToken"];
    assert_eq!(
        (access["scheme"].as_str(), access["bearerFormat"].as_str()),
        (Some("bearer"), Some("JWT"))
    );
    for (path, method) in [
        ("/v1/queue/tokens", "post"),
        ("/v1/users/{userId}", "get"),
        ("/v1/users/{userId}/balance", "get"),
        ("/v1/users/{userId}/balance/recharges", "post"),
    ] {
        let security = spec["paths"][path][method]["security"].to_string();
        assert!(security.contains("AccessToken"), "{path}: {security}");
    }
    // A job is read with either token: two alternatives in the document.
    let security = &spec["paths"]["/v1/jobs/{jobId}"]["get"]["security"];
    assert_eq!(
        security,
        &serde_json::json!([{ "AccessToken": [] }, { "QueueToken": [] }])
    );
    assert!(
        spec["paths"]["/v1/users"]["post"]["security"].is_null(),
        "signing up needs no token"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sane_incoming_one_is_kept() {
    let app = TestApp::spawn().await;
    let resp = app.get("/v1/nowhere").await;
    assert!(!resp.headers()["x-request-id"].is_empty());
    let resp = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "x".repeat(200))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "x".repeat(200).as_str());
}

//! Sign-up and access-token minting are limited per client address
//! (`SIGNUP_PER_MINUTE_PER_ADDRESS`), across api processes, before anything is
//! written; behind a trusted proxy the address it appended is the client's.
//!
//! The harness turns the limit off; every test here sets it. Nothing waits for
//! the window to pass: what is asserted is what a full window refuses.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use common::{TestApp, problem};
use domain::ops::metrics as m;

/// `POST /v1/users` to `app`, with an `X-Forwarded-For` line when given.
async fn sign_up_via(app: &TestApp, forwarded: Option<&str>) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url("/v1/users"))
        .json(&serde_json::json!({ "name": "fan" }));
    if let Some(forwarded) = forwarded {
        req = req.header("X-Forwarded-For", forwarded);
    }
    req.send().await.unwrap()
}

async fn mint(app: &TestApp, user_id: &str) -> reqwest::Response {
    app.admin_post(
        &format!("/v1/admin/users/{user_id}/access-tokens"),
        &serde_json::json!({}),
    )
    .await
}

/// A 429 `RATE_LIMITED` problem whose `Retry-After` is within the window.
async fn assert_rate_limited(resp: reqwest::Response) {
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body = problem(resp, 429).await;
    assert_eq!(body["code"], "RATE_LIMITED", "{body}");
}

/// The value of `concert_rate_limited_total{what}` in `app`'s scrape.
async fn refused(app: &TestApp, what: &str) -> f64 {
    let series = format!(r#"{}{{what="{what}"}} "#, m::RATE_LIMITED);
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.parse().unwrap())
}

fn limited(limit: u32) -> common::TestAppBuilder {
    TestApp::builder().env("SIGNUP_PER_MINUTE_PER_ADDRESS", limit.to_string())
}

#[tokio::test]
async fn the_sign_up_past_the_limit_is_refused_before_a_user_or_wallet_is_written() {
    let app = limited(3).spawn().await;
    let before = refused(&app, "signup").await;
    for _ in 0..3 {
        assert_eq!(sign_up_via(&app, None).await.status(), 201);
    }
    assert_rate_limited(sign_up_via(&app, None).await).await;
    assert_eq!(app.scalar("SELECT count(*) FROM users").await, 3);
    assert_eq!(app.scalar("SELECT count(*) FROM wallets").await, 3);
    assert!(refused(&app, "signup").await - before >= 1.0);
    // The count lives in Redis for one window at most.
    let key = format!("{}:rate:signup:127.0.0.1", app.redis_prefix());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut app.redis().await)
        .await
        .unwrap();
    assert!((1..=60_000).contains(&ttl), "{key} PTTL {ttl}");
}

#[tokio::test]
async fn two_api_processes_share_one_budget_per_address() {
    let a = limited(5).spawn().await;
    let b = limited(5).sibling_of(&a).spawn().await;
    let answers = futures::future::join_all(
        (0..20).map(|i| sign_up_via(if i % 2 == 0 { &a } else { &b }, None)),
    )
    .await;
    let created = answers.iter().filter(|r| r.status() == 201).count();
    let refused = answers.iter().filter(|r| r.status() == 429).count();
    assert_eq!((created, refused), (5, 15));
    assert_eq!(a.scalar("SELECT count(*) FROM users").await, 5);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_address_it_appended_is_the_client() {
    let app = limited(3)
        .env("TRUSTED_PROXY_HEADER", "X-Forwarded-For")
        .spawn()
        .await;
    for _ in 0..3 {
        let resp = sign_up_via(&app, Some("203.0.113.7")).await;
        assert_eq!(resp.status(), 201);
    }
    // A forged first entry does not buy a fresh budget: the proxy's entry is last.
    assert_rate_limited(sign_up_via(&app, Some("198.51.100.1, 203.0.113.7")).await).await;
    // Another client behind the same proxy, and the peer itself, are served.
    assert_eq!(sign_up_via(&app, Some("203.0.113.8")).await.status(), 201);
    assert_eq!(sign_up_via(&app, None).await.status(), 201);
    assert_eq!(app.scalar("SELECT count(*) FROM users").await, 5);
}

#[tokio::test]
async fn without_a_trusted_proxy_a_forwarded_header_is_ignored() {
    let app = limited(1).spawn().await;
    assert_eq!(sign_up_via(&app, None).await.status(), 201);
    assert_rate_limited(sign_up_via(&app, Some("203.0.113.9")).await).await;
    assert_eq!(app.scalar("SELECT count(*) FROM users").await, 1);
}

#[tokio::test]
async fn the_admin_mint_is_limited_per_address_on_a_budget_of_its_own() {
    let app = limited(3).spawn().await;
    let before = refused(&app, "mint").await;
    let user = app.sign_up("minted").await;
    for _ in 0..3 {
        assert_eq!(mint(&app, &user).await.status(), 201);
    }
    assert_rate_limited(mint(&app, &user).await).await;
    assert!(refused(&app, "mint").await - before >= 1.0);
    // Sign-ups from the same address count apart: one used, two left.
    assert_eq!(sign_up_via(&app, None).await.status(), 201);
}

#[tokio::test]
async fn with_redis_down_a_limited_sign_up_is_a_503_and_writes_nothing() {
    let app = limited(3)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .spawn()
        .await;
    let body = problem(sign_up_via(&app, None).await, 503).await;
    assert_eq!(body["code"], "UNAVAILABLE");
    assert_eq!(app.scalar("SELECT count(*) FROM users").await, 0);
}

#[tokio::test]
async fn with_the_limit_off_sign_up_does_not_need_redis() {
    let app = limited(0)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .spawn()
        .await;
    assert_eq!(sign_up_via(&app, None).await.status(), 201);
    assert_eq!(app.scalar("SELECT count(*) FROM users").await, 1);
}

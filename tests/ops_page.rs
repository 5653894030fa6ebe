//! The `/ops` page in a real browser (headless Chromium over WebDriver) while a
//! small load runs against the real api, worker, PostgreSQL and Redis: the
//! numbers it shows move. Saves docs/screenshots/ops.png (with `UPDATE_SCREENSHOTS=1`).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{TestApp, browser::Driver};

/// Keeps the stack busy until `stop`: new fans get in line (a short line forms:
/// 3 slots, 3-second sessions, 2 admissions a second) and each recharges.
async fn load(app: Arc<TestApp>, stop: Arc<AtomicBool>) {
    // Pacing of a load generator, not synchronisation: one new fan every 150 ms.
    let mut pace = tokio::time::interval(Duration::from_millis(150));
    let mut waiting = Vec::new();
    let mut n = 0_u32;
    while !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        n += 1;
        let user = app.sign_up(&format!("fan {n}")).await;
        let ticket: serde_json::Value = app.issue_token(&user).await.json().await.unwrap();
        if let Some(token) = ticket["token"].as_str() {
            waiting.push(token.to_owned());
        }
        let access = app.access_token(&user).await;
        let resp = app
            .http
            .post(app.url(&format!("/v1/users/{user}/balance/recharges")))
            .bearer_auth(access)
            .json(&serde_json::json!({ "amount": 1_000 }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        // Waiting fans poll, as the fan app does, so they stay in line and it advances.
        let polled = waiting.len().min(5);
        for token in waiting.iter().rev().take(polled) {
            let _ = app.get_as(token, "/v1/queue/tokens/current").await;
        }
    }
}

fn number(text: &str) -> f64 {
    text.trim().parse().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ops_page_shows_the_stack_moving() {
    let app = Arc::new(
        TestApp::builder()
            .env("QUEUE_MAX_ACTIVE", "3")
            .env("QUEUE_ADMIT_PER_SECOND", "2")
            .env("QUEUE_ACTIVE_TTL_SECONDS", "3")
            .workers(1)
            .spawn()
            .await,
    );
    let driver = Driver::start().await;
    let page = driver.session(1280, 1000).await;

    // The shell is public; without a token it asks for one.
    page.goto(&app.url("/ops")).await;
    assert_eq!(page.client.title().await.unwrap(), "Operations · concert");
    page.wait_text("#status", "admin token").await;

    // A wrong token is refused, and says so.
    page.type_text("#token", "not-the-token").await;
    page.click("#save").await;
    page.wait_text("#status", "refused").await;

    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(Arc::clone(&app), Arc::clone(&stop)));

    page.client
        .execute("document.getElementById('token').value = ''", vec![])
        .await
        .unwrap();
    page.type_text("#token", &app.config.admin_token).await;
    page.click("#save").await;
    page.wait_text("#status", "Live").await;
    let first_at = page
        .wait_js("a first snapshot", "Number(document.body.dataset.at)")
        .await;
    let first_at = first_at.as_f64().unwrap();
    let stored = page.eval("sessionStorage.getItem('opsToken')").await;
    assert_eq!(stored.as_str(), Some(app.config.admin_token.as_str()));

    // The numbers move: a line forms, fans are admitted, jobs settle.
    page.wait_js(
        "the line, admissions, jobs and settle times to show",
        "Number(document.getElementById('waiting').textContent) > 0 \
         && Number(document.getElementById('active').textContent) > 0 \
         && Number(document.getElementById('admissions').textContent) > 0 \
         && Number(document.getElementById('succeeded').textContent) > 0 \
         && document.getElementById('p99').textContent !== '–'",
    )
    .await;
    assert_eq!(page.find_all("#queues tr").await.len(), 4);
    // Charts draw lines, and the page keeps refreshing (Redis-clock seconds advance).
    page.wait_js(
        "ten seconds of data drawn",
        &format!(
            "Number(document.body.dataset.at) >= {} \
             && document.querySelectorAll('#chart-jobs polyline').length > 0 \
             && document.querySelectorAll('#chart-line polyline').length > 0",
            first_at + 10.0
        ),
    )
    .await;
    let eta = page.text("#eta").await;
    assert_ne!(eta, "–", "an ETA is shown for the last in line");
    assert!(number(&page.text("#succeeded").await) > 0.0);
    page.screenshot(common::browser::screenshot_path("ops.png"))
        .await;

    // A reload keeps the token for the tab's life (sessionStorage) and resumes.
    page.client.refresh().await.unwrap();
    page.wait_text("#status", "Live").await;

    stop.store(true, Ordering::Relaxed);
    loader.await.unwrap();
    page.close().await;
}

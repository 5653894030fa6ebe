//! The fan web app (`api/web/`, served at `/`) in a real browser: headless
//! Chromium over WebDriver, against the real api, workers, PostgreSQL and Redis.
//! The screenshots in docs/screenshots/web-*.png are taken by this test
//! (`UPDATE_SCREENSHOTS=1` writes them there; otherwise into the build's scratch directory).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use common::{
    TestApp,
    browser::{Browser, Driver},
};
use fantoccini::key::Key;

const PRICE: i64 = 50_000;

fn shot(name: &str) -> std::path::PathBuf {
    common::browser::screenshot_path(name)
}

/// The seat map's button for seat `n`.
fn seat(n: u8) -> String {
    format!("#seat-map button[data-seat=\"{n}\"]")
}

/// The status a seat shows on the page (AVAILABLE, HELD, SOLD or MINE).
fn seat_status_is(n: u8, status: &str) -> String {
    format!(
        "document.querySelector('#seat-map button[data-seat=\"{n}\"]').dataset.status === '{status}'"
    )
}

/// What a reserve ended as on the page: `HELD`, or the error code shown.
const OUTCOME: &str = "(() => {
    if (!document.getElementById('step-hold').hidden) return 'HELD';
    if (!document.getElementById('error').hidden) return document.getElementById('error-code').textContent;
    return null;
})()";

/// Signs `name` up, joins the line and waits for the 50-seat map.
async fn sign_up_and_get_in(fan: &Browser, app: &TestApp, name: &str) -> String {
    fan.goto(&app.url("/")).await;
    assert_eq!(fan.client.title().await.unwrap(), "Concert tickets");
    fan.type_text("#name", name).await;
    fan.click("#signup").await;
    fan.wait_visible("#join").await;
    assert_eq!(fan.text("#whoami").await, format!("Signed in as {name}"));
    fan.click("#join").await;
    fan.wait_text("#queue-status", "You're in!").await;
    fan.wait_js(
        "the seat map to load",
        "document.querySelectorAll('#seat-map .seat[data-status=\"AVAILABLE\"]').length === 50 \
         && document.getElementById('seat-map').getAttribute('aria-busy') === 'false'",
    )
    .await;
    // The access token lives in sessionStorage, and is the one the API issued.
    let user = fan
        .eval("JSON.parse(sessionStorage.getItem('concert.user'))")
        .await;
    assert!(
        user["accessToken"].as_str().unwrap().starts_with("eyJ"),
        "{user}"
    );
    user["userId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_fans_race_for_one_seat_then_the_winner_pays_and_the_next_fan_is_let_in() {
    // Two fans at a time, so a third waits in line until a payment frees a slot.
    let app = TestApp::builder()
        .env("QUEUE_MAX_ACTIVE", "2")
        .workers(1)
        .spawn()
        .await;
    let concert = app.open_concert(1, PRICE).await;
    let schedule_id = concert["schedules"][0]["scheduleId"].as_i64().unwrap();

    let driver = Driver::start().await;
    // One fan on a laptop, one on a 360 px phone, one who comes third.
    let (ana, ben, cleo) = tokio::join!(
        driver.session(1024, 1150),
        driver.session(360, 780),
        driver.session(800, 520),
    );

    // Sign up, get in line (room to spare: both are admitted at once), see the map.
    ana.goto(&app.url("/")).await;
    ana.type_text("#name", "Ana").await;
    ana.screenshot(shot("web-1-sign-up.png")).await;
    let (ana_id, ben_id) = tokio::join!(
        sign_up_and_get_in(&ana, &app, "Ana"),
        sign_up_and_get_in(&ben, &app, "Ben"),
    );

    // Cleo comes third: both slots are taken, so she waits, first in line.
    cleo.goto(&app.url("/")).await;
    cleo.type_text("#name", "Cleo").await;
    cleo.click("#signup").await;
    cleo.wait_visible("#join").await;
    cleo.click("#join").await;
    assert_eq!(
        cleo.wait_visible("#queue-position")
            .await
            .text()
            .await
            .unwrap(),
        "#1"
    );
    let eta = cleo.text("#queue-eta").await;
    assert!(
        eta.starts_with("You are number 1 in line. Estimated wait: about"),
        "{eta}"
    );
    assert!(cleo.find_all("#step-seats:not([hidden])").await.is_empty());
    cleo.screenshot(shot("web-2-in-line.png")).await;

    // The phone layout fits 360 px: nothing scrolls sideways.
    let fits = ben
        .eval("document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(fits, true, "the page is wider than a 360 px screen");

    // Both choose seat 7.
    for fan in [&ana, &ben] {
        fan.click(&seat(7)).await;
        assert_eq!(
            fan.attr(&seat(7), "aria-pressed").await.as_deref(),
            Some("true")
        );
        fan.wait_text("#selection", "Selected seat 7").await;
    }
    ana.screenshot(shot("web-3-seat-map.png")).await;
    ben.eval("document.getElementById('seat-map').scrollIntoView({block: 'center'})")
        .await;
    ben.screenshot(shot("web-4-seat-map-phone.png")).await;

    // They click Reserve at the same moment: exactly one gets the seat.
    tokio::join!(ana.click("#reserve"), ben.click("#reserve"));
    let (a, b) = tokio::join!(
        ana.wait_js("Ana's reserve outcome", OUTCOME),
        ben.wait_js("Ben's reserve outcome", OUTCOME),
    );
    let mut outcomes = [a.as_str().unwrap(), b.as_str().unwrap()];
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        ["HELD", "SEAT_UNAVAILABLE"],
        "one hold, one refusal"
    );
    let (winner, winner_id, loser, loser_id) = if a == "HELD" {
        (&ana, &ana_id, &ben, &ben_id)
    } else {
        (&ben, &ben_id, &ana, &ana_id)
    };

    // The loser reads the problem: its code and the API's detail.
    let detail = loser.text("#error-detail").await;
    assert!(detail.contains("not available"), "{detail}");
    assert!(
        loser
            .text("#error-title")
            .await
            .contains("Someone else got there first")
    );
    loser
        .wait_js("seat 7 held on the loser's map", &seat_status_is(7, "HELD"))
        .await;
    assert_eq!(
        loser.attr(&seat(7), "aria-disabled").await.as_deref(),
        Some("true")
    );
    loser.eval("window.scrollTo(0, 0)").await;
    loser.screenshot(shot("web-5-seat-unavailable.png")).await;

    // The winner holds seat 7, with a countdown to expiresAt.
    assert_eq!(
        winner.attr("#hold-summary", "data-seats").await.as_deref(),
        Some("7")
    );
    winner
        .wait_js("seat 7 marked as the winner's", &seat_status_is(7, "MINE"))
        .await;
    let countdown = winner.text("#countdown").await;
    let left = countdown
        .split_once(':')
        .and_then(|(m, s)| Some(m.parse::<u32>().ok()? * 60 + s.parse::<u32>().ok()?));
    assert!(
        left.is_some_and(|s| (200..=300).contains(&s)),
        "a five-minute hold counts down from 5:00, shows {countdown}"
    );

    // PostgreSQL agrees: one live hold on seat 7, the winner's; the loser's job failed.
    let live_on_7 = format!(
        "SELECT count(*) FROM reservation_seats rs JOIN seats s ON s.id = rs.seat_id \
         JOIN reservations r ON r.id = rs.reservation_id \
         WHERE s.schedule_id = {schedule_id} AND s.number = 7 \
           AND rs.reservation_status IN ('HELD', 'CONFIRMED') AND r.user_id = '{{user}}'"
    );
    assert_eq!(app.scalar(&live_on_7.replace("{user}", winner_id)).await, 1);
    assert_eq!(app.scalar(&live_on_7.replace("{user}", loser_id)).await, 0);
    let refused = format!(
        "SELECT count(*) FROM job_outcomes WHERE user_id = '{loser_id}' AND kind = 'RESERVE' \
         AND status = 'FAILED' AND error_code = 'SEAT_UNAVAILABLE'"
    );
    assert_eq!(app.scalar(&refused).await, 1);

    // The loser picks seat 8 by keyboard: Tab from the date into the map (its
    // tab stop is seat 7, the one last clicked), ArrowRight, Space, Tab, Enter.
    loser
        .eval("document.getElementById('schedule').focus()")
        .await;
    loser.press(&[Key::Tab.into(), Key::Right.into()]).await;
    let focused = loser.eval("document.activeElement.dataset.seat").await;
    assert_eq!(focused, "8", "arrow keys move between seats");
    loser.press(&[Key::Space.into()]).await;
    assert_eq!(
        loser.attr(&seat(8), "aria-pressed").await.as_deref(),
        Some("true")
    );
    loser.press(&[Key::Tab.into()]).await;
    assert_eq!(loser.eval("document.activeElement.id").await, "reserve");
    loser.press(&[Key::Enter.into()]).await;
    loser
        .wait_js(
            "the loser's hold on seat 8",
            "!document.getElementById('step-hold').hidden \
             && document.getElementById('hold-summary').dataset.seats === '8'",
        )
        .await;
    assert_eq!(
        loser.eval("document.getElementById('error').hidden").await,
        true
    );

    // A reload resumes from sessionStorage: signed in, admitted, the hold and its countdown.
    loser.client.refresh().await.unwrap();
    loser
        .wait_js(
            "the hold to be shown again after a reload",
            "!document.getElementById('step-hold').hidden \
             && document.getElementById('hold-summary').dataset.seats === '8' \
             && document.getElementById('countdown').textContent.match(/^[1-4]:[0-5][0-9]$/)",
        )
        .await;
    loser
        .wait_js("seat 8 marked as the loser's", &seat_status_is(8, "MINE"))
        .await;
    assert!(
        loser
            .find_all("#step-signup:not([hidden])")
            .await
            .is_empty()
    );

    // The winner's map refreshes by itself: seat 8 is now held by someone else.
    winner
        .wait_js(
            "seat 8 held on the winner's map",
            &seat_status_is(8, "HELD"),
        )
        .await;
    winner
        .eval("document.getElementById('step-hold').scrollIntoView()")
        .await;
    winner.screenshot(shot("web-6-hold.png")).await;

    // The winner tops up (the amount missing is filled in) and pays, double-clicking.
    winner
        .wait_js(
            "the balance to load",
            "document.getElementById('balance').dataset.balance === '0'",
        )
        .await;
    let amount = winner
        .eval("document.getElementById('recharge-amount').value")
        .await;
    assert_eq!(amount, PRICE.to_string());
    // Too much at once: the fan reads the API's problem+json detail.
    winner.type_text("#recharge-amount", "20000000").await;
    winner.click("#recharge").await;
    let code = winner
        .wait_visible("#error-code")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(code, "VALIDATION_FAILED");
    let detail = winner.text("#error-detail").await;
    assert!(
        detail.contains("amount") && detail.contains("maximum(10000000"),
        "{detail}"
    );
    winner
        .type_text("#recharge-amount", &PRICE.to_string())
        .await;
    winner.click("#recharge").await;
    winner
        .wait_js(
            "the top-up to land",
            &format!("document.getElementById('balance').dataset.balance === '{PRICE}'"),
        )
        .await;
    let queue_token = winner
        .eval("JSON.parse(sessionStorage.getItem('concert.queueToken'))")
        .await;
    winner.double_click("#pay").await;
    winner.wait_visible("#step-done").await;
    assert_eq!(
        winner.attr("#confirmation", "data-seats").await.as_deref(),
        Some("7")
    );
    let confirmation = winner.text("#confirmation").await;
    assert!(confirmation.contains("Test concert"), "{confirmation}");
    assert!(confirmation.contains("50,000 won"), "{confirmation}");
    winner.screenshot(shot("web-7-confirmed.png")).await;

    // The loser's map shows seat 7 sold, again without a reload.
    loser
        .wait_js("seat 7 sold on the loser's map", &seat_status_is(7, "SOLD"))
        .await;

    // PostgreSQL: seat 7 sold to the winner, one payment from one pay job (the
    // double click was one job), the balance spent; seat 8 held by the loser.
    let sold = format!(
        "SELECT count(*) FROM seats s JOIN reservations r ON r.id = s.reservation_id \
         WHERE s.schedule_id = {schedule_id} AND s.number = 7 AND s.status = 'SOLD' \
           AND r.status = 'CONFIRMED' AND r.user_id = '{winner_id}'"
    );
    assert_eq!(app.scalar(&sold).await, 1);
    let pay_jobs =
        format!("SELECT count(*) FROM job_outcomes WHERE user_id = '{winner_id}' AND kind = 'PAY'");
    assert_eq!(app.scalar(&pay_jobs).await, 1, "a double click is one job");
    let payments = format!("SELECT count(*) FROM payments WHERE user_id = '{winner_id}'");
    assert_eq!(app.scalar(&payments).await, 1);
    let balance = format!("SELECT balance FROM wallets WHERE user_id = '{winner_id}'");
    assert_eq!(app.scalar(&balance).await, 0);
    let held_8 = format!(
        "SELECT count(*) FROM seats s JOIN reservations r ON r.id = s.reservation_id \
         WHERE s.schedule_id = {schedule_id} AND s.number = 8 AND s.status = 'HELD' \
           AND r.user_id = '{loser_id}'"
    );
    assert_eq!(app.scalar(&held_8).await, 1);

    // Paying ended the winner's place in line (the slot is free for the next fan).
    let after = app
        .get_as(queue_token.as_str().unwrap(), "/v1/queue/tokens/current")
        .await;
    assert_eq!(after.status(), 401);
    assert_eq!(
        winner
            .eval("sessionStorage.getItem('concert.queueToken')")
            .await,
        serde_json::Value::Null
    );

    // ... and Cleo, first in line, is let in: her page moves on by itself.
    cleo.wait_text("#queue-status", "You're in!").await;
    cleo.wait_js(
        "Cleo's seat map",
        "document.querySelectorAll('#seat-map .seat').length === 50",
    )
    .await;

    for fan in [ana, ben, cleo] {
        fan.close().await;
    }
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_beside_the_api() {
    let app = TestApp::spawn().await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(page.headers().contains_key("content-security-policy"));
    assert!(page.headers().contains_key("x-request-id"));
    let html = page.text().await.unwrap();
    let js = html
        .split('"')
        .find(|s| s.starts_with("/app/app.js?v="))
        .expect("the page links its script by hash")
        .to_owned();
    let script = app.get(&js).await;
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        script.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // Unknown assets are problem+json like any unknown route; the API is untouched.
    let missing = common::problem(app.get("/app/nope.js").await, 404).await;
    assert_eq!(missing["code"], "ROUTE_NOT_FOUND");
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/docs").await.status(), 200);
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/reservations"));
    assert!(
        paths.keys().all(|p| p != "/" && !p.starts_with("/app")),
        "the web app is not part of the API document"
    );
    let unknown = common::problem(app.get("/v1/nope").await, 404).await;
    assert_eq!(unknown["code"], "ROUTE_NOT_FOUND");
}

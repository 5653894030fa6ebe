//! The schema itself refuses what must never happen, whatever the code does.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use common::TestApp;
use sea_orm::{ConnectionTrait, DbErr};

async fn exec(app: &TestApp, sql: &str) -> Result<(), DbErr> {
    app.db.execute_unprepared(sql).await.map(drop)
}

/// Asserts `sql` fails on the named constraint.
async fn refused(app: &TestApp, sql: &str, constraint: &str) {
    let err = exec(app, sql)
        .await
        .expect_err("the database must refuse this row");
    assert!(
        err.to_string().contains(constraint),
        "expected {constraint}, got: {err}"
    );
}

const USER: &str = "00000000-0000-0000-0000-000000000001";
const R1: &str = "00000000-0000-0000-0000-0000000000a1";
const R2: &str = "00000000-0000-0000-0000-0000000000a2";

/// A user with a wallet, a bookable schedule with seats 1 and 2, and reservation R1 holding seat 1.
async fn fixture(app: &TestApp) {
    let sql = format!(
        "INSERT INTO users (id, name) VALUES ('{USER}', 'fan');
         INSERT INTO wallets (user_id, balance) VALUES ('{USER}', 1000);
         INSERT INTO concerts (title) VALUES ('c');
         INSERT INTO schedules (concert_id, starts_at, booking_opens_at, booking_closes_at, seat_price)
           VALUES (1, now() + interval '2 days', now() - interval '1 day', now() + interval '1 day', 1000);
         INSERT INTO seats (schedule_id, number, price) VALUES (1, 1, 1000), (1, 2, 1000);
         INSERT INTO reservations (id, user_id, schedule_id, status, total_price, expires_at, job_id)
           VALUES ('{R1}', '{USER}', 1, 'HELD', 1000, now() + interval '5 minutes', gen_random_uuid()),
                  ('{R2}', '{USER}', 1, 'HELD', 1000, now() + interval '5 minutes', gen_random_uuid());
         INSERT INTO reservation_seats VALUES ('{R1}', 1, 'HELD');"
    );
    exec(app, &sql).await.expect("fixture");
}

#[tokio::test]
async fn a_negative_balance_is_refused() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    refused(
        &app,
        &format!("UPDATE wallets SET balance = -1 WHERE user_id = '{USER}'"),
        "wallets_balance_non_negative",
    )
    .await;
    refused(
        &app,
        &format!("UPDATE wallets SET balance = 1000000000001 WHERE user_id = '{USER}'"),
        "wallets_balance_limit",
    )
    .await;
}

#[tokio::test]
async fn seat_numbers_outside_1_to_50_are_refused() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    refused(
        &app,
        "INSERT INTO seats (schedule_id, number, price) VALUES (1, 0, 1000)",
        "seats_number_range",
    )
    .await;
    refused(
        &app,
        "INSERT INTO seats (schedule_id, number, price) VALUES (1, 51, 1000)",
        "seats_number_range",
    )
    .await;
    exec(
        &app,
        "INSERT INTO seats (schedule_id, number, price) VALUES (1, 50, 1000)",
    )
    .await
    .expect("50 is valid");
}

#[tokio::test]
async fn two_seats_with_one_number_in_a_schedule_are_refused() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    refused(
        &app,
        "INSERT INTO seats (schedule_id, number, price) VALUES (1, 1, 1000)",
        "seats_schedule_number_unique",
    )
    .await;
}

#[tokio::test]
async fn a_seat_in_two_live_reservations_is_refused() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    refused(
        &app,
        &format!("INSERT INTO reservation_seats VALUES ('{R2}', 1, 'HELD')"),
        "reservation_seats_one_live_per_seat",
    )
    .await;
    // Confirmed counts as live too.
    exec(
        &app,
        &format!("UPDATE reservations SET status = 'CONFIRMED' WHERE id = '{R1}'"),
    )
    .await
    .unwrap();
    refused(
        &app,
        &format!("INSERT INTO reservation_seats VALUES ('{R2}', 1, 'HELD')"),
        "reservation_seats_one_live_per_seat",
    )
    .await;
}

#[tokio::test]
async fn an_expired_reservation_releases_its_seat_for_a_new_one() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    exec(
        &app,
        &format!("UPDATE reservations SET status = 'EXPIRED' WHERE id = '{R1}'"),
    )
    .await
    .unwrap();
    exec(
        &app,
        &format!("INSERT INTO reservation_seats VALUES ('{R2}', 1, 'HELD')"),
    )
    .await
    .expect("seat is free again");
}

#[tokio::test]
async fn a_seat_row_cannot_claim_a_status_its_reservation_does_not_have() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    refused(
        &app,
        &format!("INSERT INTO reservation_seats VALUES ('{R2}', 2, 'CONFIRMED')"),
        "reservation_seats_reservation_fk",
    )
    .await;
}

#[tokio::test]
async fn two_payments_of_one_reservation_are_refused() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    let pay = format!(
        "INSERT INTO payments (id, reservation_id, user_id, amount, job_id) VALUES (gen_random_uuid(), '{R1}', '{USER}', 1000, gen_random_uuid())"
    );
    exec(&app, &pay).await.expect("first payment");
    refused(&app, &pay, "payments_reservation_unique").await;
}

#[tokio::test]
async fn two_effects_of_one_job_are_refused() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    let job = "00000000-0000-0000-0000-00000000f00d";
    let ledger = format!(
        "INSERT INTO ledger_entries (user_id, kind, amount, balance_after, job_id) VALUES ('{USER}', 'RECHARGE', 10, 1010, '{job}')"
    );
    exec(&app, &ledger).await.expect("first effect");
    refused(&app, &ledger, "ledger_entries_job_unique").await;
    let outcome = format!(
        "INSERT INTO job_outcomes (job_id, kind, status, result, accepted_at) VALUES ('{job}', 'RECHARGE', 'SUCCEEDED', '{{}}', now())"
    );
    exec(&app, &outcome).await.expect("first outcome");
    refused(&app, &outcome, "job_outcomes_pkey").await;
    refused(
        &app,
        &format!("INSERT INTO reservations (id, user_id, schedule_id, status, total_price, expires_at, job_id) SELECT gen_random_uuid(), user_id, schedule_id, 'HELD', 1, now(), job_id FROM reservations WHERE id = '{R1}'"),
        "reservations_job_unique",
    )
    .await;
    refused(
        &app,
        &format!("INSERT INTO payments (id, reservation_id, user_id, amount, job_id) VALUES (gen_random_uuid(), '{R1}', '{USER}', 1, '{job}'), (gen_random_uuid(), '{R2}', '{USER}', 1, '{job}')"),
        "payments_job_unique",
    )
    .await;
}

#[tokio::test]
async fn ledger_rows_must_have_the_right_sign_and_a_non_negative_balance_after() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    refused(&app, &format!("INSERT INTO ledger_entries (user_id, kind, amount, balance_after) VALUES ('{USER}', 'PAYMENT', 10, 10)"), "ledger_entries_amount_sign").await;
    refused(&app, &format!("INSERT INTO ledger_entries (user_id, kind, amount, balance_after) VALUES ('{USER}', 'RECHARGE', -10, 10)"), "ledger_entries_amount_sign").await;
    refused(&app, &format!("INSERT INTO ledger_entries (user_id, kind, amount, balance_after) VALUES ('{USER}', 'PAYMENT', -10, -1)"), "ledger_entries_balance_after_non_negative").await;
}

#[tokio::test]
async fn a_seat_state_that_contradicts_itself_is_refused() {
    let app = TestApp::spawn().await;
    fixture(&app).await;
    refused(
        &app,
        "UPDATE seats SET status = 'HELD' WHERE number = 2",
        "seats_state",
    )
    .await;
    refused(
        &app,
        &format!("UPDATE seats SET reservation_id = '{R1}' WHERE number = 2"),
        "seats_state",
    )
    .await;
}

#[tokio::test]
async fn a_job_outcome_must_be_final_and_well_formed() {
    let app = TestApp::spawn().await;
    // Only final statuses exist in PostgreSQL (either CHECK may be the one reported).
    let running = "INSERT INTO job_outcomes (job_id, kind, status, error_code, accepted_at) VALUES (gen_random_uuid(), 'PAY', 'RUNNING', 'X', now())";
    refused(&app, running, "violates check constraint \"job_outcomes_").await;
    refused(&app, "INSERT INTO job_outcomes (job_id, kind, status, accepted_at) VALUES (gen_random_uuid(), 'PAY', 'FAILED', now())", "job_outcomes_shape").await;
}

#[tokio::test]
async fn a_schedule_with_an_impossible_booking_window_is_refused() {
    let app = TestApp::spawn().await;
    exec(&app, "INSERT INTO concerts (title) VALUES ('c')")
        .await
        .unwrap();
    refused(
        &app,
        "INSERT INTO schedules (concert_id, starts_at, booking_opens_at, booking_closes_at, seat_price) VALUES (1, now(), now() + interval '1 day', now(), 1000)",
        "schedules_booking_window",
    )
    .await;
}

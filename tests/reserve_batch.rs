//! Reserve jobs settled together (`domain::booking::settle_batch`): each job is
//! judged as if it ran alone after the ones before it, and a batch that loses a
//! race writes nothing at all, so no job's outcome depends on another's luck.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::time::Duration;

use common::TestApp;
use domain::{
    booking::{HoldPolicy, reserve, settle_batch},
    jobs::Outcome,
};
use sea_orm::{ConnectionTrait, TransactionTrait};
use uuid::Uuid;

const HOLDS: HoldPolicy = HoldPolicy {
    ttl: Duration::from_secs(300),
    max_seats_per_user: 4,
};

use common::reserve_job as job;

fn code(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Succeeded(_) => "SUCCEEDED",
        Outcome::Failed { code, .. } => code,
    }
}

async fn setup(app: &TestApp) -> (i64, Uuid, Uuid) {
    let schedule = app.open_concert(1, 5_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let one = Uuid::parse_str(&app.sign_up("one").await).unwrap();
    let two = Uuid::parse_str(&app.sign_up("two").await).unwrap();
    (schedule, one, two)
}

#[tokio::test]
async fn a_batch_judges_each_job_after_the_ones_before_it_in_one_transaction() {
    let app = TestApp::spawn().await;
    let (schedule, one, two) = setup(&app).await;
    let jobs = vec![
        job(one, schedule, &[1, 2]),
        job(two, schedule, &[2, 9]), // seat 2 went to the job before
        job(one, schedule, &[3, 4]), // user one's 3rd and 4th seat: allowed
        job(one, schedule, &[5]),    // a 5th: over the per-person cap
        job(two, 999_999, &[1]),
        job(two, schedule, &[9, 10]), // seat 9 is free: the failed job took nothing
    ];
    let outcomes = settle_batch(&app.db, &jobs, &HOLDS).await.unwrap().unwrap();
    let codes: Vec<&str> = outcomes.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            "SUCCEEDED",
            "SEAT_UNAVAILABLE",
            "SUCCEEDED",
            "SEAT_LIMIT_EXCEEDED",
            "SCHEDULE_NOT_FOUND",
            "SUCCEEDED"
        ]
    );
    let Outcome::Failed { message, .. } = &outcomes[3] else {
        unreachable!()
    };
    assert!(message.contains("hold or own 4 seat(s)"), "{message}");
    let Outcome::Succeeded(hold) = &outcomes[2] else {
        unreachable!()
    };
    assert_eq!(hold["seatNumbers"], serde_json::json!([3, 4]));
    assert_eq!(hold["totalPrice"], 10_000);
    // Exactly the successful jobs' effects, and one outcome per job.
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 3);
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'HELD'")
            .await,
        6
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM reservation_seats").await,
        6
    );
    assert_eq!(app.scalar("SELECT count(*) FROM job_outcomes").await, 6);
    // Each outcome is the job's for good: a later delivery alone replays it.
    for (job, outcome) in jobs.iter().zip(&outcomes) {
        assert_eq!(&reserve(&app.db, job, &HOLDS).await.unwrap(), outcome);
    }
    // And so is a later batch of the same jobs.
    let again = settle_batch(&app.db, &jobs, &HOLDS).await.unwrap().unwrap();
    assert_eq!(again, outcomes);
    assert_eq!(app.scalar("SELECT count(*) FROM job_outcomes").await, 6);
}

#[tokio::test]
async fn a_batch_expires_an_overdue_hold_on_a_seat_it_takes() {
    let app = TestApp::spawn().await;
    let (schedule, one, two) = setup(&app).await;
    let first = job(one, schedule, &[7, 8]);
    assert_eq!(
        code(&reserve(&app.db, &first, &HOLDS).await.unwrap()),
        "SUCCEEDED"
    );
    app.db
        .execute_unprepared(
            "UPDATE reservations SET expires_at = now() - interval '1 second';
             UPDATE seats SET hold_expires_at = now() - interval '1 second' WHERE status = 'HELD'",
        )
        .await
        .unwrap();
    let jobs = [job(two, schedule, &[8]), job(one, schedule, &[7])];
    let outcomes = settle_batch(&app.db, &jobs, &HOLDS).await.unwrap().unwrap();
    assert_eq!(
        outcomes.iter().map(code).collect::<Vec<_>>(),
        ["SUCCEEDED", "SUCCEEDED"]
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM reservations WHERE status = 'EXPIRED'")
            .await,
        1
    );
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM seats s JOIN reservations r ON r.id = s.reservation_id \
             WHERE s.status = 'HELD' AND r.status = 'HELD' AND s.number IN (7, 8)"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_loses_a_seat_race_writes_nothing_and_each_job_then_runs_alone() {
    let app = TestApp::spawn().await;
    let (schedule, one, two) = setup(&app).await;
    // Another transaction takes seat 5 after the batch has read it: it changes
    // the seat's version and holds the row until the batch's write waits on it.
    let rival = app.db.begin().await.unwrap();
    rival
        .execute_unprepared(&format!(
            "UPDATE seats SET version = version + 1 WHERE schedule_id = {schedule} AND number = 5"
        ))
        .await
        .unwrap();
    let jobs = vec![job(one, schedule, &[1, 2]), job(two, schedule, &[5])];
    let batch = {
        let (db, jobs) = (app.db.clone(), jobs.clone());
        tokio::spawn(async move { settle_batch(&db, &jobs, &HOLDS).await })
    };
    common::eventually(Duration::from_secs(10), || async {
        let waiting = app
            .scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'WITH locked AS MATERIALIZED%'",
            )
            .await;
        (waiting == 1).then_some(())
    })
    .await;
    rival.commit().await.unwrap();
    assert!(
        batch.await.unwrap().unwrap().is_none(),
        "the batch saw seat 5 change"
    );
    // Nothing of the batch was written — not even the job that had no conflict.
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 0);
    assert_eq!(app.scalar("SELECT count(*) FROM job_outcomes").await, 0);
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status <> 'AVAILABLE'")
            .await,
        0
    );
    // Alone, each job gets what it would have got without the other.
    for j in &jobs {
        assert_eq!(
            code(&reserve(&app.db, j, &HOLDS).await.unwrap()),
            "SUCCEEDED"
        );
    }
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'HELD'")
            .await,
        3
    );
}

/// This database's deadlock count, after `pools` flushed their backends' pending statistics
/// (a backend reports its counters only now and then; the flush is done when the call returns).
async fn deadlocks(app: &TestApp, pools: &[&sea_orm::DatabaseConnection]) -> i64 {
    for pool in pools {
        pool.execute_unprepared("SELECT pg_stat_force_next_flush()")
            .await
            .unwrap();
    }
    app.scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_taking_the_same_seats_in_opposite_job_orders_never_deadlock() {
    const ROUNDS: usize = 6;
    let app = TestApp::spawn().await;
    let concert = app.open_concert(ROUNDS, 5_000).await;
    let one = Uuid::parse_str(&app.sign_up("one").await).unwrap();
    let two = Uuid::parse_str(&app.sign_up("two").await).unwrap();
    // Each batch on a pool of one connection: its backend is the one to flush statistics.
    let url = &app.config.database_url;
    let (db_1, db_2) = (
        domain::platform::db::connect_url(url, 1, false)
            .await
            .unwrap(),
        domain::platform::db::connect_url(url, 1, false)
            .await
            .unwrap(),
    );
    let before = deadlocks(&app, &[&db_1, &db_2]).await;
    let writes_waiting = || async {
        app.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE 'WITH locked AS MATERIALIZED%'",
        )
        .await
    };
    let mut results = Vec::new();
    for round in 0..ROUNDS {
        // A fresh schedule a round: seats 3 and 7 are free, and neither user holds any of it.
        let schedule = concert["schedules"][round]["scheduleId"].as_i64().unwrap();
        // A rival holds the lower seat's row lock, so both batches are writing at once.
        let rival = app.db.begin().await.unwrap();
        rival
            .execute_unprepared(&format!(
                "SELECT id FROM seats WHERE schedule_id = {schedule} AND number IN (3, 7) \
                 ORDER BY id LIMIT 1 FOR UPDATE"
            ))
            .await
            .unwrap();
        // Batch B wants seats 3 then 7; batch A, started once B waits, 7 then 3.
        let settle = |db: &sea_orm::DatabaseConnection, user: Uuid, order: [i16; 2]| {
            let db = db.clone();
            let jobs = order.map(|n| job(user, schedule, &[n])).to_vec();
            tokio::spawn(async move { settle_batch(&db, &jobs, &HOLDS).await })
        };
        let b = settle(&db_2, two, [3, 7]);
        common::eventually(Duration::from_secs(10), || async {
            (writes_waiting().await == 1).then_some(())
        })
        .await;
        let a = settle(&db_1, one, [7, 3]);
        common::eventually(Duration::from_secs(10), || async {
            (writes_waiting().await == 2).then_some(())
        })
        .await;
        rival.commit().await.unwrap();
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        // Held seats, and how many users hold them (as users × 10 + seats).
        let held = app
            .scalar(&format!(
                "SELECT count(DISTINCT r.user_id) * 10 + count(*) FROM seats s \
                 JOIN reservations r ON r.id = s.reservation_id \
                 WHERE s.schedule_id = {schedule} AND s.status = 'HELD'"
            ))
            .await;
        results.push((round, a, b, held));
    }
    // Checked after every round ran, so a deadlock also shows in PostgreSQL's own count.
    assert_eq!(
        deadlocks(&app, &[&db_1, &db_2]).await - before,
        0,
        "deadlocks detected: {results:?}"
    );
    for (round, a, b, held) in &results {
        let won = |r: &domain::Result<Option<Vec<Outcome>>>| matches!(r, Ok(Some(o)) if o.iter().all(|o| code(o) == "SUCCEEDED"));
        // The loser saw the winner's seats: it wrote nothing and its jobs run alone later.
        let lost = |r: &domain::Result<Option<Vec<Outcome>>>| match r {
            Ok(None) => true,
            Err(e) => domain::retry::violates(e, "reservation_seats_one_live_per_seat"),
            Ok(Some(_)) => false,
        };
        assert!(
            (won(a) && lost(b)) || (won(b) && lost(a)),
            "round {round}: {a:?} / {b:?}"
        );
        assert_eq!(*held, 12, "round {round}: both seats, to one user");
    }
}

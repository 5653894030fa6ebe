//! At-least-once delivery: running a job twice, racing itself, or losing its
//! worker to SIGKILL still gives exactly one effect and one final status.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::Utc;
use common::TestApp;
use domain::jobs::{
    JobKind, Outcome,
    status::{Phase, StatusStore},
};
use futures::future::join_all;
use sea_orm::{ConnectionTrait, TransactionTrait};
use uuid::Uuid;

async fn schedule_and_user(app: &TestApp) -> (i64, Uuid) {
    let schedule = app.open_concert(1, 5_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let user = Uuid::parse_str(&app.sign_up("fan").await).unwrap();
    (schedule, user)
}

use common::reserve_job as job;

/// These tests are about delivery, not the per-person cap: one user holds many seats.
const HOLDS: domain::booking::HoldPolicy = domain::booking::HoldPolicy {
    ttl: Duration::from_secs(300),
    max_seats_per_user: 50,
};

#[tokio::test]
async fn the_same_reserve_job_run_twice_has_one_effect_and_the_same_outcome() {
    let app = TestApp::spawn().await;
    let (schedule, user) = schedule_and_user(&app).await;
    let db = domain::platform::db::connect_url(&app.config.database_url, 4, false)
        .await
        .unwrap();
    let first_job = job(user, schedule, &[1, 2]);
    let first = domain::booking::reserve(&db, &first_job, &HOLDS)
        .await
        .unwrap();
    let again = domain::booking::reserve(&db, &first_job, &HOLDS)
        .await
        .unwrap();
    assert!(matches!(first, Outcome::Succeeded(_)));
    assert_eq!(first, again);
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 1);
    // A failed outcome is replayed too, even after the seats free up.
    let loser = job(user, schedule, &[2, 3]);
    let failed = domain::booking::reserve(&db, &loser, &HOLDS).await.unwrap();
    assert!(matches!(&failed, Outcome::Failed { code, .. } if code == "SEAT_UNAVAILABLE"));
    app.db
        .execute_unprepared("UPDATE reservations SET expires_at = now() - interval '1 second'")
        .await
        .unwrap();
    assert_eq!(
        domain::booking::reserve(&db, &loser, &HOLDS).await.unwrap(),
        failed
    );
    assert_eq!(app.scalar("SELECT count(*) FROM job_outcomes").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliveries_of_one_job_racing_each_other_have_one_effect() {
    let app = TestApp::spawn().await;
    let (schedule, user) = schedule_and_user(&app).await;
    let db = domain::platform::db::connect_url(&app.config.database_url, 8, false)
        .await
        .unwrap();
    for round in 0..10_i16 {
        let j = job(user, schedule, &[round * 2 + 1, round * 2 + 2]);
        let outcomes = join_all((0..4).map(|_| domain::booking::reserve(&db, &j, &HOLDS))).await;
        let outcomes: Vec<Outcome> = outcomes.into_iter().map(Result::unwrap).collect();
        assert!(
            outcomes.iter().all(|o| o == &outcomes[0]),
            "round {round}: {outcomes:?}"
        );
        assert!(
            matches!(outcomes[0], Outcome::Succeeded(_)),
            "round {round}: {:?}",
            outcomes[0]
        );
    }
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 10);
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'HELD'")
            .await,
        20
    );
}

#[tokio::test]
async fn a_batch_marks_all_its_jobs_in_one_call_and_each_announcement_carries_the_final_status() {
    use futures::StreamExt;
    let app = TestApp::spawn().await;
    let redis = domain::platform::redis_conn::connect(&app.config)
        .await
        .unwrap();
    let store = StatusStore::new(redis, &app.config);
    let mut pubsub = redis::Client::open(app.config.redis_url.as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(store.done_channel()).await.unwrap();
    let jobs: Vec<domain::jobs::JobHeader> = (0..3)
        .map(|_| domain::jobs::JobHeader {
            job_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            accepted_at: Utc::now(),
        })
        .collect();
    let kind = JobKind::Reserve;
    assert_eq!(
        store.start_deliveries(kind, &jobs).await.unwrap(),
        [1, 1, 1]
    );
    assert_eq!(
        store.start_deliveries(kind, &jobs[1..]).await.unwrap(),
        [2, 2],
        "each job keeps its own count"
    );
    let outcomes = [
        Outcome::Succeeded(serde_json::json!({"seat": "A/1", "name": "좌석 \"1\""})),
        Outcome::failed("SEAT_UNAVAILABLE", "seat 1 is taken"),
        Outcome::Succeeded(serde_json::json!({"n": 3})),
    ];
    let finals: Vec<_> = jobs.iter().copied().zip(&outcomes).collect();
    store.mark_finals(kind, &finals).await.unwrap();
    let mut messages = pubsub.on_message();
    for job in &jobs {
        let payload: String = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("announced")
            .unwrap()
            .get_payload()
            .unwrap();
        let (id, carried) = domain::jobs::status::announced(&payload).unwrap();
        assert_eq!(id, job.job_id, "announced in the batch's order");
        let stored = store.get(&app.db, id).await.unwrap();
        assert!(stored.phase.is_final());
        assert_eq!(
            carried,
            Some(stored),
            "the announcement carries what a read shows"
        );
    }
}

#[tokio::test]
async fn status_moves_forward_only_and_falls_back_to_the_durable_outcome() {
    let app = TestApp::spawn().await;
    let redis = domain::platform::redis_conn::connect(&app.config)
        .await
        .unwrap();
    let store = StatusStore::new(redis.clone(), &app.config);
    let (id, user, at) = (Uuid::now_v7(), Uuid::now_v7(), Utc::now());
    let phase = |s: &StatusStore| {
        let s = s.clone();
        let db = app.db.clone();
        async move { s.get(&db, id).await.unwrap().phase }
    };
    // QUEUED is written only for a task that is in its queue.
    store
        .mark_queued(id, JobKind::Reserve, user, at)
        .await
        .unwrap();
    assert!(
        !store.exists(id).await.unwrap(),
        "no task, no QUEUED status"
    );
    let mut job = common::reserve_job(user, 1, &[1]);
    job.job_id = id;
    let _: i64 = redis::cmd("HSET")
        .arg(format!("{}_reserve:data", app.redis_prefix()))
        .arg(id.to_string())
        .arg(serde_json::to_string(&job).unwrap())
        .query_async(&mut redis.clone())
        .await
        .unwrap();
    store
        .mark_queued(id, JobKind::Reserve, user, at)
        .await
        .unwrap();
    assert!(store.exists(id).await.unwrap());
    assert_eq!(phase(&store).await, Phase::Queued);
    store
        .start_delivery(id, JobKind::Reserve, user, at)
        .await
        .unwrap();
    assert_eq!(phase(&store).await, Phase::Running);
    store
        .mark_queued(id, JobKind::Reserve, user, at)
        .await
        .unwrap();
    assert_eq!(
        phase(&store).await,
        Phase::Running,
        "a late QUEUED write never moves a job back"
    );
    let outcome = Outcome::Succeeded(serde_json::json!({"ok": true}));
    store
        .mark_final(id, JobKind::Reserve, user, at, &outcome)
        .await
        .unwrap();
    store
        .start_delivery(id, JobKind::Reserve, user, at)
        .await
        .unwrap();
    let status = store.get(&app.db, id).await.unwrap();
    assert_eq!(
        (status.phase, status.result),
        (Phase::Succeeded, Some(serde_json::json!({"ok": true})))
    );
    // Redis lost the hash: PostgreSQL's outcome answers.
    let other = Uuid::now_v7();
    let signed_up = Uuid::parse_str(&app.sign_up("x").await).unwrap();
    domain::jobs::outcomes::insert(
        &app.db,
        other,
        JobKind::Reserve,
        signed_up,
        at,
        &Outcome::failed("SEAT_UNAVAILABLE", "taken"),
    )
    .await
    .unwrap();
    let status = store.get(&app.db, other).await.unwrap();
    assert_eq!(
        (status.phase, status.error.map(|e| e.0)),
        (Phase::Failed, Some("SEAT_UNAVAILABLE".to_owned()))
    );
}

fn worker_process(app: &TestApp, concurrency: &str) -> Child {
    worker_command(app, concurrency).spawn().unwrap()
}

fn worker_command(app: &TestApp, concurrency: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_concert"));
    command
        .arg("worker")
        .env("DATABASE_URL", &app.config.database_url)
        .env("REDIS_URL", common::redis_url())
        .env("REDIS_PREFIX", app.redis_prefix())
        .env("WORKER_CONCURRENCY", concurrency)
        .env("WORKER_HEARTBEAT_SECONDS", "1")
        .env("WORKER_MISSED_HEARTBEATS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_leaves_every_job_final_with_exactly_one_effect() {
    // api only; workers are real processes below. 600 jobs of 20 fans make the
    // backlog the kill lands in (and are long-polled 30 per fan at once), so
    // the per-user bounds are lifted.
    let app = TestApp::builder()
        .env("USER_JOBS_IN_FLIGHT", "0")
        .env("USER_LONG_POLLS_MAX", "0")
        .spawn()
        .await;
    let concert = app.open_concert(12, 1_000).await;
    let schedules: Vec<i64> = concert["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scheduleId"].as_i64().unwrap())
        .collect();
    let fans: Vec<common::Fan> = join_all((0..20).map(|_| app.active_fan())).await;
    let requests = schedules
        .iter()
        .flat_map(|s| (1..=50).map(move |n| (*s, n)))
        .enumerate()
        .map(|(i, (s, n))| {
            let (app, fan) = (&app, &fans[i % fans.len()]);
            async move {
                let id = TestApp::accepted_job(app.reserve(fan, s, &[n], None).await).await;
                (fan, id)
            }
        });
    let job_ids = join_all(requests).await;
    let total = job_ids.len();
    let finished = || async { app.scalar("SELECT count(*) FROM job_outcomes").await };

    // RUNNING jobs right now, read in one pipelined round trip.
    let conn = app.redis().await;
    let keys: Vec<String> = job_ids
        .iter()
        .map(|(_, id)| format!("{}:job:{id}", app.redis_prefix()))
        .collect();
    let running_now = || {
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.hget(key, "status");
        }
        let mut conn = conn.clone();
        async move {
            let statuses: Vec<Option<String>> = pipe.query_async(&mut conn).await.unwrap();
            statuses
                .iter()
                .flatten()
                .filter(|s| *s == "RUNNING")
                .count()
        }
    };

    let redis = domain::platform::redis_conn::connect(&app.config)
        .await
        .unwrap();
    let store = StatusStore::new(redis, &app.config);
    // Kill once it has done some work and at the moment jobs are in flight (a
    // worker is idle between fetched batches, so wait for a moment it is not).
    // A batch can still end between that look and the signal: then nothing was
    // mid-flight, and a fresh worker is killed the same way, up to 10 times.
    let mut kills = 0;
    let (at_kill, running) = loop {
        let mut doomed = worker_process(&app, "8");
        let started = Instant::now();
        while finished().await < 40 || running_now().await == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the worker made no progress"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        doomed.kill().unwrap(); // SIGKILL: no shutdown, in-flight jobs abandoned
        doomed.wait().unwrap();
        let at_kill = finished().await;
        assert!(
            at_kill < i64::try_from(total).unwrap(),
            "the kill came before the end"
        );
        let mut running = 0;
        for (_, id) in &job_ids {
            let status = store
                .get(&app.db, Uuid::parse_str(id).unwrap())
                .await
                .unwrap();
            running += usize::from(status.phase == Phase::Running);
        }
        kills += 1;
        if running > 0 || kills == 10 {
            break (at_kill, running);
        }
    };
    // With 8 jobs in flight and hundreds queued, a kill lands mid-job.
    assert!(
        running > 0,
        "no job was mid-flight at any of {kills} kills ({at_kill} of {total} final)"
    );

    let mut survivor = worker_process(&app, "32");
    let jobs = join_all(
        job_ids
            .iter()
            .map(|(fan, id)| app.final_job(&fan.access, id)),
    )
    .await;
    survivor.kill().unwrap();
    survivor.wait().unwrap();
    let succeeded = jobs.iter().filter(|j| j["status"] == "SUCCEEDED").count();
    assert_eq!(
        succeeded, total,
        "every seat was free, so every job holds its seat exactly once"
    );
    let total = i64::try_from(total).unwrap();
    assert_eq!(app.scalar("SELECT count(*) FROM job_outcomes").await, total);
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, total);
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'HELD'")
            .await,
        total
    );
}

/// The value of an unlabelled gauge on a worker's `/metrics`, if it is there yet.
async fn gauge(http: &reqwest::Client, port: u16, name: &str) -> Option<f64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_inside_a_batch_transaction_loses_nothing_and_applies_nothing_twice() {
    let app = TestApp::spawn().await; // api only; workers are real processes below
    let schedule = app.open_concert(1, 1_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let fans: Vec<common::Fan> = join_all((0..10).map(|_| app.active_fan())).await;
    let app = &app;
    let job_ids: Vec<String> = join_all(fans.iter().zip(1..).map(|(fan, seat)| async move {
        TestApp::accepted_job(app.reserve(fan, schedule, &[seat], None).await).await
    }))
    .await;
    // Seat 10 is locked by a rival transaction, so the batch's write waits on it
    // with the batch's transaction open.
    let rival = app.db.begin().await.unwrap();
    rival
        .execute_unprepared(&format!(
            "SELECT 1 FROM seats WHERE schedule_id = {schedule} AND number = 10 FOR UPDATE"
        ))
        .await
        .unwrap();
    let port = common::free_port();
    let mut doomed = worker_command(app, "32")
        // The queued jobs are fetched at once; the linger gathers them into one batch.
        .env("RESERVE_BATCH_LINGER_MS", "1000")
        .env("WORKER_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let writing =
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'WITH locked AS MATERIALIZED%'";
    let http = reqwest::Client::new();
    let in_batch = common::eventually(Duration::from_secs(30), || async {
        let open = gauge(&http, port, "concert_reserve_batch_open_jobs").await?;
        let blocked = app
            .scalar(&format!("{writing} AND wait_event_type = 'Lock'"))
            .await;
        (open >= 2.0 && blocked == 1).then_some(open)
    })
    .await;
    let before = app.scalar("SELECT count(*) FROM job_outcomes").await;
    doomed.kill().unwrap(); // SIGKILL inside the batch's transaction
    doomed.wait().unwrap();
    rival.rollback().await.unwrap();
    // The killed worker's session ends without a commit.
    common::eventually(Duration::from_secs(30), || async {
        (app.scalar(writing).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        app.scalar("SELECT count(*) FROM job_outcomes").await,
        before,
        "the killed batch of {in_batch} jobs committed nothing"
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM reservations").await,
        before
    );

    let mut survivor = worker_process(app, "32");
    let jobs = join_all(
        job_ids
            .iter()
            .zip(&fans)
            .map(|(id, fan)| app.final_job(&fan.access, id)),
    )
    .await;
    survivor.kill().unwrap();
    survivor.wait().unwrap();
    assert!(
        jobs.iter().all(|j| j["status"] == "SUCCEEDED"),
        "every seat was free: {jobs:?}"
    );
    assert_eq!(app.scalar("SELECT count(*) FROM job_outcomes").await, 10);
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 10);
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'HELD'")
            .await,
        10
    );
    assert_eq!(
        app.scalar("SELECT count(DISTINCT seat_id) FROM reservation_seats")
            .await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vacuum_removes_only_old_finished_tasks() {
    let app = TestApp::builder().workers(1).spawn().await;
    let schedule = app.open_concert(1, 1_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let fan = app.active_fan().await;
    let id = TestApp::accepted_job(app.reserve(&fan, schedule, &[1], None).await).await;
    assert_eq!(app.final_job(&fan.access, &id).await["status"], "SUCCEEDED");
    let redis = domain::platform::redis_conn::connect(&app.config)
        .await
        .unwrap();
    let data = format!("{}_reserve:data", app.redis_prefix());
    let present = || {
        let (mut conn, data, id) = (redis.clone(), data.clone(), id.clone());
        async move {
            redis::cmd("HEXISTS")
                .arg(data)
                .arg(id)
                .query_async::<bool>(&mut conn)
                .await
                .unwrap()
        }
    };
    // apalis acknowledges after the handler returns: wait for the task to be marked Done.
    let meta = format!("{}_reserve:meta:{id}", app.redis_prefix());
    let started = Instant::now();
    loop {
        let status: Option<String> = redis::cmd("HGET")
            .arg(&meta)
            .arg("status")
            .query_async(&mut redis.clone())
            .await
            .unwrap();
        if status.as_deref() == Some("Done") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "task never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let young = domain::jobs::housekeeping::vacuum_done(
        &redis,
        &app.config,
        "reserve",
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!((young, present().await), (0, true), "a recent task is kept");
    // With age 0 the task goes once its (whole-second) done time has passed.
    let started = Instant::now();
    loop {
        let n =
            domain::jobs::housekeeping::vacuum_done(&redis, &app.config, "reserve", Duration::ZERO)
                .await
                .unwrap();
        if n == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "old task never vacuumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!present().await);
}

//! Waiting-room cost at 1,000 and at 1,000,000 waiting fans.
//!
//! Not a test: run it by hand against a Redis you can fill (uses ~0.5 GB there,
//! removed at the end):
//!
//! ```sh
//! cargo run --release --example waiting_room_bench [-- 1000000]
//! ```
//!
//! Measures, one call at a time, the latency of: `issue` (a new fan joins the
//! end of the line), `poll` (a fan in the middle of the line asks its position),
//! `guard` (an active fan's token checked on a guarded endpoint), and
//! `admission step` (an active fan leaves, which admits the head of the line).

#![allow(clippy::print_stdout, clippy::unwrap_used)] // a command-line report

use std::time::{Duration, Instant};

use domain::{
    Config,
    waiting_room::{Issued, WaitingRoom},
};
use futures::{StreamExt, stream};
use redis::aio::ConnectionManager;
use uuid::Uuid;

const SAMPLES: usize = 1_000;
const MAX_ACTIVE: usize = 5_000;

#[tokio::main]
async fn main() {
    let target: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |n| n.parse().unwrap());
    let prefix = format!("bench-wr-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let config = Config::from_map(
        &[
            ("REDIS_PREFIX", prefix.clone()),
            ("QUEUE_MAX_ACTIVE", MAX_ACTIVE.to_string()),
            ("QUEUE_ADMIT_PER_SECOND", "1000000".into()),
            ("QUEUE_WAITING_TTL_SECONDS", "86400".into()),
            ("QUEUE_ACTIVE_TTL_SECONDS", "86400".into()),
        ]
        .into_iter()
        .chain(std::env::var("REDIS_URL").ok().map(|u| ("REDIS_URL", u)))
        .collect(),
    )
    .unwrap();
    let redis = domain::platform::redis_conn::connect(&config)
        .await
        .unwrap();
    let room = WaitingRoom::new(redis.clone(), &config);

    println!("waiting-room benchmark, prefix {prefix}, {SAMPLES} sequential calls per figure");
    println!("| waiting | operation | p50 µs | p99 µs | mean µs |");
    println!("| --- | --- | --- | --- | --- |");
    // The first MAX_ACTIVE fans are admitted at once; the rest wait.
    let mut tokens = fill(&room, &redis, &prefix, Vec::new(), MAX_ACTIVE + 1_000).await;
    measure(&room, &redis, &prefix, &mut tokens).await;
    tokens = fill(&room, &redis, &prefix, tokens, MAX_ACTIVE + target).await;
    measure(&room, &redis, &prefix, &mut tokens).await;
    cleanup(&redis, &prefix).await;
}

/// Issues tokens (64 in flight) until `total` fans have joined; returns all tokens in arrival order.
async fn fill(
    room: &WaitingRoom,
    redis: &ConnectionManager,
    prefix: &str,
    mut tokens: Vec<String>,
    total: usize,
) -> Vec<String> {
    let started = Instant::now();
    let users: Vec<Uuid> = (tokens.len()..total).map(|_| Uuid::new_v4()).collect();
    for chunk in users.chunks(10_000) {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(format!("{prefix}:wr:known_users"));
        for u in chunk {
            cmd.arg(u.to_string());
        }
        cmd.query_async::<()>(&mut redis.clone()).await.unwrap();
    }
    let issued: Vec<String> = stream::iter(users)
        .map(|u| async move {
            match room.issue(u).await.unwrap() {
                Issued::Token(t) => t.token,
                Issued::UnknownUser => unreachable!("user was cached"),
            }
        })
        .buffered(64)
        .collect()
        .await;
    let added = issued.len();
    tokens.extend(issued);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "filled to {} fans ({added} issued in {secs:.1} s, {:.0}/s)",
        tokens.len(),
        to_f64(added) / secs
    );
    tokens
}

async fn measure(
    room: &WaitingRoom,
    redis: &ConnectionManager,
    prefix: &str,
    tokens: &mut Vec<String>,
) {
    let waiting = waiting_count(redis, prefix).await;
    // issue: new fans join the end of the line
    let users: Vec<String> = (0..SAMPLES).map(|_| Uuid::new_v4().to_string()).collect();
    redis::cmd("SADD")
        .arg(format!("{prefix}:wr:known_users"))
        .arg(&users)
        .query_async::<()>(&mut redis.clone())
        .await
        .unwrap();
    let issues = time_each(&users, |u| async move {
        assert!(matches!(
            room.issue(Uuid::parse_str(&u).unwrap()).await.unwrap(),
            Issued::Token(_)
        ));
    })
    .await;
    // poll: a fan in the middle of the line, again and again
    let middle = vec![tokens[MAX_ACTIVE + (tokens.len() - MAX_ACTIVE) / 2].clone(); SAMPLES];
    let polls = time_each(&middle, |t| async move {
        room.status(&t).await.unwrap().unwrap();
    })
    .await;
    // guard: active fans
    let guards = time_each(&tokens[..SAMPLES], |t| async move {
        room.authorize(&t).await.unwrap().unwrap();
    })
    .await;
    // admission step: the oldest active fans leave; each leave admits the head of the line
    let before = waiting_count(redis, prefix).await;
    let leavers: Vec<String> = tokens.drain(..SAMPLES).collect();
    let steps = time_each(&leavers, |t| async move {
        room.leave(&t).await.unwrap();
    })
    .await;
    assert_eq!(
        waiting_count(redis, prefix).await,
        before - SAMPLES,
        "each leave admitted one fan"
    );
    for (name, samples) in [
        ("issue", issues),
        ("poll (mid-line position)", polls),
        ("guard (active token)", guards),
        ("admission step (leave + admit head)", steps),
    ] {
        report(waiting, name, samples);
    }
}

async fn time_each<F, Fut>(items: &[String], f: F) -> Vec<Duration>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let started = Instant::now();
        f(item.clone()).await;
        out.push(started.elapsed());
    }
    out
}

fn report(waiting: usize, name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let pick = |q: f64| {
        let i = ((to_f64(samples.len()) * q) as usize).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e6
    };
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / to_f64(samples.len()) * 1e6;
    println!(
        "| {waiting} | {name} | {:.0} | {:.0} | {mean:.0} |",
        pick(0.5),
        pick(0.99)
    );
}

async fn waiting_count(redis: &ConnectionManager, prefix: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(format!("{prefix}:wr:waiting"))
        .query_async(&mut redis.clone())
        .await
        .unwrap()
}

async fn cleanup(redis: &ConnectionManager, prefix: &str) {
    let mut conn = redis.clone();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(keys)
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

fn to_f64(n: usize) -> f64 {
    n as f64
}

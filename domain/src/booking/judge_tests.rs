//! The batch's decisions (`Plan::decide`/`judge`) on hand-made snapshots: no
//! database, each rule alone and in the order a batch meets them.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::{Owned, Plan, SeatRow, Snapshot, StoredOutcome, Window};
use crate::{
    booking::HoldPolicy,
    jobs::{Outcome, ReserveJob},
};

const SCHEDULE: i64 = 7;
const POLICY: HoldPolicy = HoldPolicy {
    ttl: Duration::from_secs(300),
    max_seats_per_user: 4,
};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0)
        .single()
        .expect("a time")
}

/// Schedule 7, open from `at(0)` to `at(1000)`, seats 1–5 free at 10,000 won each.
fn snapshot() -> Snapshot {
    Snapshot {
        done: Vec::new(),
        schedules: vec![Window {
            id: SCHEDULE,
            booking_opens_at: at(0),
            booking_closes_at: at(1000),
        }],
        seats: (1..=5).map(|n| seat(n, "AVAILABLE", None)).collect(),
        owned: Vec::new(),
    }
}

fn seat(number: i16, status: &str, hold_expires_at: Option<DateTime<Utc>>) -> SeatRow {
    SeatRow {
        id: 100 + i64::from(number),
        schedule_id: SCHEDULE,
        number,
        price: 10_000,
        status: status.into(),
        reservation_id: (status != "AVAILABLE").then(Uuid::now_v7),
        hold_expires_at,
        version: 3,
    }
}

fn job(user: Uuid, seats: &[i16]) -> ReserveJob {
    ReserveJob {
        job_id: Uuid::now_v7(),
        user_id: user,
        schedule_id: SCHEDULE,
        seat_numbers: seats.to_vec(),
        accepted_at: at(0),
        request_id: None,
    }
}

fn code(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Succeeded(_) => "SUCCEEDED",
        Outcome::Failed { code, .. } => code,
    }
}

/// Decides `jobs` in order, as one batch; their codes.
fn codes<'a>(plan: &mut Plan<'a>, jobs: &'a [ReserveJob]) -> Vec<String> {
    jobs.iter()
        .map(|j| code(&plan.decide(j)).to_owned())
        .collect()
}

#[test]
fn a_hold_lists_its_seats_in_order_prices_them_and_lasts_the_ttl() {
    let snapshot = snapshot();
    let mut plan = Plan::new(&snapshot, at(10), &POLICY);
    let fan = job(Uuid::now_v7(), &[3, 1]);
    let outcome = plan.decide(&fan);
    let Outcome::Succeeded(hold) = outcome else {
        panic!("held: {outcome:?}")
    };
    assert_eq!(hold["seatNumbers"], serde_json::json!([1, 3]));
    assert_eq!(hold["totalPrice"], 20_000);
    let expires: DateTime<Utc> = serde_json::from_value(hold["expiresAt"].clone()).unwrap();
    assert_eq!(expires, at(310));
    let written: Vec<i64> = plan.seat_writes.iter().map(|(seat, _)| *seat).collect();
    assert_eq!(written, [103, 101], "one write per seat, the plan's seats");
    assert_eq!((plan.holds.len(), plan.fresh.len()), (1, 1));
}

#[test]
fn a_stored_outcome_is_replayed_and_nothing_is_written_again() {
    let mut snapshot = snapshot();
    let replayed = job(Uuid::now_v7(), &[1]);
    snapshot.done.push(StoredOutcome {
        job_id: replayed.job_id,
        status: "FAILED".into(),
        result: None,
        error_code: Some("SEAT_UNAVAILABLE".into()),
        error_message: Some("taken".into()),
    });
    let mut plan = Plan::new(&snapshot, at(10), &POLICY);
    assert_eq!(
        plan.decide(&replayed),
        Outcome::failed("SEAT_UNAVAILABLE", "taken")
    );
    assert!(plan.fresh.is_empty() && plan.seat_writes.is_empty());
}

#[test]
fn a_schedule_that_does_not_exist_or_is_not_open_holds_nothing() {
    let snapshot = snapshot();
    let user = Uuid::now_v7();
    let mut elsewhere = job(user, &[1]);
    elsewhere.schedule_id = 8;
    let mut plan = Plan::new(&snapshot, at(10), &POLICY);
    assert_eq!(code(&plan.decide(&elsewhere)), "SCHEDULE_NOT_FOUND");
    // The window is [opens, closes): open at its first instant, closed at its last.
    let one = [job(user, &[1])];
    for (now, expected) in [
        (at(-1), "BOOKING_CLOSED"),
        (at(0), "SUCCEEDED"),
        (at(999), "SUCCEEDED"),
        (at(1000), "BOOKING_CLOSED"),
    ] {
        let mut plan = Plan::new(&snapshot, now, &POLICY);
        assert_eq!(codes(&mut plan, &one), [expected], "at {now}");
    }
}

#[test]
fn the_per_person_limit_counts_what_is_owned_and_the_batchs_earlier_holds() {
    let mut snapshot = snapshot();
    let (owner, other) = (Uuid::now_v7(), Uuid::now_v7());
    snapshot.owned.push(Owned {
        user_id: owner,
        schedule_id: SCHEDULE,
        owned: 2,
    });
    let batch = [
        job(owner, &[1, 2, 3]),
        job(owner, &[1]),
        job(owner, &[2]),
        // 2 owned + 2 held by this batch = the limit of 4.
        job(owner, &[3]),
        job(other, &[3, 4, 5]),
    ];
    let mut plan = Plan::new(&snapshot, at(10), &POLICY);
    assert_eq!(
        codes(&mut plan, &batch),
        [
            "SEAT_LIMIT_EXCEEDED",
            "SUCCEEDED",
            "SUCCEEDED",
            "SEAT_LIMIT_EXCEEDED",
            "SUCCEEDED"
        ]
    );
}

#[test]
fn a_seat_is_unavailable_when_sold_live_held_missing_or_taken_earlier_in_the_batch() {
    let mut snapshot = snapshot();
    snapshot.seats[0] = seat(1, "SOLD", None);
    snapshot.seats[1] = seat(2, "HELD", Some(at(11)));
    // Sold, held until after now, not in the schedule, free, then (all or
    // none) one free seat with one an earlier job of the batch took.
    let batch = [&[1][..], &[2], &[6], &[3], &[4, 3]].map(|seats| job(Uuid::now_v7(), seats));
    let mut plan = Plan::new(&snapshot, at(10), &POLICY);
    assert_eq!(
        codes(&mut plan, &batch),
        [
            "SEAT_UNAVAILABLE",
            "SEAT_UNAVAILABLE",
            "SEAT_UNAVAILABLE",
            "SUCCEEDED",
            "SEAT_UNAVAILABLE"
        ]
    );
    assert_eq!(plan.seat_writes.len(), 1, "only the one hold writes");
}

#[test]
fn an_overdue_hold_is_free_and_expired_by_the_batch_that_takes_its_seat() {
    let mut snapshot = snapshot();
    snapshot.seats[0] = seat(1, "HELD", Some(at(10)));
    let overdue = snapshot.seats[0].reservation_id;
    let taker = [job(Uuid::now_v7(), &[1])];
    let mut plan = Plan::new(&snapshot, at(10), &POLICY);
    assert_eq!(
        codes(&mut plan, &taker),
        ["SUCCEEDED"],
        "overdue at its expiry instant"
    );
    assert_eq!(
        plan.overdue.iter().copied().collect::<Vec<_>>(),
        Vec::from_iter(overdue)
    );
}

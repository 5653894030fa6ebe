//! Reserve jobs, settled together: the reserves a worker holds at one moment
//! run in one transaction of three or four statements whatever their number —
//! lock, read, (expire overdue holds), write — instead of two transactions and
//! nine statements each. CPU, not `fsync`, limits this machine, and per-statement
//! work (parse, plan, executor start, round trip) was most of a hold's cost.
//!
//! Jobs stay independent. They are judged one after another in memory (a seat
//! taken by an earlier job of the batch is unavailable to a later one; the
//! per-person count includes the batch's earlier holds), and every seat write is
//! still version-checked. If a check fails (another transaction got there
//! first) or a statement fails, the whole transaction rolls back with nothing
//! written, and the caller runs each job alone with [`reserve`] — so one job's
//! conflict or error never decides another job's outcome.
//!
//! Lock order: advisory locks per (user, schedule) ascending, then any overdue
//! reservations, then every seat row the batch writes in ascending id order,
//! all locked by the batch's first seat-writing statement before it writes one.
//! Batches wanting the same seats in other job orders therefore queue behind
//! each other instead of deadlocking (each would wait `deadlock_timeout`, then
//! one would re-run all its jobs alone).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Hold, HoldPolicy};
use crate::{
    error::{Error, Result},
    jobs::{Outcome, ReserveJob, outcomes},
    retry,
};

/// Runs one reserve job: all requested seats or none, idempotent per job id,
/// retried with backoff while other transactions win the race for its seats.
pub async fn reserve(
    db: &DatabaseConnection,
    job: &ReserveJob,
    policy: &HoldPolicy,
) -> Result<Outcome> {
    for n in 0..retry::MAX_OPTIMISTIC_ATTEMPTS {
        match settle_batch(db, std::slice::from_ref(job), policy).await {
            Ok(Some(mut outcomes)) => return Ok(outcomes.swap_remove(0)),
            Ok(None) => {}
            // The user was deleted after the job was accepted: final, not a retry.
            Err(e) if retry::violates(&e, "reservations_user_id_fkey") => {
                let message = format!("user {} does not exist; nothing was held", job.user_id);
                return record_alone(db, job, Outcome::failed("USER_NOT_FOUND", message)).await;
            }
            // Another delivery of this job committed first: its outcome stands.
            Err(e) if retry::is_duplicate_outcome(&e) => {
                return outcomes::find(db, job.job_id).await?.ok_or(e);
            }
            Err(e) if retry::is_conflict(&e) => {}
            Err(e) => return Err(e),
        }
        retry::backoff(n).await;
    }
    Err(Error::Contention)
}

/// Settles `jobs` in one transaction and returns their outcomes in order
/// (stored outcomes replayed). `Ok(None)`: another transaction changed a seat
/// the batch meant to hold, and nothing was written; an `Err` likewise wrote
/// nothing. Either way the caller should run each job alone with [`reserve`].
pub async fn settle_batch(
    db: &DatabaseConnection,
    jobs: &[ReserveJob],
    policy: &HoldPolicy,
) -> Result<Option<Vec<Outcome>>> {
    let txn = db.begin().await?;
    let now = lock_user_schedules(&txn, jobs).await?;
    let snapshot = read_snapshot(&txn, jobs, now).await?;
    let mut plan = Plan::new(&snapshot, now, policy);
    let outcomes: Vec<Outcome> = jobs.iter().map(|job| plan.decide(job)).collect();
    if plan.fresh.is_empty() {
        txn.commit().await?;
        return Ok(Some(outcomes));
    }
    if !plan.overdue.is_empty() {
        // The expiry is the batch's first seat write: it locks the batch's seats too, in order.
        let overdue: Vec<Uuid> = plan.overdue.iter().copied().collect();
        let seats: Vec<i64> = plan.seat_writes.iter().map(|(seat, _)| *seat).collect();
        for (seat, version) in super::expire_held(&txn, &overdue, &seats).await? {
            plan.versions.insert(seat, version);
        }
    }
    if write(&txn, &plan).await? != plan.seat_writes.len() {
        txn.rollback().await?;
        return Ok(None);
    }
    txn.commit().await?;
    Ok(Some(outcomes))
}

/// Records a failure decided outside a batch (no effect to write with it).
async fn record_alone(
    db: &DatabaseConnection,
    job: &ReserveJob,
    outcome: Outcome,
) -> Result<Outcome> {
    let inserted = outcomes::insert(
        db,
        job.job_id,
        crate::jobs::JobKind::Reserve,
        job.user_id,
        job.accepted_at,
        &outcome,
    )
    .await;
    match inserted {
        Ok(()) => Ok(outcome),
        Err(e) if retry::is_duplicate_outcome(&e) => outcomes::find(db, job.job_id).await?.ok_or(e),
        Err(e) => Err(e),
    }
}

/// A statement answered in a shape it cannot have: a bug, surfaced as a database error.
fn unexpected(what: impl Into<String>) -> Error {
    Error::Database(sea_orm::DbErr::Custom(what.into()))
}

/// The one row every statement of the batch answers with.
async fn one_row<const N: usize>(
    txn: &DatabaseTransaction,
    sql: &str,
    values: [sea_orm::Value; N],
) -> Result<sea_orm::QueryResult> {
    txn.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?
    .ok_or_else(|| {
        unexpected(format!(
            "no row from: {}",
            sql.chars().take(60).collect::<String>()
        ))
    })
}

/// Takes a transaction-scoped advisory lock per (user, schedule) of the batch,
/// in ascending key order so batches cannot deadlock on them, and reads
/// PostgreSQL's `now()`, the clock of every judgment in the transaction. Two
/// reserves of one user then cannot both count the same per-person headroom,
/// while different users never wait on each other. The read that follows is a
/// statement of its own, so under READ COMMITTED its snapshot sees every
/// reserve of these users that committed before the locks were granted.
async fn lock_user_schedules(
    txn: &DatabaseTransaction,
    jobs: &[ReserveJob],
) -> Result<DateTime<Utc>> {
    let keys: Vec<String> = jobs
        .iter()
        .map(|j| format!("seat-limit|{}|{}", j.user_id, j.schedule_id))
        .collect();
    let row = one_row(
        txn,
        "SELECT now() AS db_now, (SELECT count(pg_advisory_xact_lock(k)) FROM \
           (SELECT DISTINCT hashtextextended(key, 0) AS k FROM unnest($1::text[]) key ORDER BY 1) l) \
           AS locked",
        [keys.into()],
    )
    .await?;
    Ok(row.try_get::<DateTime<Utc>>("", "db_now")?)
}

/// Everything the decisions need, read in one statement as one JSON document.
#[derive(Debug, Deserialize)]
struct Snapshot {
    done: Vec<StoredOutcome>,
    schedules: Vec<Window>,
    seats: Vec<SeatRow>,
    owned: Vec<Owned>,
}

#[derive(Debug, Deserialize)]
struct StoredOutcome {
    job_id: Uuid,
    status: String,
    result: Option<Value>,
    error_code: Option<String>,
    error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Window {
    id: i64,
    booking_opens_at: DateTime<Utc>,
    booking_closes_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct SeatRow {
    id: i64,
    schedule_id: i64,
    number: i16,
    price: i64,
    status: String,
    reservation_id: Option<Uuid>,
    hold_expires_at: Option<DateTime<Utc>>,
    version: i64,
}

#[derive(Debug, Deserialize)]
struct Owned {
    user_id: Uuid,
    schedule_id: i64,
    owned: i64,
}

/// Reads the batch's stored outcomes (replays), schedules, requested seats and
/// each (user, schedule)'s live seats, through the primary key and the seat and
/// live-reservation indexes.
async fn read_snapshot(
    txn: &DatabaseTransaction,
    jobs: &[ReserveJob],
    now: DateTime<Utc>,
) -> Result<Snapshot> {
    let job_ids: Vec<Uuid> = jobs.iter().map(|j| j.job_id).collect();
    let (mut schedules, mut pair_schedules, mut pair_numbers) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut users, mut user_schedules) = (Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    for job in jobs {
        schedules.push(job.schedule_id);
        for n in &job.seat_numbers {
            pair_schedules.push(job.schedule_id);
            pair_numbers.push(*n);
        }
        if seen.insert((job.user_id, job.schedule_id)) {
            users.push(job.user_id);
            user_schedules.push(job.schedule_id);
        }
    }
    let row = one_row(
        txn,
        SNAPSHOT_SQL,
        [
            job_ids.into(),
            schedules.into(),
            pair_schedules.into(),
            pair_numbers.into(),
            now.into(),
            users.into(),
            user_schedules.into(),
        ],
    )
    .await?;
    let document: Value = row.try_get("", "snapshot")?;
    serde_json::from_value(document).map_err(|e| unexpected(format!("snapshot: {e}")))
}

const SNAPSHOT_SQL: &str = "SELECT json_build_object(
  'done', (SELECT coalesce(json_agg(d), '[]') FROM (
      SELECT job_id, status, result, error_code, error_message
      FROM job_outcomes WHERE job_id = ANY($1)) d),
  'schedules', (SELECT coalesce(json_agg(w), '[]') FROM (
      SELECT id, booking_opens_at, booking_closes_at FROM schedules WHERE id = ANY($2)) w),
  'seats', (SELECT coalesce(json_agg(s), '[]') FROM (
      SELECT s.id, s.schedule_id, s.number, s.price, s.status, s.reservation_id,
             s.hold_expires_at, s.version
      FROM seats s JOIN (SELECT DISTINCT * FROM unnest($3::bigint[], $4::smallint[])) q(schedule_id, number)
        ON s.schedule_id = q.schedule_id AND s.number = q.number) s),
  'owned', (SELECT coalesce(json_agg(o), '[]') FROM (
      SELECT q.user_id, q.schedule_id,
             (SELECT count(*) FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
              WHERE r.user_id = q.user_id AND r.schedule_id = q.schedule_id
                AND (r.status = 'CONFIRMED' OR (r.status = 'HELD' AND r.expires_at > $5))) AS owned
      FROM unnest($6::uuid[], $7::bigint[]) q(user_id, schedule_id)) o)
) AS snapshot";

/// The batch's decisions so far and the writes they need.
struct Plan<'a> {
    now: DateTime<Utc>,
    policy: &'a HoldPolicy,
    done: HashMap<Uuid, Outcome>,
    windows: HashMap<i64, &'a Window>,
    seats: HashMap<(i64, i16), &'a SeatRow>,
    owned: HashMap<(Uuid, i64), i64>,
    /// Seats the batch holds, each with the reservation that holds it.
    claimed: HashMap<i64, Uuid>,
    /// The seat versions the writes expect (after expiring overdue holds).
    versions: HashMap<i64, i64>,
    /// Overdue holds on seats the batch holds: expired first.
    overdue: HashSet<Uuid>,
    /// New holds: (reservation id, job, total price).
    holds: Vec<(Uuid, &'a ReserveJob, i64)>,
    /// Outcomes to record: (job, outcome).
    fresh: Vec<(&'a ReserveJob, Outcome)>,
    /// Seat writes: (seat id, reservation id).
    seat_writes: Vec<(i64, Uuid)>,
}

impl<'a> Plan<'a> {
    fn new(snapshot: &'a Snapshot, now: DateTime<Utc>, policy: &'a HoldPolicy) -> Self {
        let done = snapshot
            .done
            .iter()
            .map(|o| {
                let outcome = match (o.status.as_str(), &o.result) {
                    ("SUCCEEDED", Some(result)) => Outcome::Succeeded(result.clone()),
                    _ => Outcome::Failed {
                        code: o.error_code.clone().unwrap_or_default(),
                        message: o.error_message.clone().unwrap_or_default(),
                    },
                };
                (o.job_id, outcome)
            })
            .collect();
        Self {
            now,
            policy,
            done,
            windows: snapshot.schedules.iter().map(|w| (w.id, w)).collect(),
            seats: snapshot
                .seats
                .iter()
                .map(|s| ((s.schedule_id, s.number), s))
                .collect(),
            owned: snapshot
                .owned
                .iter()
                .map(|o| ((o.user_id, o.schedule_id), o.owned))
                .collect(),
            claimed: HashMap::new(),
            versions: snapshot.seats.iter().map(|s| (s.id, s.version)).collect(),
            overdue: HashSet::new(),
            holds: Vec::new(),
            fresh: Vec::new(),
            seat_writes: Vec::new(),
        }
    }

    /// Judges `job` against the snapshot and the batch's earlier decisions.
    fn decide(&mut self, job: &'a ReserveJob) -> Outcome {
        if let Some(done) = self.done.get(&job.job_id) {
            return done.clone();
        }
        let outcome = match self.judge(job) {
            Ok(hold) => Outcome::Succeeded(serde_json::to_value(&hold).unwrap_or(Value::Null)),
            Err((code, message)) => Outcome::failed(code, message),
        };
        self.fresh.push((job, outcome.clone()));
        outcome
    }

    fn judge(&mut self, job: &'a ReserveJob) -> Result<Hold, (&'static str, String)> {
        let schedule = job.schedule_id;
        let Some(window) = self.windows.get(&schedule) else {
            return Err((
                "SCHEDULE_NOT_FOUND",
                format!("schedule {schedule} does not exist"),
            ));
        };
        if self.now < window.booking_opens_at || self.now >= window.booking_closes_at {
            return Err((
                "BOOKING_CLOSED",
                format!("booking for schedule {schedule} is not open"),
            ));
        }
        let owned = self
            .owned
            .get(&(job.user_id, schedule))
            .copied()
            .unwrap_or(0);
        let allowed = i64::from(self.policy.max_seats_per_user);
        if owned + i64::try_from(job.seat_numbers.len()).unwrap_or(i64::MAX) > allowed {
            return Err((
                "SEAT_LIMIT_EXCEEDED",
                format!(
                    "you already hold or own {owned} seat(s) of schedule {schedule}; at most \
                     {allowed} per person; nothing was held"
                ),
            ));
        }
        let rows: Vec<&SeatRow> = job
            .seat_numbers
            .iter()
            .filter_map(|n| self.seats.get(&(schedule, *n)).copied())
            .collect();
        let taken: Vec<i16> = rows
            .iter()
            .filter(|s| self.claimed.contains_key(&s.id) || self.is_live(s))
            .map(|s| s.number)
            .collect();
        if !taken.is_empty() || rows.len() != job.seat_numbers.len() {
            return Err((
                "SEAT_UNAVAILABLE",
                format!(
                    "seats {taken:?} of schedule {schedule} are not available; nothing was held"
                ),
            ));
        }
        let reservation_id = Uuid::now_v7();
        let expires_at = self.expires_at();
        let total_price = rows.iter().map(|s| s.price).sum();
        for seat in &rows {
            // An overdue hold on a requested seat is expired here, whether or not its expiry job ran.
            if seat.status == "HELD" {
                self.overdue.extend(seat.reservation_id);
            }
            self.claimed.insert(seat.id, reservation_id);
            self.seat_writes.push((seat.id, reservation_id));
        }
        *self.owned.entry((job.user_id, schedule)).or_default() +=
            i64::try_from(rows.len()).unwrap_or(i64::MAX);
        self.holds.push((reservation_id, job, total_price));
        let mut seat_numbers: Vec<i16> = rows.iter().map(|s| s.number).collect();
        seat_numbers.sort_unstable();
        Ok(Hold {
            reservation_id,
            schedule_id: schedule,
            seat_numbers,
            total_price,
            expires_at,
        })
    }

    /// Sold, or held and not yet overdue.
    fn is_live(&self, seat: &SeatRow) -> bool {
        seat.status == "SOLD"
            || (seat.status == "HELD" && seat.hold_expires_at.is_some_and(|t| t > self.now))
    }

    fn expires_at(&self) -> DateTime<Utc> {
        self.now + chrono::Duration::from_std(self.policy.ttl).unwrap_or_default()
    }
}

/// Writes the whole plan in one statement: the reservations, their seats
/// (version-checked), the seat links and every fresh outcome. Returns how many
/// seats were held; fewer than planned means another transaction changed one.
async fn write(txn: &DatabaseTransaction, plan: &Plan<'_>) -> Result<usize> {
    let document = json!({
        "reservations": plan.holds.iter().map(|(id, job, total)| json!({
            "id": id, "user_id": job.user_id, "schedule_id": job.schedule_id,
            "total_price": total, "job_id": job.job_id,
        })).collect::<Vec<_>>(),
        "seats": plan.seat_writes.iter().map(|(seat, reservation)| json!({
            "id": seat, "version": plan.versions.get(seat), "reservation_id": reservation,
        })).collect::<Vec<_>>(),
        "outcomes": plan.fresh.iter().map(|(job, outcome)| {
            let (status, result, code, message) = match outcome {
                Outcome::Succeeded(v) => ("SUCCEEDED", Some(v), None, None),
                Outcome::Failed { code, message } => ("FAILED", None, Some(code), Some(message)),
            };
            json!({
                "job_id": job.job_id, "user_id": job.user_id, "status": status, "result": result,
                "error_code": code, "error_message": message, "accepted_at": job.accepted_at,
            })
        }).collect::<Vec<_>>(),
    });
    let row = one_row(
        txn,
        WRITE_SQL,
        [
            document.into(),
            plan.expires_at().into(),
            plan.now.into(),
            Utc::now().into(),
        ],
    )
    .await?;
    let held: i64 = row.try_get("", "held")?;
    Ok(usize::try_from(held).unwrap_or(0))
}

/// `locked` takes the seats' row locks in ascending id order before `held`
/// writes any (an update touches a row only once `locked` has returned it, so
/// every lower seat of the batch is locked by then): two batches wanting the
/// same seats in opposite job orders then queue instead of deadlocking. An
/// `UPDATE … FROM` alone locks in whatever order its plan reads the rows.
/// Foreign keys between the parts are checked at the end of the statement, so
/// seats and links may point at reservations inserted beside them. Every part
/// reads the plan from `$1` itself: joined as a CTE row, the whole document
/// rode along with each locked seat into the lock step's sort, so a batch of
/// 256 sorted ~48 MB on disk and cost grew with the square of the batch (#28).
const WRITE_SQL: &str = "WITH locked AS MATERIALIZED (
  SELECT id FROM seats
  WHERE id IN (SELECT v.id FROM jsonb_to_recordset($1::jsonb->'seats') AS v(id bigint))
  ORDER BY id FOR NO KEY UPDATE),
res AS (
  INSERT INTO reservations (id, user_id, schedule_id, status, total_price, expires_at, version,
                            job_id, created_at, updated_at)
  SELECT r.id, r.user_id, r.schedule_id, 'HELD', r.total_price, $2, 0, r.job_id, $3, $3
  FROM jsonb_to_recordset($1::jsonb->'reservations')
       AS r(id uuid, user_id uuid, schedule_id bigint, total_price bigint, job_id uuid)),
held AS (
  UPDATE seats s SET status = 'HELD', reservation_id = v.reservation_id, hold_expires_at = $2,
                     version = s.version + 1
  FROM locked l
  JOIN jsonb_to_recordset($1::jsonb->'seats') AS v(id bigint, version bigint, reservation_id uuid)
    ON v.id = l.id
  WHERE s.id = l.id AND s.version = v.version AND s.status = 'AVAILABLE'
  RETURNING s.id),
links AS (
  INSERT INTO reservation_seats (reservation_id, seat_id, reservation_status)
  SELECT v.reservation_id, v.id, 'HELD'
  FROM jsonb_to_recordset($1::jsonb->'seats') AS v(id bigint, reservation_id uuid)),
outs AS (
  INSERT INTO job_outcomes (job_id, kind, user_id, status, result, error_code, error_message,
                            accepted_at, finished_at)
  SELECT o.job_id, 'RESERVE', o.user_id, o.status, o.result, o.error_code, o.error_message,
         o.accepted_at, $4
  FROM jsonb_to_recordset($1::jsonb->'outcomes')
       AS o(job_id uuid, user_id uuid, status text, result jsonb, error_code text,
            error_message text, accepted_at timestamptz))
SELECT count(*) AS held FROM held";

#[cfg(test)]
#[path = "judge_tests.rs"]
mod judge_tests;

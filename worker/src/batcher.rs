//! Settles this worker's reserve jobs in batches (see
//! `domain::booking::settle_batch`).
//!
//! Each reserve handler hands its job to one batcher task and awaits its
//! outcome, recorded: the batch counts its jobs' deliveries and records them
//! RUNNING in one Redis script call, and their final statuses in another (a
//! job past its delivery cap is finalized as failed instead of run). The batcher takes every job waiting at that moment (up to
//! `RESERVE_BATCH_MAX`) into one transaction, so batches grow with load: while
//! `RESERVE_BATCHES_IN_FLIGHT` batches are in PostgreSQL the next one gathers,
//! and a job arriving at an idle worker goes through at once, alone. A batch
//! that loses a race or fails is re-run job by job in tasks of their own
//! (`domain::booking::reserve`, with its retries), so the batcher never waits
//! out another job's backoff. The holds a batch grants get one expiry task
//! between them, scheduled before any of its jobs is answered (and so before
//! any is acknowledged): a job redelivered after a crash replays its outcome
//! and schedules it again.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use domain::{
    booking::HoldPolicy,
    jobs::{JobHeader, JobKind, Outcome, ReserveJob, producer::JobProducer, status::StatusStore},
    ops::metrics,
};
use sea_orm::DatabaseConnection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use uuid::Uuid;

type Reply = oneshot::Sender<domain::Result<Outcome>>;

/// The handle reserve handlers submit through; cheap to clone.
#[derive(Clone, Debug)]
pub struct ReserveBatcher {
    tx: mpsc::UnboundedSender<(ReserveJob, Reply)>,
}

/// What one batcher task needs.
struct Settler {
    db: DatabaseConnection,
    producer: JobProducer,
    deliveries: Deliveries,
    policy: HoldPolicy,
    shape: BatchShape,
}

/// Where a batch records its jobs' statuses, and how many deliveries a job
/// gets (`WORKER_MAX_ATTEMPTS`) before it is finalized as failed.
#[derive(Clone, Debug)]
pub struct Deliveries {
    pub status: StatusStore,
    pub max_attempts: u64,
}

/// How a worker forms reserve batches (`RESERVE_BATCH_*` settings).
#[derive(Clone, Copy, Debug)]
pub struct BatchShape {
    /// Most jobs in one batch.
    pub max: usize,
    /// How long to wait for more jobs after the first (zero: never wait).
    pub linger: Duration,
    /// Batch transactions open at once.
    pub in_flight: usize,
}

impl BatchShape {
    /// The shape configured by `config`.
    pub fn from_config(config: &domain::Config) -> Self {
        Self {
            max: config.reserve_batch_max,
            linger: config.reserve_batch_linger,
            in_flight: config.reserve_batches_in_flight,
        }
    }
}

impl ReserveBatcher {
    /// Starts the batcher task; it ends when every handle is dropped.
    pub fn start(
        db: DatabaseConnection,
        producer: JobProducer,
        deliveries: Deliveries,
        policy: HoldPolicy,
        shape: BatchShape,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        // At least one of each: an empty batch or no slot would stall every reserve.
        let shape = BatchShape {
            max: shape.max.max(1),
            in_flight: shape.in_flight.max(1),
            ..shape
        };
        let settler = Settler {
            db,
            producer,
            deliveries,
            policy,
            shape,
        };
        tokio::spawn(Arc::new(settler).run(rx));
        Self { tx }
    }

    /// Runs `job` in the next batch and returns its outcome once its final
    /// status is recorded; `Err`: the queue should deliver it again. Unbounded channel:
    /// apalis' concurrency already bounds the jobs in flight.
    pub async fn reserve(&self, job: ReserveJob) -> domain::Result<Outcome> {
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send((job, reply))
            .map_err(|_| domain::Error::Queue("the reserve batcher has stopped".into()))?;
        outcome
            .await
            .map_err(|_| domain::Error::Queue("the reserve batcher dropped a job".into()))?
    }
}

impl Settler {
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<(ReserveJob, Reply)>) {
        let slots = Arc::new(Semaphore::new(self.shape.in_flight));
        loop {
            // A batch forms while the slots are taken, so waiting for one is what grows it.
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            if !self.shape.linger.is_zero() {
                let until = tokio::time::Instant::now() + self.shape.linger;
                while batch.len() < self.shape.max {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        _ => break,
                    }
                }
            }
            while batch.len() < self.shape.max {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let settler = Arc::clone(&self);
            tokio::spawn(async move { settler.settle(batch, slot).await });
        }
    }

    /// Settles one batch; `slot` is given back once PostgreSQL is done with it.
    async fn settle(&self, batch: Vec<(ReserveJob, Reply)>, slot: OwnedSemaphorePermit) {
        let headers: Vec<JobHeader> = batch.iter().map(|(job, _)| JobHeader::from(job)).collect();
        let status = &self.deliveries.status;
        let counted = match status.start_deliveries(JobKind::Reserve, &headers).await {
            Ok(counted) => counted,
            Err(error) => {
                drop(slot);
                let message = format!("could not record the batch RUNNING: {error}");
                for (_, reply) in batch {
                    let _ = reply.send(Err(domain::Error::Queue(message.clone())));
                }
                return;
            }
        };
        // Past the cap: finalized as failed (rare: a job that kept failing).
        let (mut run, mut exhausted) = (Vec::new(), Vec::new());
        for (entry, n) in batch.into_iter().zip(counted) {
            if n > self.deliveries.max_attempts {
                exhausted.push(entry);
            } else {
                run.push(entry);
            }
        }
        for (job, reply) in exhausted {
            let (db, status) = (self.db.clone(), status.clone());
            tokio::spawn(async move {
                let finalized = crate::handlers::finalize_exhausted(
                    &db,
                    &status,
                    JobHeader::from(&job),
                    JobKind::Reserve,
                );
                let _ = reply.send(finalized.await);
            });
        }
        if run.is_empty() {
            return;
        }
        let (jobs, replies): (Vec<ReserveJob>, Vec<Reply>) = run.into_iter().unzip();
        metrics::reserve_batch_opened(jobs.len());
        let settled = domain::booking::settle_batch(&self.db, &jobs, &self.policy).await;
        drop(slot);
        let result = match &settled {
            Ok(Some(_)) => "committed",
            Ok(None) => "conflict",
            Err(_) => "error",
        };
        metrics::reserve_batch_closed(jobs.len(), result);
        match settled {
            Ok(Some(outcomes)) => {
                schedule_expiries(&self.producer, &outcomes).await;
                let finals: Vec<_> = jobs.iter().map(JobHeader::from).zip(&outcomes).collect();
                match status.mark_finals(JobKind::Reserve, &finals).await {
                    Ok(()) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    // Committed but not recorded: redelivered, each replays its outcome.
                    Err(error) => {
                        let message = format!("could not record the batch's outcomes: {error}");
                        for reply in replies {
                            let _ = reply.send(Err(domain::Error::Queue(message.clone())));
                        }
                    }
                }
            }
            other => {
                if let Err(error) = other {
                    tracing::debug!(%error, jobs = jobs.len(), "reserve batch failed; each job runs alone");
                }
                for (job, reply) in jobs.into_iter().zip(replies) {
                    let (db, producer, status, policy) = (
                        self.db.clone(),
                        self.producer.clone(),
                        status.clone(),
                        self.policy,
                    );
                    tokio::spawn(async move {
                        let _ =
                            reply.send(settle_alone(&db, &producer, &status, &job, &policy).await);
                    });
                }
            }
        }
    }
}

/// Runs one job of a batch that could not commit as one, with its retries,
/// and records its final status.
async fn settle_alone(
    db: &DatabaseConnection,
    producer: &JobProducer,
    status: &StatusStore,
    job: &ReserveJob,
    policy: &HoldPolicy,
) -> domain::Result<Outcome> {
    let outcome = domain::booking::reserve(db, job, policy).await?;
    schedule_expiries(producer, std::slice::from_ref(&outcome)).await;
    status
        .mark_finals(JobKind::Reserve, &[(JobHeader::from(job), &outcome)])
        .await?;
    Ok(outcome)
}

/// Schedules one expiry task per expiry time among the holds in `outcomes`
/// (a batch's fresh holds share one; replayed ones keep their own). Also for a
/// replayed outcome: its first delivery may have died before scheduling it. A
/// failure is logged, not retried: the sweep expires holds whose task is missing.
async fn schedule_expiries(producer: &JobProducer, outcomes: &[Outcome]) {
    let mut by_time: BTreeMap<DateTime<Utc>, Vec<Uuid>> = BTreeMap::new();
    for outcome in outcomes {
        if let Outcome::Succeeded(hold) = outcome
            && let Some((id, at)) = hold_expiry(hold)
        {
            by_time.entry(at).or_default().push(id);
        }
    }
    for (at, ids) in by_time {
        if let Err(error) = producer.schedule_expiry(&ids, at).await {
            tracing::warn!(%error, holds = ids.len(), "could not schedule the holds' expiry; the sweep will");
        }
    }
}

/// The reservation id and expiry time in a reserve job's result.
fn hold_expiry(hold: &serde_json::Value) -> Option<(Uuid, DateTime<Utc>)> {
    let id = Uuid::parse_str(hold["reservationId"].as_str()?).ok()?;
    let at = DateTime::parse_from_rfc3339(hold["expiresAt"].as_str()?).ok()?;
    Some((id, at.with_timezone(&Utc)))
}

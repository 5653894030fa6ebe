//! Settles this worker's reserve jobs in batches (see
//! `domain::booking::settle_batch`).
//!
//! Each reserve handler hands its job to one batcher task and awaits its
//! outcome. The batcher takes every job waiting at that moment (up to
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
    jobs::{Outcome, ReserveJob, producer::JobProducer},
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
    policy: HoldPolicy,
    shape: BatchShape,
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
            policy,
            shape,
        };
        tokio::spawn(Arc::new(settler).run(rx));
        Self { tx }
    }

    /// Runs `job` in the next batch and returns its outcome. Unbounded channel:
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
        let (jobs, replies): (Vec<ReserveJob>, Vec<Reply>) = batch.into_iter().unzip();
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
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            other => {
                if let Err(error) = other {
                    tracing::debug!(%error, jobs = jobs.len(), "reserve batch failed; each job runs alone");
                }
                for (job, reply) in jobs.into_iter().zip(replies) {
                    let (db, producer, policy) =
                        (self.db.clone(), self.producer.clone(), self.policy);
                    tokio::spawn(async move {
                        let outcome = domain::booking::reserve(&db, &job, &policy).await;
                        if let Ok(outcome) = &outcome {
                            schedule_expiries(&producer, std::slice::from_ref(outcome)).await;
                        }
                        let _ = reply.send(outcome);
                    });
                }
            }
        }
    }
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

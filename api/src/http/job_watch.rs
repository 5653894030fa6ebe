//! Long-poll support: one Redis pub/sub subscription per api process tells
//! waiting requests the moment their job is final — no per-client polling loop.
//!
//! Each job with waiters has one entry: a `watch` channel whose value turns
//! to the job's final status (or to "final, read it" for an announcement
//! without one) when the job is announced. A request subscribes once ([`JobWatcher::watch`])
//! and holds a [`Watch`]; dropping it — on any way out of the handler, error
//! paths included — removes the entry once its last waiter is gone. Every step
//! is O(1) under the lock, whatever the number of waiters of one job.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use domain::jobs::status::{self, JobStatus};
use futures::StreamExt;
use tokio::sync::watch;
use uuid::Uuid;

type Entries = Arc<Mutex<HashMap<Uuid, watch::Sender<Announced>>>>;

/// What a waiter has heard of its job.
#[derive(Clone, Debug, Default)]
enum Announced {
    #[default]
    Not,
    /// Final; with the status when the announcement carried it.
    Final(Option<Arc<JobStatus>>),
}

/// Registry of requests waiting for jobs to finish.
#[derive(Clone, Debug, Default)]
pub struct JobWatcher {
    entries: Entries,
}

/// One request's subscription to one job's announcement.
#[derive(Debug)]
pub struct Watch {
    id: Uuid,
    rx: Option<watch::Receiver<Announced>>,
    entries: Entries,
}

impl JobWatcher {
    /// Starts the subscription task (it reconnects on its own while the process lives).
    pub fn start(redis_url: String, channel: String) -> Self {
        let watcher = Self::default();
        let entries = Arc::clone(&watcher.entries);
        tokio::spawn(async move {
            loop {
                if let Err(error) = listen(&redis_url, &channel, &entries).await {
                    tracing::warn!(%error, "job-status subscription lost; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        watcher
    }

    /// Subscribes to `job_id`'s announcement. Subscribe before reading the
    /// status, so an announcement between the two is not missed.
    pub fn watch(&self, job_id: Uuid) -> Watch {
        let rx = self.entries.lock().ok().map(|mut map| {
            map.entry(job_id)
                .or_insert_with(|| watch::channel(Announced::Not).0)
                .subscribe()
        });
        Watch {
            id: job_id,
            rx,
            entries: Arc::clone(&self.entries),
        }
    }

    /// Jobs with at least one waiter (for tests and the leak check).
    pub fn watched_jobs(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Watch {
    /// Resolves once the job has been announced final (at once if it already
    /// was), with its final status when the announcement carried it.
    pub async fn announced(&mut self) -> Option<Arc<JobStatus>> {
        match self.rx.as_mut() {
            Some(rx) => match rx.wait_for(|a| matches!(a, Announced::Final(_))).await {
                Ok(heard) => match &*heard {
                    Announced::Final(status) => status.clone(),
                    Announced::Not => None,
                },
                // The sender is gone (cannot happen while the entry lives): read it.
                Err(_) => None,
            },
            // The registry was unusable: fall back to the caller's re-check timer.
            None => std::future::pending().await,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Ok(mut map) = self.entries.lock()
            && map.get(&self.id).is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&self.id);
        }
    }
}

async fn listen(redis_url: &str, channel: &str, entries: &Entries) -> redis::RedisResult<()> {
    let mut pubsub = redis::Client::open(redis_url)?.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Some((id, carried)) = msg
            .get_payload::<String>()
            .ok()
            .and_then(|p| status::announced(&p))
        else {
            continue;
        };
        // Announce without removing: the waiters' `Watch`es remove the entry as they leave.
        if let Some(tx) = entries.lock().ok().and_then(|map| map.get(&id).cloned()) {
            tx.send_replace(Announced::Final(carried.map(Arc::new)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_waiter_to_leave_removes_the_entry_on_every_path() {
        let w = JobWatcher::default();
        let id = Uuid::now_v7();
        let (a, b) = (w.watch(id), w.watch(id));
        assert_eq!(w.watched_jobs(), 1, "one entry per job, not per waiter");
        drop(a);
        assert_eq!(w.watched_jobs(), 1, "a live waiter keeps it");
        drop(b);
        assert_eq!(w.watched_jobs(), 0);
    }

    #[tokio::test]
    async fn an_announcement_wakes_every_waiter_even_one_that_subscribed_before_it_waited() {
        let w = JobWatcher::default();
        let id = Uuid::now_v7();
        let (mut a, mut b) = (w.watch(id), w.watch(id));
        let tx = w.entries.lock().map(|m| m.get(&id).cloned()).ok().flatten();
        tx.expect("an entry").send_replace(Announced::Final(None));
        // Both resolve although neither was polling when the announcement came.
        tokio::time::timeout(Duration::from_secs(1), async {
            a.announced().await;
            b.announced().await;
        })
        .await
        .expect("announced");
    }

    #[test]
    fn ten_thousand_waiters_of_one_job_leave_nothing_behind() {
        let w = JobWatcher::default();
        let id = Uuid::now_v7();
        let watches: Vec<_> = (0..10_000).map(|_| w.watch(id)).collect();
        assert_eq!(w.watched_jobs(), 1);
        drop(watches);
        assert_eq!(w.watched_jobs(), 0);
    }
}

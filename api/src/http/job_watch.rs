//! Long-poll support: one Redis pub/sub subscription per api process tells
//! waiting requests the moment their job is final — no per-client polling loop.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use tokio::sync::oneshot;
use uuid::Uuid;

type Waiters = Arc<Mutex<HashMap<Uuid, Vec<oneshot::Sender<()>>>>>;

/// Registry of requests waiting for jobs to finish.
#[derive(Clone, Debug, Default)]
pub struct JobWatcher {
    waiters: Waiters,
}

impl JobWatcher {
    /// Starts the subscription task (it reconnects on its own while the process lives).
    pub fn start(redis_url: String, channel: String) -> Self {
        let watcher = Self::default();
        let waiters = Arc::clone(&watcher.waiters);
        tokio::spawn(async move {
            loop {
                if let Err(error) = listen(&redis_url, &channel, &waiters).await {
                    tracing::warn!(%error, "job-status subscription lost; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        watcher
    }

    /// A receiver that fires when `job_id` is announced final.
    pub fn watch(&self, job_id: Uuid) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut map) = self.waiters.lock() {
            let list = map.entry(job_id).or_default();
            list.retain(|w| !w.is_closed());
            list.push(tx);
        }
        rx
    }

    /// Drops abandoned registrations of `job_id` (the request timed out or went away).
    pub fn forget_closed(&self, job_id: Uuid) {
        if let Ok(mut map) = self.waiters.lock()
            && let Some(list) = map.get_mut(&job_id)
        {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                map.remove(&job_id);
            }
        }
    }
}

async fn listen(redis_url: &str, channel: &str, waiters: &Waiters) -> redis::RedisResult<()> {
    let mut pubsub = redis::Client::open(redis_url)?.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Ok(id) = msg.get_payload::<String>().map(|p| Uuid::parse_str(&p)) else {
            continue;
        };
        let Ok(id) = id else { continue };
        let ready = waiters.lock().ok().and_then(|mut map| map.remove(&id));
        for waiter in ready.into_iter().flatten() {
            let _ = waiter.send(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(w: &JobWatcher) -> usize {
        w.waiters.lock().map(|m| m.len()).unwrap_or(usize::MAX)
    }

    #[test]
    fn an_abandoned_registration_is_forgotten() {
        let w = JobWatcher::default();
        let id = Uuid::now_v7();
        let rx = w.watch(id);
        w.forget_closed(id);
        assert_eq!(entries(&w), 1, "a live waiter is kept");
        drop(rx);
        w.forget_closed(id);
        assert_eq!(entries(&w), 0);
    }
}

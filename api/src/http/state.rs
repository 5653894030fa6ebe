//! Shared handles every handler needs.

use std::{future::Future, sync::Arc};

use domain::{Config, identity::Identity, jobs::producer::JobProducer, waiting_room::WaitingRoom};
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::http::problem::Problem;

/// Cheap to clone: each field is a handle to a shared pool or connection.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub redis: ConnectionManager,
    pub config: Arc<Config>,
    /// Verifies access tokens (and mints them when the service is the issuer).
    pub identity: Identity,
    pub waiting_room: WaitingRoom,
    pub jobs: JobProducer,
    /// Sheds enqueueing requests past their queue's `…_BACKLOG_MAX` (`http::shed`).
    pub backlog_gate: domain::jobs::backlog::BacklogGate,
    /// Bounds each user's open long-polls (`USER_LONG_POLLS_MAX`).
    pub long_polls: domain::jobs::long_polls::LongPolls,
    pub watcher: crate::http::job_watch::JobWatcher,
    pub schedules: crate::http::schedule_cache::ScheduleWindows,
}

impl AppState {
    /// Makes sure `user` exists: the Redis set of known users vouches for it in
    /// one trip; on a miss `in_postgres` decides (looks the user up, or creates
    /// it) and the id is remembered, so the next call skips PostgreSQL.
    pub async fn known_user(
        &self,
        user: Uuid,
        in_postgres: impl Future<Output = domain::Result<()>>,
    ) -> Result<(), Problem> {
        if !self.waiting_room.knows_user(user).await? {
            in_postgres.await?;
            self.waiting_room.remember_user(user).await?;
        }
        Ok(())
    }
}

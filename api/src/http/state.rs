//! Shared handles every handler needs.

use std::sync::Arc;

use domain::{Config, identity::Identity, jobs::producer::JobProducer, waiting_room::WaitingRoom};
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;

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
    pub watcher: crate::http::job_watch::JobWatcher,
    pub schedules: crate::http::schedule_cache::ScheduleWindows,
}

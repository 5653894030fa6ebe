//! HTTP plumbing every endpoint group shares: errors (problem+json),
//! extractors (JSON bodies, credentials), middleware (request ids), the shared
//! state and its in-process caches.

pub mod accepted;
pub mod auth;
pub mod client_addr;
pub mod job_watch;
pub mod json_body;
pub mod metrics;
pub mod ops_page;
pub mod path_params;
pub mod problem;
pub mod request_id;
pub mod schedule_cache;
pub mod shed;
pub mod state;

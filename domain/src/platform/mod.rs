//! Infrastructure every process needs and no business rule touches: typed
//! configuration, the PostgreSQL and Redis connections, telemetry. Kept apart
//! from the business modules so a reader finds the rules in `domain` and the
//! wiring here (see docs/ARCHITECTURE.md for why a module, not a crate).

pub mod config;
pub mod db;
pub mod redis_conn;
pub mod telemetry;

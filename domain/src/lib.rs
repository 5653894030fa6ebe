//! Everything the `api` and `worker` share: configuration, connections, and the
//! business operations. Functions take `&impl ConnectionTrait` so callers can run
//! them inside one SeaORM transaction.

pub mod accounts;
pub mod booking;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod identity;
pub mod jobs;
pub mod payment;
pub mod queue;
pub mod redis_conn;
pub mod retry;
pub mod seed;
pub mod telemetry;
pub mod waiting_room;
pub mod wallet;
pub mod wallet_limits;

pub use config::Config;
pub use error::{Error, Result};

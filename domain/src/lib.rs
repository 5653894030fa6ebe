//! The business rules the `api` and `worker` share — accounts, identity,
//! catalog, booking, wallet, payment, the waiting room, jobs — and, in
//! `platform`, the configuration and connections they run on. Functions take
//! `&impl ConnectionTrait` so callers can run them inside one SeaORM transaction.

pub mod accounts;
pub mod booking;
pub mod catalog;
pub mod error;
pub mod identity;
pub mod jobs;
pub mod ops;
pub mod payment;
pub mod platform;
pub mod rate_limit;
pub mod retry;
pub mod seed;
pub mod waiting_room;
pub mod wallet;
pub mod wallet_limits;

pub use error::{Error, Result};
pub use platform::config::Config;

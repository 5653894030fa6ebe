//! SeaORM entities, one module per table of the `migration` schema.
//!
//! Generated style on purpose: behaviour lives in `domain`, so these stay a
//! faithful, boring mirror of the schema.

pub mod concerts;
pub mod job_outcomes;
pub mod ledger_entries;
pub mod payments;
pub mod reservation_seats;
pub mod reservations;
pub mod schedules;
pub mod seats;
pub mod users;
pub mod wallets;

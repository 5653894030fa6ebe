//! Database schema as sea-orm-migration steps.
//!
//! The schema is written in SQL because its job is to *refuse* impossible states
//! (negative balances, double-booked seats, double payments, double job effects),
//! and partial unique indexes, cascading composite keys and CHECK constraints say
//! that more plainly in SQL than in a builder. It never depends on `entity`.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_schema;
mod m20261130_000001_seat_limit_index;
mod m20261130_000002_outcomes_outlive_users;

/// Every migration of the project, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_schema::Migration),
            Box::new(m20261130_000001_seat_limit_index::Migration),
            Box::new(m20261130_000002_outcomes_outlive_users::Migration),
        ]
    }
}

/// Runs one migration's SQL (each step is plain SQL, see the crate doc).
async fn run_sql(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(drop)
}

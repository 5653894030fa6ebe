//! Database schema as sea-orm-migration steps.
//!
//! The schema is written in SQL because its job is to *refuse* impossible states
//! (negative balances, double-booked seats, double payments, double job effects),
//! and partial unique indexes, cascading composite keys and CHECK constraints say
//! that more plainly in SQL than in a builder. It never depends on `entity`.

pub use sea_orm_migration::prelude::*;

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
            Box::new(m20261130_000003_seats_fillfactor::Migration),
        ]
    }
}

/// A migration step written as plain SQL (see the crate doc): `UP` and `DOWN`.
macro_rules! sql_migration {
    ($up:expr, $down:expr) => {
        #[derive(DeriveMigrationName)]
        pub(crate) struct Migration;

        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::run_sql(manager, $up).await
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::run_sql(manager, $down).await
            }
        }
    };
}
pub(crate) use sql_migration;

/// Runs one migration's SQL.
async fn run_sql(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(drop)
}

mod m20261122_000001_schema;
mod m20261130_000001_seat_limit_index;
mod m20261130_000002_outcomes_outlive_users;
mod m20261130_000003_seats_fillfactor;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_migration_is_named_for_its_file() {
        let names: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "m20261122_000001_schema",
                "m20261130_000001_seat_limit_index",
                "m20261130_000002_outcomes_outlive_users",
                "m20261130_000003_seats_fillfactor",
            ]
        );
    }
}

//! The per-person seat limit counts a user's live reservations of one schedule
//! on every reserve: index exactly those, so the count reads a handful of
//! entries however many reservations the user has had.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &str = r"
CREATE INDEX reservations_user_schedule_live_idx ON reservations (user_id, schedule_id)
    WHERE status IN ('HELD', 'CONFIRMED');
";

const DOWN: &str = r"
DROP INDEX IF EXISTS reservations_user_schedule_live_idx;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, DOWN).await
    }
}

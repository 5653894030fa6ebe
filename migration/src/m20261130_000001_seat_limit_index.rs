//! The per-person seat limit counts a user's live reservations of one schedule
//! on every reserve: index exactly those, so the count reads a handful of
//! entries however many reservations the user has had.

use sea_orm_migration::prelude::*;

const UP: &str = r"
CREATE INDEX reservations_user_schedule_live_idx ON reservations (user_id, schedule_id)
    WHERE status IN ('HELD', 'CONFIRMED');
";

const DOWN: &str = r"
DROP INDEX IF EXISTS reservations_user_schedule_live_idx;
";

crate::sql_migration!(UP, DOWN);

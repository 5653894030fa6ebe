//! A job's outcome records who submitted it, and must be writable even when
//! that user no longer exists: a recharge for a deleted user ends
//! `USER_NOT_FOUND`, and the foreign key made that outcome (and the final
//! `ATTEMPTS_EXHAUSTED`) unwritable, leaving the job `RUNNING` forever.

use sea_orm_migration::prelude::*;

const UP: &str = r"
ALTER TABLE job_outcomes DROP CONSTRAINT IF EXISTS job_outcomes_user_id_fkey;
";

const DOWN: &str = r"
ALTER TABLE job_outcomes ADD CONSTRAINT job_outcomes_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users(id) NOT VALID;
";

crate::sql_migration!(UP, DOWN);

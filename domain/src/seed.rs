//! Demo and load-test data. A command, not a migration.
//!
//! Users, wallets and their opening ledger rows are generated inside PostgreSQL
//! with `generate_series` in one statement: 100,000 fans take well under a
//! second, where row-by-row inserts would take minutes.

use chrono::{Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::{
    catalog::{self, NewSchedule},
    error::{Error, Result},
};

/// How much to seed.
#[derive(Clone, Debug)]
pub struct SeedPlan {
    pub users: u32,
    /// Opening balance of every seeded user, in won.
    pub balance: i64,
    pub concerts: u32,
    pub schedules_per_concert: u32,
}

impl Default for SeedPlan {
    fn default() -> Self {
        Self {
            users: 1_000,
            balance: 100_000,
            concerts: 3,
            schedules_per_concert: 4,
        }
    }
}

/// What a seed run wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedReport {
    pub users: u64,
    pub concerts: u32,
    pub schedules: u32,
}

/// Seeds concerts (bookable now) and users with balances; each balance has its ledger row.
pub async fn seed(db: &DatabaseConnection, plan: &SeedPlan) -> Result<SeedReport> {
    if !(0..=crate::wallet_limits::MAX_BALANCE).contains(&plan.balance) {
        return Err(Error::invalid("balance", "out of range"));
    }
    let now = Utc::now();
    for c in 0..plan.concerts {
        let schedules: Vec<NewSchedule> = (0..plan.schedules_per_concert)
            .map(|d| {
                let starts_at = now + Duration::days(7 + i64::from(d));
                NewSchedule {
                    starts_at,
                    booking_opens_at: now - Duration::hours(1),
                    booking_closes_at: starts_at - Duration::hours(1),
                    seat_price: 50_000 + 10_000 * i64::from(c % 5),
                }
            })
            .collect();
        if !schedules.is_empty() {
            catalog::create_concert(db, &format!("Demo concert {}", c + 1), &schedules).await?;
        }
    }
    let users = seed_users(db, plan.users, plan.balance).await?;
    Ok(SeedReport {
        users,
        concerts: plan.concerts,
        schedules: plan.concerts * plan.schedules_per_concert,
    })
}

async fn seed_users(db: &impl ConnectionTrait, count: u32, balance: i64) -> Result<u64> {
    let sql = "
        WITH u AS (
            INSERT INTO users (id, name)
            SELECT gen_random_uuid(), 'fan-' || i FROM generate_series(1, $1::int) AS i
            RETURNING id
        ), w AS (
            INSERT INTO wallets (user_id, balance) SELECT id, $2 FROM u RETURNING user_id
        )
        INSERT INTO ledger_entries (user_id, kind, amount, balance_after)
        SELECT user_id, 'SEED', $2, $2 FROM w WHERE $2 > 0";
    let count = i32::try_from(count).map_err(|_| Error::invalid("users", "too many"))?;
    let stmt =
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [count.into(), balance.into()]);
    db.execute_raw(stmt).await?;
    Ok(u64::try_from(count).unwrap_or_default())
}

/// True when the database holds no concert yet (standalone seeds demo data only then).
pub async fn is_empty(db: &impl ConnectionTrait) -> Result<bool> {
    let stmt = Statement::from_string(
        DbBackend::Postgres,
        "SELECT NOT EXISTS (SELECT 1 FROM concerts) AS empty",
    );
    let row = db.query_one_raw(stmt).await?;
    Ok(row
        .map(|r| r.try_get::<bool>("", "empty"))
        .transpose()?
        .unwrap_or(true))
}

//! PostgreSQL connection and migration.

use std::time::Duration;

use chrono::{DateTime, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    FromQueryResult, Statement, Value,
};

use crate::platform::config::Config;

/// One row of `M` read by `sql`, which must also select `now() AS db_now`:
/// PostgreSQL's clock, the one every time judgment is made on (never the
/// process's own, nor a time read before waiting for a pooled connection).
/// Inside a transaction `now()` is its start, the same for every statement.
pub async fn one_with_now<M: FromQueryResult>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Option<(M, DateTime<Utc>)>, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    row.map(|r| Ok((M::from_query_result(&r, "")?, r.try_get("", "db_now")?)))
        .transpose()
}

/// Opens the pool and checks one connection. Statements are bounded so a stuck
/// query cannot hold a worker forever.
pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbErr> {
    let wait = Wait {
        connect: Duration::from_secs(5),
        acquire: Duration::from_secs(10),
    };
    open(
        &config.database_url,
        config.database_max_connections,
        false,
        wait,
    )
    .await
}

/// The api's pool: opened without connecting, so the api starts (and `/ready`
/// says 503) while PostgreSQL is still down; and impatient, so a request
/// answers 503 within `API_DEPENDENCY_TIMEOUT_MS` while it is away.
pub async fn connect_lazy(config: &Config) -> Result<DatabaseConnection, DbErr> {
    let wait = Wait {
        connect: config.api_dependency_timeout,
        acquire: config.api_dependency_timeout,
    };
    open(
        &config.database_url,
        config.database_max_connections,
        true,
        wait,
    )
    .await
}

/// Opens a pool to an explicit URL (tests use this).
pub async fn connect_url(
    url: &str,
    max_connections: u32,
    lazy: bool,
) -> Result<DatabaseConnection, DbErr> {
    open(url, max_connections, lazy, PATIENT).await
}

/// How long a pool waits for a new connection and for a free one.
#[derive(Clone, Copy, Debug)]
struct Wait {
    connect: Duration,
    acquire: Duration,
}

/// The waits of pools with no client waiting on them (workers, migrations, tests).
const PATIENT: Wait = Wait {
    connect: Duration::from_secs(5),
    acquire: Duration::from_secs(10),
};

async fn open(
    url: &str,
    max_connections: u32,
    lazy: bool,
    wait: Wait,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(u32::from(!lazy))
        .connect_lazy(lazy)
        .connect_timeout(wait.connect)
        .acquire_timeout(wait.acquire)
        .statement_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Cheap reachability probe for `/ready`.
pub async fn ping(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(drop)
}

/// True when the error means PostgreSQL could not be reached (clients may retry),
/// as opposed to a statement that failed.
pub fn is_unreachable(err: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
        ),
        _ => false,
    }
}

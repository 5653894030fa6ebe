//! Subcommands and what each one starts.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use domain::{Config, seed::SeedPlan};
use tokio::sync::watch;

use crate::shutdown::Shutdown;

/// Concert reservation backend. Configuration comes from environment variables (see README).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to run.
#[derive(Debug, Default, Subcommand)]
pub enum Command {
    /// Migrate, seed demo data into an empty database, then serve api and workers in one process.
    #[default]
    Standalone,
    /// Serve the HTTP api on API_ADDR.
    Api,
    /// Run job workers (scale by starting more of these).
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Insert demo / load-test data and exit.
    Seed(SeedArgs),
}

/// Sizes for `seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Users to create, each with a wallet and an opening ledger row.
    #[arg(long, default_value_t = 1_000)]
    pub users: u32,
    /// Opening balance per user, in won.
    #[arg(long, default_value_t = 100_000)]
    pub balance: i64,
    /// Concerts to create, bookable now.
    #[arg(long, default_value_t = 3)]
    pub concerts: u32,
    /// Schedules (dates) per concert, 50 seats each.
    #[arg(long, default_value_t = 4)]
    pub schedules: u32,
}

impl From<SeedArgs> for SeedPlan {
    fn from(a: SeedArgs) -> Self {
        Self {
            users: a.users,
            balance: a.balance,
            concerts: a.concerts,
            schedules_per_concert: a.schedules,
        }
    }
}

/// Runs one subcommand to completion.
pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    if matches!(command, Command::Api | Command::Standalone) {
        // Before anything else starts: a refused configuration must change nothing.
        api::refuse_public_dev_secrets(&config).await?;
        // A 202 is a promise only a Redis with an append-only file keeps (the worker checks too).
        domain::platform::redis_conn::require_durable(&config).await?;
    }
    match command {
        Command::Migrate => migrate(&config).await,
        Command::Seed(args) => {
            migrate(&config).await?;
            seed(&config, &args.into()).await
        }
        Command::Api => serve_api(config, Shutdown::on_signals(), true).await,
        Command::Worker => worker::run(config, Shutdown::on_signals().wait()).await,
        Command::Standalone => {
            migrate(&config).await?;
            let db = domain::platform::db::connect(&config).await?;
            if domain::seed::is_empty(&db).await? {
                seed(&config, &SeedPlan::default()).await?;
            }
            let shutdown = Shutdown::on_signals();
            // One process, one registry: served once, by the worker half at
            // WORKER_METRICS_ADDR (api series included); API_METRICS_ADDR is not
            // opened, so no scrape config can count the process twice.
            tracing::info!(
                addr = %config.worker_metrics_addr,
                "standalone: api and worker metrics share WORKER_METRICS_ADDR"
            );
            let worker = tokio::spawn(worker::run(config.clone(), shutdown.clone().wait()));
            let api = serve_api(config, shutdown, false).await;
            worker.await.context("worker task panicked")??;
            api
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let db = domain::platform::db::connect(config)
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")?;
    domain::platform::db::migrate(&db)
        .await
        .context("applying migrations")?;
    tracing::info!("database migrated");
    Ok(())
}

async fn seed(config: &Config, plan: &SeedPlan) -> anyhow::Result<()> {
    let db = domain::platform::db::connect(config).await?;
    let started = std::time::Instant::now();
    let report = domain::seed::seed(&db, plan).await?;
    tracing::info!(
        users = report.users,
        concerts = report.concerts,
        schedules = report.schedules,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "seeded"
    );
    Ok(())
}

/// Serves the api on `API_ADDR` and, with `own_metrics`, this process's
/// `/metrics` on `API_METRICS_ADDR` (never on the public address: it shows the
/// line and backlog the admin-token snapshot guards).
async fn serve_api(config: Config, shutdown: Shutdown, own_metrics: bool) -> anyhow::Result<()> {
    let (acceptor, addr) = api::bind(&config.api_addr)
        .await
        .with_context(|| format!("binding API_ADDR {}", config.api_addr))?;
    // Stopped after the api has drained, so the drain itself can be scraped.
    let (stop_metrics, metrics_stop) = watch::channel(false);
    let metrics = match config.api_metrics_addr.as_deref() {
        Some(at) if own_metrics => {
            worker::observe::serve_metrics("API_METRICS_ADDR", at, metrics_stop).await
        }
        _ => None,
    };
    let state = api::state_from_config(config).await?;
    tracing::info!(%addr, docs = %format!("http://{addr}/docs"), "api listening");
    api::serve(acceptor, state, shutdown.wait()).await?;
    let _ = stop_metrics.send(true);
    if let Some((_, metrics)) = metrics {
        let _ = metrics.await;
    }
    tracing::info!("api stopped");
    Ok(())
}

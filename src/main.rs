//! `concert`: one binary, one subcommand per role.

mod cli;
mod shutdown;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let config = domain::Config::from_env()?;
    domain::telemetry::init(config.log_format);
    if config.uses_dev_admin_token() {
        tracing::warn!("ADMIN_TOKEN is the development default; set it before exposing the api");
    }
    if config.uses_dev_token_secret() {
        tracing::warn!(
            "QUEUE_TOKEN_SECRET is the development default; set it before exposing the api"
        );
    }
    let result = cli::run(cli.command.unwrap_or_default(), config).await;
    if let Err(error) = &result {
        tracing::error!(error = %format!("{error:#}"), "exiting on error");
    }
    result
}

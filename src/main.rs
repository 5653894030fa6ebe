//! `concert`: one binary, one subcommand per role.

mod cli;
mod shutdown;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let config = domain::Config::from_env()?;
    domain::platform::telemetry::init(config.log_format);
    let defaults = config.dev_secrets();
    if !defaults.is_empty() {
        tracing::warn!(
            variables = defaults.join(", "),
            "development default secrets in use: fine on loopback, refused on a public API_ADDR"
        );
    }
    let result = cli::run(cli.command.unwrap_or_default(), config).await;
    if let Err(error) = &result {
        tracing::error!(error = %format!("{error:#}"), "exiting on error");
    }
    result
}

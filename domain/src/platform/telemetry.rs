//! One tracing set-up for every binary.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::platform::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), text or JSON lines.
///
/// Safe to call more than once (tests do): later calls are ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(fmt::layer().with_target(true)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
    };
    drop(result);
}

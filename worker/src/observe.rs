//! The worker's observability: `GET /metrics` (Prometheus text format) on
//! `WORKER_METRICS_ADDR`, and the once-a-second sampler of the ops window
//! (`domain::ops::window`) that carries this process's job counts to Redis.

use std::time::Duration;

use domain::Config;
use poem::{
    EndpointExt, IntoResponse, Route, Server, get, handler,
    listener::{Acceptor, Listener, TcpListener},
};
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;
use tokio::{sync::watch, task::JoinHandle};

/// Content type of the Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[handler]
fn metrics() -> poem::Response {
    domain::ops::metrics::render()
        .with_content_type(CONTENT_TYPE)
        .into_response()
}

/// Starts the metrics endpoint and the sampler; both end when `stop` turns true.
///
/// A metrics port that cannot be bound is logged as an error, not fatal: jobs
/// are what the worker is for, and a scrape gap is visible in Prometheus (`up`).
pub async fn start(
    config: &Config,
    db: DatabaseConnection,
    redis: ConnectionManager,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    domain::ops::metrics::install();
    let sampler = tokio::spawn(domain::ops::window::sample_loop(
        redis,
        db,
        config.redis_prefix.clone(),
        stop.clone(),
    ));
    let addr = config.worker_metrics_addr.clone();
    let server = match TcpListener::bind(addr.clone()).into_acceptor().await {
        Ok(acceptor) => {
            let local = acceptor.local_addr().first().map(ToString::to_string);
            tracing::info!(
                addr = local.as_deref().unwrap_or(&addr),
                "worker metrics at /metrics"
            );
            let app = Route::new().at("/metrics", get(metrics)).map_to_response();
            let mut stop = stop;
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            Some(tokio::spawn(async move {
                let served = Server::new_with_acceptor(acceptor)
                    .name("concert-worker-metrics")
                    .run_with_graceful_shutdown(app, stopped, Some(Duration::from_secs(1)))
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "worker metrics endpoint stopped");
                }
            }))
        }
        Err(error) => {
            tracing::error!(%error, addr, "cannot serve worker metrics (WORKER_METRICS_ADDR); jobs run on");
            None
        }
    };
    tokio::spawn(async move {
        let _ = sampler.await;
        if let Some(server) = server {
            let _ = server.await;
        }
    })
}

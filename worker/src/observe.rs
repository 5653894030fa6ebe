//! A process's observability: `GET /metrics` (Prometheus text format) on a
//! listener of its own ([`serve_metrics`]), and the worker's once-a-second
//! sampler of the ops window (`domain::ops::window`) that carries its job
//! counts to Redis.
//!
//! [`serve_metrics`] serves the api's registry too (`API_METRICS_ADDR`, wired in
//! src/cli.rs): the binary depends on both crates and neither on the other, so
//! this is the one copy both roles share.

use std::{net::SocketAddr, time::Duration};

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

/// Serves this process's registry at `GET /metrics` on `addr` until `stop`
/// turns true; `setting` names the variable `addr` came from, for the logs.
///
/// Returns the bound address (port 0 picks a free one) once it is bound, so a
/// scrape right after succeeds. A port that cannot be bound is logged as an
/// error, not fatal (`None`): requests and jobs are what the processes are
/// for, and a scrape gap is visible in Prometheus (`up`).
pub async fn serve_metrics(
    setting: &'static str,
    addr: &str,
    stop: watch::Receiver<bool>,
) -> Option<(SocketAddr, JoinHandle<()>)> {
    domain::ops::metrics::install();
    let bound = TcpListener::bind(addr.to_owned())
        .into_acceptor()
        .await
        .and_then(|acceptor| {
            let local = acceptor
                .local_addr()
                .first()
                .and_then(|a| a.as_socket_addr().copied());
            let local = local.ok_or_else(|| std::io::Error::other("no socket address"))?;
            Ok((acceptor, local))
        });
    let (acceptor, local) = match bound {
        Ok(bound) => bound,
        Err(error) => {
            tracing::error!(%error, addr, setting, "cannot serve /metrics; running on without it");
            return None;
        }
    };
    tracing::info!(addr = %local, setting, "metrics at /metrics");
    let app = Route::new().at("/metrics", get(metrics)).map_to_response();
    let mut stop = stop;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(async move {
        let served = Server::new_with_acceptor(acceptor)
            .name("concert-metrics")
            .run_with_graceful_shutdown(app, stopped, Some(Duration::from_secs(1)))
            .await;
        if let Err(error) = served {
            tracing::error!(%error, setting, "metrics endpoint stopped");
        }
    });
    Some((local, server))
}

/// Starts the worker's metrics endpoint (`WORKER_METRICS_ADDR`) and the
/// sampler; both end when `stop` turns true.
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
    let server = serve_metrics("WORKER_METRICS_ADDR", &config.worker_metrics_addr, stop).await;
    tokio::spawn(async move {
        let _ = sampler.await;
        if let Some((_, server)) = server {
            let _ = server.await;
        }
    })
}

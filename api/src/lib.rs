//! The HTTP front end: poem + poem-openapi.
//!
//! The map: `endpoints` holds the endpoint groups (one per OpenAPI tag), thin
//! by design — extract, validate, call `domain`, map the result; `http` holds
//! the plumbing they share (problem+json errors, JSON bodies, credentials,
//! request ids, state, caches). This file assembles them into the app (API,
//! Swagger UI, spec), builds the state, binds and serves. Every error leaves as
//! RFC 9457 problem+json; every response carries a request id.

pub mod endpoints;
pub mod http;
pub mod web;

use std::{future::Future, sync::Arc};

use domain::Config;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Route, Server,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    middleware::CatchPanic,
};
use poem_openapi::OpenApiService;

pub use endpoints::Apis;
pub use http::state::AppState;

use http::{job_watch, json_body, path_params, problem, request_id, schedule_cache, shed};

/// The OpenAPI service with every endpoint group.
pub fn openapi() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        Apis::default(),
        "Concert reservation API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Waiting-room admission, queued reservations and payments. Errors are RFC 9457 \
         `application/problem+json` with a stable `code` and, for bad input, the `field` at fault.",
    )
}

/// The whole HTTP application: API, Swagger UI at `/docs`, spec at `/openapi.json`,
/// the fan web app at `/` (`web`).
pub fn app(state: AppState) -> impl Endpoint {
    let api = openapi();
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let templates = Arc::new(path_params::PathTemplates::from_spec(&api.spec()));
    let body_limit = json_body::BodyLimit(state.config.api_body_limit_bytes);
    let request_metrics =
        http::metrics::RequestMetrics::new(Arc::clone(&templates), &state.config.redis_prefix);
    Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        // The ops page shell (not in the OpenAPI document). No `/metrics` here: the
        // Prometheus scrape shows the line and backlog the snapshot guards with
        // the admin token, so it has its own listener (`API_METRICS_ADDR`, src/cli.rs).
        .nest("/ops", http::ops_page::routes())
        // The fan web app (not in the OpenAPI document): its assets, and the
        // page at `/` (a middleware: see web::RootPage). Keep it the last route.
        .nest("/app", web::assets())
        .with(web::RootPage)
        .around(move |ep, req| {
            let templates = Arc::clone(&templates);
            async move {
                let path = req.uri().path().to_owned();
                Ok(match ep.call(req).await {
                    Ok(resp) => resp.into_response(),
                    Err(err) => {
                        let allow = err
                            .is::<poem::error::MethodNotAllowedError>()
                            .then(|| templates.allow(&path))
                            .flatten();
                        let name = |i| templates.param_name(&path, i).map(str::to_owned);
                        let mut resp = problem::from_poem_error(err, name).into_response();
                        if let Some(Ok(allow)) = allow.map(|a| a.parse()) {
                            resp.headers_mut().insert(poem::http::header::ALLOW, allow);
                        }
                        resp
                    }
                })
            }
        })
        .with(CatchPanic::new().with_handler(|_| problem::Problem::internal().into_response()))
        .around(shed::shed_enqueues)
        .data(body_limit)
        .data(state)
        .with(request_id::RequestIdMiddleware)
        // Outermost, so it records the status the client gets (errors and panics mapped).
        .with(request_metrics)
}

/// Connects lazily to PostgreSQL and Redis and builds the state.
pub async fn state_from_config(config: Config) -> anyhow::Result<AppState> {
    let identity = domain::identity::Identity::from_config(&config)?;
    let db = domain::platform::db::connect_lazy(&config).await?;
    let redis = domain::platform::redis_conn::connect_lazy(&config)?;
    let waiting_room = domain::waiting_room::WaitingRoom::new(redis.clone(), &config);
    let jobs = domain::jobs::producer::JobProducer::new(redis.clone(), db.clone(), &config);
    let backlog_gate = domain::jobs::backlog::BacklogGate::start(redis.clone(), &config);
    let long_polls = domain::jobs::long_polls::LongPolls::new(redis.clone(), &config);
    let watcher =
        job_watch::JobWatcher::start(config.redis_url.clone(), jobs.status().done_channel());
    Ok(AppState {
        db,
        redis,
        config: Arc::new(config),
        identity,
        waiting_room,
        jobs,
        backlog_gate,
        long_polls,
        watcher,
        schedules: schedule_cache::ScheduleWindows::default(),
    })
}

/// Refuses to serve a non-loopback `API_ADDR` while a secret is still its
/// development default (`ADMIN_TOKEN`, `QUEUE_TOKEN_SECRET`, `AUTH_JWT_SECRET`):
/// anyone could then mint tokens or act as the operator.
pub async fn refuse_public_dev_secrets(config: &Config) -> anyhow::Result<()> {
    let defaults = config.dev_secrets();
    if defaults.is_empty() {
        return Ok(());
    }
    let addrs: Vec<_> = tokio::net::lookup_host(config.api_addr.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("resolving API_ADDR {}: {e}", config.api_addr))?
        .collect();
    if let Some(public) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "refusing to listen on {public} (API_ADDR={}) while {} still has its development \
             default: set {} to secret values, or listen on a loopback address",
            config.api_addr,
            defaults.join(", "),
            if defaults.len() == 1 { "it" } else { "them" },
        );
    }
    Ok(())
}

/// Binds `API_ADDR` (port 0 picks a free port) and returns the acceptor and its address.
pub async fn bind(addr: &str) -> std::io::Result<(TcpAcceptor, std::net::SocketAddr)> {
    let acceptor = TcpListener::bind(addr.to_owned()).into_acceptor().await?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| std::io::Error::other("listener has no socket address"))?;
    Ok((acceptor, local))
}

/// Serves until `shutdown` resolves, then drains in-flight requests for up to
/// `SHUTDOWN_GRACE_SECONDS`.
pub async fn serve(
    acceptor: TcpAcceptor,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let grace = state.config.shutdown_grace;
    // The ops window's sampler lives as long as the server (its sender drops on return).
    let (_sampling, stop_sampling) = tokio::sync::watch::channel(false);
    tokio::spawn(domain::ops::window::sample_loop(
        state.redis.clone(),
        state.db.clone(),
        state.config.redis_prefix.clone(),
        stop_sampling,
    ));
    Server::new_with_acceptor(acceptor)
        .name("concert-api")
        .run_with_graceful_shutdown(app(state), shutdown, Some(grace))
        .await
}

//! Request ids: every response carries `x-request-id`, every log line of the
//! request carries `request_id` (and so will the jobs it enqueues).

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result, http::HeaderValue};
use tracing::Instrument;
use uuid::Uuid;

/// Header carrying the id in and out.
pub const HEADER: &str = "x-request-id";

/// The current request's id, readable by handlers via `Data<&RequestId>`.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Middleware: reuse a sane incoming id (≤ 64 visible ASCII chars) or make one.
#[derive(Debug, Default)]
pub struct RequestIdMiddleware;

impl<E: Endpoint> Middleware<E> for RequestIdMiddleware {
    type Output = RequestIdEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        RequestIdEndpoint { inner: ep }
    }
}

/// Endpoint produced by [`RequestIdMiddleware`].
#[derive(Debug)]
pub struct RequestIdEndpoint<E> {
    inner: E,
}

fn incoming_id(req: &Request) -> Option<String> {
    let value = req.headers().get(HEADER)?.to_str().ok()?;
    let ok = !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| value.to_owned())
}

impl<E: Endpoint> Endpoint for RequestIdEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let id = incoming_id(&req).unwrap_or_else(|| Uuid::now_v7().to_string());
        req.extensions_mut().insert(RequestId(id.clone()));
        let span = tracing::info_span!("http.request", request_id = %id, http.method = %req.method(), http.path = %req.uri().path());
        let started = Instant::now();
        async move {
            let mut resp = match self.inner.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => e.into_response(),
            };
            let status = resp.status().as_u16();
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            if status >= 500 {
                tracing::warn!(http.status = status, elapsed_ms, "request failed");
            } else {
                tracing::debug!(http.status = status, elapsed_ms, "request done");
            }
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert(HEADER, v);
            }
            Ok(resp)
        }
        .instrument(span)
        .await
    }
}

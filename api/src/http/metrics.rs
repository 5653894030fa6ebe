//! The middleware that counts every request by method, route template and
//! status, for the Prometheus registry (`domain::ops::metrics`).
//!
//! The registry is not served on the public address: the process serves it on
//! a listener of its own (`API_METRICS_ADDR`, `worker::observe::serve_metrics`).
//! The route label is the OpenAPI template the path matches (`/v1/jobs/{jobId}`),
//! never the raw path, so ids cannot blow up the label set; anything outside the
//! spec gets one of a few fixed labels, and every 404 off the spec is `unmatched`.

use std::{sync::Arc, time::Instant};

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, http::Method};

use super::path_params::PathTemplates;

/// Middleware recording each request of one stack.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    templates: Arc<PathTemplates>,
    prefix: Arc<str>,
}

impl RequestMetrics {
    /// Labels from the OpenAPI templates; counts go to the stack `prefix`'s ops window.
    pub fn new(templates: Arc<PathTemplates>, prefix: &str) -> Self {
        domain::ops::metrics::install();
        Self {
            templates,
            prefix: prefix.into(),
        }
    }

    fn route_label(&self, path: &str, status: u16) -> String {
        if let Some(template) = self.templates.template(path) {
            return template;
        }
        if status == 404 {
            return "unmatched".into();
        }
        fixed_label(path).into()
    }
}

impl<E: Endpoint> Middleware<E> for RequestMetrics {
    type Output = RequestMetricsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestMetricsEndpoint {
            inner,
            metrics: self.clone(),
        }
    }
}

/// The endpoint [`RequestMetrics`] wraps.
#[derive(Debug)]
pub struct RequestMetricsEndpoint<E> {
    inner: E,
    metrics: RequestMetrics,
}

impl<E: Endpoint> Endpoint for RequestMetricsEndpoint<E> {
    type Output = Response;

    /// Calls the inner endpoint and records the answer, whether a response or an error.
    async fn call(&self, req: Request) -> poem::Result<Response> {
        let method = method_label(req.method());
        let path = req.uri().path().to_owned();
        let started = Instant::now();
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        let status = match &result {
            Ok(resp) => resp.status().as_u16(),
            Err(err) => err.status().as_u16(),
        };
        let route = self.metrics.route_label(&path, status);
        domain::ops::metrics::http_request(
            &self.metrics.prefix,
            method,
            &route,
            status,
            started.elapsed(),
        );
        result
    }
}

/// Routes outside the OpenAPI document: a fixed, small set.
fn fixed_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/openapi.json" => "/openapi.json",
        "/ops" | "/ops/" => "/ops",
        p if p.starts_with("/ops/") => "/ops/{asset}",
        p if p.starts_with("/docs") => "/docs",
        p if p.starts_with("/app/") => "/app/{asset}",
        _ => "other",
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_templates_or_a_fixed_word() {
        let m = RequestMetrics::new(
            Arc::new(PathTemplates::from_spec(
                r#"{"paths":{"/v1/jobs/{jobId}":{}}}"#,
            )),
            "p",
        );
        assert_eq!(m.route_label("/v1/jobs/abc", 200), "/v1/jobs/{jobId}");
        assert_eq!(m.route_label("/v1/nothing/1", 404), "unmatched");
        assert_eq!(m.route_label("/metrics", 404), "unmatched");
        assert_eq!(m.route_label("/ops/ops.js", 200), "/ops/{asset}");
        assert_eq!(m.route_label("/random/9", 200), "other");
        assert_eq!(method_label(&Method::TRACE), "OTHER");
    }
}

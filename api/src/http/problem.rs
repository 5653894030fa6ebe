//! RFC 9457 `application/problem+json`: the one error shape of the whole API.
//!
//! Every failure — ours, poem's, poem-openapi's — leaves through [`Problem`], so
//! clients parse one shape and branch on its stable `code`.

use poem::{
    IntoResponse, Response,
    error::{MethodNotAllowedError, NotFoundError, ResponseError},
    http::StatusCode,
};
use poem_openapi::{
    ApiResponse, Object,
    error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    },
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: &str = "2";

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The JSON body of an error (RFC 9457 plus `code` and `field`).
#[derive(Clone, Debug, Object, PartialEq, Eq)]
#[oai(rename = "Problem")]
pub struct ProblemBody {
    /// A URI naming the problem type (`about:blank` style URNs here).
    #[oai(rename = "type")]
    pub type_: String,
    /// Short, human summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Explanation of this occurrence.
    pub detail: String,
    /// Stable machine-readable code, e.g. `VALIDATION_FAILED`.
    pub code: String,
    /// The request field at fault (JSON path, parameter or header), when there is one.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

/// An error response. Implements poem's `ResponseError` so handlers can use `?`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{} {}: {}", body.status, body.code, body.detail)]
pub struct Problem {
    // Boxed: keeps `Result<T, Problem>` small on every handler's happy path.
    body: Box<ProblemBody>,
    /// Seconds for `Retry-After`, where this problem sets its own.
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem with a status, stable code and detail.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            body: Box::new(ProblemBody {
                type_: format!(
                    "urn:concert:problem:{}",
                    code.to_ascii_lowercase().replace('_', "-")
                ),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                code: code.to_owned(),
                field: None,
            }),
            retry_after: None,
        }
    }

    /// Names the request field at fault.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    /// 400 with the field at fault.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", detail).with_field(field)
    }

    /// 401: missing, malformed, unknown or expired credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", detail).with_field("Authorization")
    }

    /// 404 for an unknown id — and for another user's resource, which must look the same.
    pub fn not_found(entity: &str, id: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{entity} {id} was not found"),
        )
    }

    /// 500 without internals; the cause is logged once by the caller.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "an internal error occurred; it has been logged",
        )
    }

    /// 503: a dependency is unreachable; clients may retry.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "a backing service is unavailable; retry shortly",
        )
    }

    /// The body, for tests and logging.
    pub fn body(&self) -> &ProblemBody {
        &self.body
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<domain::Error> for Problem {
    fn from(err: domain::Error) -> Self {
        use domain::Error as E;
        if let Some(dependency) = domain::ops::metrics::dependency_of(&err) {
            domain::ops::metrics::dependency_error(None, dependency);
        }
        match err {
            E::NotFound { entity, id } => Self::not_found(entity, id),
            E::Invalid { field, message } => {
                Self::invalid(field.clone(), format!("{field}: {message}"))
            }
            E::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was already used with a different request",
            )
            .with_field("Idempotency-Key"),
            E::Busy {
                kind,
                backlog,
                retry_after,
            } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "BUSY",
                    format!(
                        "{backlog} {kind} jobs are waiting for a worker; nothing was queued, retry in {retry_after} s"
                    ),
                )
            },
            E::TooManyJobs {
                kind,
                in_flight,
                limit,
                retry_after,
            } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_JOBS",
                    format!(
                        "you have {in_flight} {kind} jobs that are not final yet (at most {limit}); nothing was queued, retry in {retry_after} s"
                    ),
                )
            },
            E::TooManyLongPolls { limit, retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_LONG_POLLS",
                    format!(
                        "you already hold {limit} open long-polls; wait for one to end (or poll without waitSeconds), retry in {retry_after} s"
                    ),
                )
                .with_field("waitSeconds")
            },
            E::RateLimited { what, retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    format!("too many {what} from this address; retry in {retry_after} s"),
                )
            },
            E::Contention => Self::unavailable(),
            E::Queue(e) => {
                tracing::error!(error = %e, "queue push failed");
                Self::unavailable()
            }
            E::Database(e) if domain::platform::db::is_unreachable(&e) => {
                tracing::error!(error = %e, "database unreachable");
                Self::unavailable()
            }
            E::Database(e) => {
                tracing::error!(error = %e, "database error");
                Self::internal()
            }
            E::Redis(e) => {
                tracing::error!(error = %e, "redis error");
                Self::unavailable()
            }
        }
    }
}

impl ResponseError for Problem {
    fn status(&self) -> StatusCode {
        self.status_code()
    }

    fn as_response(&self) -> Response {
        let body = serde_json::to_vec(&poem_openapi::types::ToJSON::to_json(&self.body))
            .unwrap_or_default();
        let status = self.status_code();
        let mut builder = Response::builder()
            .status(status)
            .content_type(PROBLEM_JSON);
        if let Some(seconds) = self.retry_after {
            builder = builder.header(poem::http::header::RETRY_AFTER, seconds);
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            // RFC 9110 §10.2.3: when to come back (a dependency is away).
            builder = builder.header(poem::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS);
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: every 401 names the scheme the client must use.
            builder = builder.header(
                poem::http::header::WWW_AUTHENTICATE,
                r#"Bearer realm="concert""#,
            );
        }
        builder.body(body)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.as_response()
    }
}

/// Statuses every operation may answer with a problem; listed once for the OpenAPI document.
const DOCUMENTED: &[(u16, &str)] = &[
    (400, "Invalid input; `field` names the culprit"),
    (
        401,
        "Missing, malformed, forged or expired credentials (`WWW-Authenticate: Bearer`)",
    ),
    (404, "Unknown id"),
    (413, "Request body too large"),
    (415, "Body is not JSON"),
    (
        429,
        "Too many requests: nothing was queued or written; retry after `Retry-After` seconds (`BUSY`: the queue's backlog is at its bound; `TOO_MANY_JOBS`: the caller's non-final jobs of this kind are at `USER_JOBS_IN_FLIGHT`; `TOO_MANY_LONG_POLLS`: the caller's open long-polls are at `USER_LONG_POLLS_MAX`; `RATE_LIMITED`: sign-ups or token mints from this address are at `SIGNUP_PER_MINUTE_PER_ADDRESS`)",
    ),
    (500, "Internal error (logged)"),
    (503, "A backing service is unavailable"),
];

impl ApiResponse for Problem {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: DOCUMENTED
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_JSON,
                        schema: <ProblemBody as Type>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ProblemBody::register(registry);
    }
}

/// Turns any error that escaped a handler into problem+json (the route's catch-all).
/// `path_param` names the n-th path parameter of the request (see `path_params`).
pub fn from_poem_error(err: poem::Error, path_param: impl Fn(usize) -> Option<String>) -> Problem {
    if let Some(problem) = err.downcast_ref::<Problem>() {
        return problem.clone();
    }
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        return Problem::invalid(e.name, format!("parameter `{}`: {}", e.name, e.reason));
    }
    if let Some(e) = err.downcast_ref::<ParsePathError>() {
        let name = crate::http::path_params::internal_index(e.name)
            .and_then(path_param)
            .unwrap_or_else(|| e.name.to_owned());
        return Problem::invalid(
            name.clone(),
            format!("path parameter `{name}`: {}", e.reason),
        );
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return Problem::invalid("body", e.reason.clone());
    }
    if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("{e}; send application/json"),
        )
        .with_field("Content-Type");
    }
    if err.is::<AuthorizationError>() {
        return Problem::unauthorized("a valid `Authorization: Bearer <token>` header is required");
    }
    if err.is::<NotFoundError>() {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "ROUTE_NOT_FOUND",
            "no such endpoint; see /docs",
        );
    }
    if err.is::<MethodNotAllowedError>() {
        return Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed on this endpoint",
        );
    }
    let status = err.status();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            status,
            "PAYLOAD_TOO_LARGE",
            "request body exceeds the size limit",
        )
        .with_field("body"),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "unhandled server error");
            Problem::internal()
        }
        s => Problem::new(s, "BAD_REQUEST", err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_validation_errors_keep_the_field() {
        let p = Problem::from(domain::Error::invalid("schedules[0].seatPrice", "too high"));
        assert_eq!(p.body().status, 400);
        assert_eq!(p.body().field.as_deref(), Some("schedules[0].seatPrice"));
        assert_eq!(p.body().code, "VALIDATION_FAILED");
    }

    #[test]
    fn problems_render_as_problem_json() {
        let resp = Problem::new(StatusCode::NOT_FOUND, "NOT_FOUND", "gone").into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.content_type(), Some(PROBLEM_JSON));
    }

    #[test]
    fn every_401_names_the_bearer_scheme() {
        let resp = Problem::unauthorized("no").into_response();
        assert_eq!(
            resp.headers()
                .get(poem::http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some(r#"Bearer realm="concert""#)
        );
        let ok = Problem::not_found("user", 1).into_response();
        assert!(
            ok.headers()
                .get(poem::http::header::WWW_AUTHENTICATE)
                .is_none()
        );
    }

    #[test]
    fn poem_openapi_parameter_errors_name_the_parameter() {
        let err: poem::Error = ParseParamError {
            name: "waitSeconds",
            reason: "bad".into(),
        }
        .into();
        let p = from_poem_error(err, |_| None);
        assert_eq!(
            (p.body().status, p.body().field.as_deref()),
            (400, Some("waitSeconds"))
        );
    }

    #[test]
    fn path_errors_use_the_template_name() {
        let err: poem::Error = ParsePathError {
            name: "param0",
            reason: "bad".into(),
        }
        .into();
        let p = from_poem_error(err, |i| (i == 0).then(|| "userId".to_owned()));
        assert_eq!(p.body().field.as_deref(), Some("userId"));
    }
}

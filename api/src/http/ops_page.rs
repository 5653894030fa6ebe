//! The `/ops` page shell: static HTML, JS and CSS from `api/ops/`, embedded in
//! the binary (`include_str!`: no build step, nothing fetched from elsewhere).
//! The shell is public; its data comes from `GET /v1/admin/ops/snapshot`, which
//! needs the admin token the operator types in. Not in the OpenAPI document.

use poem::{Endpoint, IntoResponse, Route, get, http::header};

/// The page may run only its own script, style and requests (the admin token sits
/// in `sessionStorage`; injected markup must not reach it). SVG is drawn inline.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HTML: &str = include_str!("../../ops/index.html");
const JS: &str = include_str!("../../ops/ops.js");
const CSS: &str = include_str!("../../ops/ops.css");

fn asset(body: &'static str, content_type: &'static str) -> impl Endpoint {
    get(poem::endpoint::make_sync(move |_| {
        body.with_content_type(content_type)
            .with_header(header::CACHE_CONTROL, "no-cache")
            .with_header(header::CONTENT_SECURITY_POLICY, CSP)
            .with_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .into_response()
    }))
}

/// `/ops` (the page), `/ops/ops.js`, `/ops/ops.css`: nest under `/ops`.
pub fn routes() -> Route {
    Route::new()
        .at("/", asset(HTML, "text/html; charset=utf-8"))
        .at("/ops.js", asset(JS, "text/javascript; charset=utf-8"))
        .at("/ops.css", asset(CSS, "text/css; charset=utf-8"))
}

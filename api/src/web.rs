//! The fan web app (`api/web/`): plain HTML, CSS and JS embedded in the binary
//! with `include_str!`, so the api serves it with no build step and no files
//! beside the binary. `GET /` is the page, `GET /app/{file}` its assets. These
//! routes are not in the OpenAPI document: the app is a client of that API.
//!
//! Caching: the page is `no-cache` (revalidated by its `ETag`, so a new binary
//! is picked up at once); it links each asset as `/app/{file}?v={content hash}`,
//! and an asset asked for with its current hash is `immutable` for a year. An
//! asset without (or with a stale) `v` is `no-cache`. Every answer carries a
//! strict Content-Security-Policy: the app runs only its own script and talks
//! only to its own origin, which bounds what injected markup could do with the
//! access token kept in `sessionStorage` (the app itself writes server text
//! with `textContent` only).

use std::sync::LazyLock;

use bytes::Bytes;
use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, Route, RouteMethod, get, handler,
    http::{StatusCode, header},
    web::Path,
};
use sha2::{Digest, Sha256};

/// The Content-Security-Policy of the page and its assets.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: String,
    /// First 16 hex digits of the SHA-256 of `body`.
    hash: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, body: String) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let hash = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Self {
            name,
            content_type,
            body,
            hash,
        }
    }

    fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }
}

/// The assets the page links (`/app/{name}`).
static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        Asset::new(
            "app.js",
            "text/javascript; charset=utf-8",
            include_str!("../web/app.js").to_owned(),
        ),
        Asset::new(
            "app.css",
            "text/css; charset=utf-8",
            include_str!("../web/app.css").to_owned(),
        ),
    ]
});

/// The page, its `{{asset:NAME}}` placeholders replaced by hashed asset URLs.
static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    let mut html = include_str!("../web/index.html").to_owned();
    for asset in ASSETS.iter() {
        html = html.replace(
            &format!("{{{{asset:{}}}}}", asset.name),
            &format!("/app/{}?v={}", asset.name, asset.hash),
        );
    }
    Asset::new("index.html", "text/html; charset=utf-8", html)
});

/// The page, for `GET /` (HEAD too: poem answers it from GET without the body).
pub fn page() -> RouteMethod {
    get(serve_page)
}

/// The assets, to nest at `/app`: `GET /app/{file}`.
pub fn assets() -> Route {
    Route::new().at("/:file", get(serve_asset))
}

/// Middleware that answers `/` with the page and passes every other path on.
///
/// Not a `Route::at("/")`: the API is nested at `/`, and poem's router gives
/// an empty remainder to a nest's catch-all before a route at the same node,
/// so `/` would reach the API (and 404) whatever the order of the calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct RootPage;

impl<E: Endpoint> Middleware<E> for RootPage {
    type Output = RootPageEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RootPageEndpoint {
            inner: ep,
            page: page(),
        }
    }
}

/// Endpoint produced by [`RootPage`].
pub struct RootPageEndpoint<E> {
    inner: E,
    page: RouteMethod,
}

impl<E> std::fmt::Debug for RootPageEndpoint<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootPageEndpoint").finish_non_exhaustive()
    }
}

impl<E: Endpoint> Endpoint for RootPageEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.uri().path() == "/" {
            // GET and HEAD; any other method is poem's 405.
            return self.page.call(req).await;
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

#[handler]
fn serve_page(req: &Request) -> Response {
    respond(req, &INDEX, "no-cache")
}

#[handler]
fn serve_asset(req: &Request, Path(file): Path<String>) -> poem::Result<Response> {
    let found = ASSETS.iter().find(|a| a.name == file);
    let Some(asset) = found else {
        return Err(poem::error::NotFoundError.into());
    };
    let current = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == format!("v={}", asset.hash)));
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(respond(req, asset, cache))
}

fn respond(req: &Request, asset: &'static Asset, cache_control: &'static str) -> Response {
    let etag = asset.etag();
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, cache_control)
        .header(header::ETAG, etag)
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer");
    if fresh {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder
        .content_type(asset.content_type)
        .body(Bytes::from_static(asset.body.as_bytes()))
}

/// The page and its assets beside an API nested at `/`, as `app()` mounts them.
#[cfg(test)]
fn endpoint() -> impl Endpoint {
    use poem::EndpointExt;
    Route::new()
        .nest("/", Route::new().at("/v1/x", get(serve_page)))
        .nest("/app", assets())
        .with(RootPage)
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderMap;

    use super::*;

    async fn get(
        uri: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().uri_str(uri);
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        let resp = endpoint().get_response(req.finish()).await;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = resp.into_body().into_string().await.unwrap();
        (status, headers, body)
    }

    #[tokio::test]
    async fn the_page_links_its_assets_by_hash_and_each_is_served_with_its_type() {
        let (status, headers, html) = get("/", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert!(!html.contains("{{asset:"), "unreplaced placeholder");
        for asset in ASSETS.iter() {
            let url = format!("/app/{}?v={}", asset.name, asset.hash);
            assert!(html.contains(&url), "page does not link {url}");
            let (status, headers, body) = get(&url, &[]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(
                headers[header::CACHE_CONTROL],
                "public, max-age=31536000, immutable"
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(body, asset.body);
        }
    }

    #[tokio::test]
    async fn root_answers_head_without_a_body_and_refuses_other_methods() {
        let head = endpoint()
            .get_response(Request::builder().method(poem::http::Method::HEAD).finish())
            .await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            head.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(head.into_body().into_vec().await.unwrap().is_empty());
        let post = endpoint()
            .get_response(Request::builder().method(poem::http::Method::POST).finish())
            .await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        // Everything else still reaches the API nested at `/`.
        let (status, _, _) = get("/v1/x", &[]).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_stale_asset_url_is_revalidated_and_a_matching_etag_is_304() {
        let (status, headers, _) = get("/app/app.js?v=0000", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let etag = ASSETS[0].etag();
        let (status, _, body) = get("/app/app.js", &[(header::IF_NONE_MATCH, &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        let (status, _, _) = get("/app/nope.js", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

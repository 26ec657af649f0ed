//! The web app (`web/`): its page and style as written, its script as
//! `web/build` bundles it into `web/dist`, embedded in the binary, so the
//! server serves it at `/` with no Node.js where it runs.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../../web/src/app/index.html");
const SCRIPT: &str = include_str!("../../../web/dist/app.js");
const STYLE: &str = include_str!("../../../web/src/app/app.css");

/// Its own script and style only; MQTT over WebSocket may be on another
/// port; media streams are the page's own; mqtt.js keeps its timers in a
/// worker it makes from a blob (throttled timers would drop the link).
const POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
                      img-src 'self' https: data:; media-src 'self' blob:; \
                      worker-src 'self' blob:; object-src 'none'; base-uri 'none'; \
                      frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            // Checked again each time: a new binary may bring a new app.
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        body,
    )
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
}

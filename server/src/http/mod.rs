//! The HTTP API (axum). Routes are declared with their OpenAPI description
//! next to them, so `/openapi.json` is generated from the same code.

mod error;
mod health;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::metrics::{HttpLabels, Metrics};
use crate::store::Store;

pub struct App {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Where readiness checks that the MQTT listener accepts connections.
    pub mqtt_probe_addr: SocketAddr,
    pub openapi: utoipa::openapi::OpenApi,
}

pub type AppState = Arc<App>;

#[derive(OpenApi)]
#[openapi(info(
    title = "Switchboard",
    description = "Self-hostable backend for video calling and robot teleoperation"
))]
struct ApiDoc;

/// Every route with its OpenAPI description.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The generated OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

pub fn router(app: AppState) -> Router {
    let (routes, _) = api().split_for_parts();
    routes
        .route("/openapi.json", get(health::openapi))
        .fallback(error::not_found)
        .layer(middleware::from_fn_with_state(app.clone(), count_request))
        .with_state(app)
}

async fn count_request(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let response = next.run(req).await;
    app.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use switchboard_protocol::ErrorCode;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    status: &'static str,
    database: bool,
    broker: bool,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database answers and the MQTT listener accepts connections.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let database = app.store.ping().await;
    let broker = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(app.mqtt_probe_addr),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let ready = database && broker;
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        database,
        broker,
    };
    (status, Json(body))
}

/// Metrics in the OpenMetrics text format (Prometheus reads it).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text exposition",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

/// The OpenAPI description of this API, generated from the code.
pub async fn openapi(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let json = app
        .openapi
        .to_json()
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json))
}

//! The HTTP API (axum). Routes are declared with their OpenAPI description
//! next to them, so `/openapi.json` is generated from the same code.

mod auth;
mod calls;
mod error;
mod extract;
mod health;
mod ice;
mod listener;
pub use listener::HttpListener;
mod me;
mod presence;
mod robots;
mod web;

pub use auth::RobotCreated;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::{HttpLabels, Metrics};
use crate::services::Services;
use crate::sms::Sms;
use crate::social::Graph;
use crate::store::Store;
use crate::token::Tokens;

/// Largest request body accepted (a discovery request of 500 numbers is
/// about 12 KiB).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest contact or block list body: `me::MAX_LIST` ids are about 180 KB
/// of JSON, which the general limit would refuse.
const MAX_LIST_BODY_BYTES: usize = 256 * 1024;

pub struct App {
    pub config: Config,
    pub services: Services,
    pub store: Store,
    pub tokens: Tokens,
    pub graph: Arc<Graph>,
    /// Removes subscriptions the graph no longer allows.
    pub watchers: crate::broker::Watchers,
    pub sms: Sms,
    pub limits: Arc<Limits>,
    /// Key of the keyed hashes (ids in the `hmac-sha256` scheme, one-time
    /// codes).
    pub id_key: Vec<u8>,
    /// MQTT URLs for clients: TCP and WebSocket.
    pub mqtt_urls: (String, String),
    /// TURN URLs handed out with credentials: `ice_turn_urls`, or the
    /// embedded server's.
    pub turn_urls: Vec<String>,
    pub metrics: Arc<Metrics>,
    /// Where readiness checks that the MQTT listener accepts connections.
    pub mqtt_probe_addr: SocketAddr,
    pub openapi: utoipa::openapi::OpenApi,
}

pub type AppState = Arc<App>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard",
        description = "Self-hostable backend for video calling and robot teleoperation"
    ),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// `bearer`: an access token from sign-in; `admin`: the `admin_token`.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route with its OpenAPI description.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(auth::otp))
        .routes(routes!(auth::verify))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::robot_sign_in))
        .routes(routes!(auth::create_robot))
        .routes(routes!(me::get_my_profile, me::put_my_profile))
        .routes(routes!(me::get_profile))
        // This layer is inside the router-wide limit, so it wins here.
        .routes(
            routes!(me::get_contacts, me::put_contacts)
                .layer(DefaultBodyLimit::max(MAX_LIST_BODY_BYTES)),
        )
        .routes(
            routes!(me::get_blocked, me::put_blocked)
                .layer(DefaultBodyLimit::max(MAX_LIST_BODY_BYTES)),
        )
        .routes(routes!(me::get_visibility, me::put_visibility))
        .routes(routes!(me::discover))
        .routes(routes!(presence::presence))
        .routes(routes!(calls::list))
        .routes(routes!(calls::one))
        .routes(routes!(calls::add_push_token))
        .routes(routes!(ice::ice_servers))
        .routes(routes!(robots::new_code))
        .routes(routes!(robots::my_robots))
        .routes(routes!(robots::unpair))
        .routes(routes!(robots::my_owners))
}

/// The generated OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

pub fn router(app: AppState) -> Router {
    let (routes, _) = api().split_for_parts();
    routes
        .route("/openapi.json", get(health::openapi))
        .merge(web::routes())
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    /// What the extractors can answer is in the document, with the error
    /// body: a bearer or admin route 401 and 403, a JSON body 400 and 413.
    #[test]
    fn every_operation_documents_its_errors() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let error_body = json!({"$ref": "#/components/schemas/ErrorBody"});
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let Some(responses) = op.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                let mut need = Vec::new();
                if op.get("security").is_some() {
                    need.extend(["401", "403"]);
                }
                if op.get("requestBody").is_some() {
                    need.extend(["400", "413"]);
                }
                for status in need {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} does not document {status}"
                    );
                }
                for (status, response) in responses {
                    if status.starts_with('4') {
                        assert_eq!(
                            response["content"]["application/json"]["schema"], error_body,
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn query_parameters_are_in_the_query() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let calls = doc["paths"]["/v1/calls"]["get"]["parameters"]
            .as_array()
            .unwrap();
        assert_eq!(calls.len(), 2);
        for p in calls {
            assert_eq!(p["in"], "query", "{p}");
            assert_ne!(p["required"], true, "{p}");
        }
        let presence = &doc["paths"]["/v1/presence"]["get"]["parameters"][0];
        assert_eq!(presence["in"], "query", "{presence}");
        assert_eq!(presence["required"], true, "{presence}");
    }

    /// The error codes come from the protocol's own type.
    #[test]
    fn the_error_code_schema_lists_every_code() {
        use switchboard_protocol::ErrorCode::*;
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let listed = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        for code in [
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            RateLimited,
            Unavailable,
            Internal,
        ] {
            let name = serde_json::to_value(code).unwrap();
            assert!(
                listed.as_array().unwrap().contains(&name),
                "{name} not in {listed}"
            );
        }
    }
}

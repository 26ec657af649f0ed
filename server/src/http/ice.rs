//! `GET /v1/ice-servers`: STUN and TURN servers for the client's WebRTC
//! stack, with TURN credentials that expire (coturn's REST scheme,
//! `use-auth-secret`): username `<expiry>:<userId>`, password
//! `base64(HMAC-SHA1(turn_secret, username))`. The TURN server checks them
//! with the same secret; nothing is stored.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use switchboard_protocol::ErrorBody;
use utoipa::ToSchema;

use super::extract::Caller;
use super::AppState;
use crate::token::now_s;
use crate::turn::turn_credentials;

#[derive(Serialize, ToSchema)]
pub struct IceServer {
    urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServers {
    /// As `RTCConfiguration.iceServers` takes them.
    ice_servers: Vec<IceServer>,
    /// Seconds the TURN credentials stay valid.
    ttl: u64,
}

/// STUN and TURN servers for the caller's WebRTC stack.
#[utoipa::path(get, path = "/v1/ice-servers", tag = "calls",
    responses((status = 200, body = IceServers),
        (status = 401, description = "no, invalid or expired access token", body = ErrorBody),
        (status = 403, description = "not a user or robot token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn ice_servers(State(app): State<AppState>, caller: Caller) -> Json<IceServers> {
    let config = &app.config;
    let mut ice_servers = Vec::new();
    if !config.ice.stun_urls.is_empty() {
        ice_servers.push(IceServer {
            urls: config.ice.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    let secret = config.ice.turn.as_ref().map(|t| t.secret.as_str());
    if let (false, Some(secret)) = (app.turn_urls.is_empty(), secret) {
        let (username, credential) = turn_credentials(
            secret,
            caller.id.as_str(),
            now_s() + config.ice.turn_credential_ttl.as_secs(),
        );
        ice_servers.push(IceServer {
            urls: app.turn_urls.clone(),
            username: Some(username),
            credential: Some(credential),
        });
    }
    Json(IceServers {
        ice_servers,
        ttl: config.ice.turn_credential_ttl.as_secs(),
    })
}

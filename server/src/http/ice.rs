//! `GET /v1/ice-servers`: STUN and TURN servers for the client's WebRTC
//! stack, with TURN credentials that expire (coturn's REST scheme,
//! `use-auth-secret`): username `<expiry>:<userId>`, password
//! `base64(HMAC-SHA1(turn_secret, username))`. The TURN server checks them
//! with the same secret; nothing is stored.

use axum::extract::State;
use axum::Json;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Caller;
use super::AppState;
use crate::token::now_s;

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

/// The TURN username and password for `user` until `expires` (seconds
/// since the epoch).
pub fn turn_credentials(secret: &str, user: &str, expires: u64) -> (String, String) {
    let username = format!("{expires}:{user}");
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

/// STUN and TURN servers for the caller's WebRTC stack.
#[utoipa::path(get, path = "/v1/ice-servers", tag = "calls",
    responses((status = 200, body = IceServers), (status = 401)), security(("bearer" = [])))]
pub async fn ice_servers(State(app): State<AppState>, caller: Caller) -> Json<IceServers> {
    let config = &app.config;
    let mut ice_servers = Vec::new();
    if !config.ice_stun_urls.is_empty() {
        ice_servers.push(IceServer {
            urls: config.ice_stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if let (false, Some(secret)) = (
        config.ice_turn_urls.is_empty(),
        config.turn_secret.as_deref(),
    ) {
        let (username, credential) = turn_credentials(
            secret,
            &caller.0.sub,
            now_s() + config.turn_credential_ttl_s,
        );
        ice_servers.push(IceServer {
            urls: config.ice_turn_urls.clone(),
            username: Some(username),
            credential: Some(credential),
        });
    }
    Json(IceServers {
        ice_servers,
        ttl: config.turn_credential_ttl_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_coturn_rest_scheme() {
        // Computed independently:
        // printf '1700000000:alice' | openssl dgst -sha1 -hmac 'north' -binary | base64
        let (user, pass) = turn_credentials("north", "alice", 1_700_000_000);
        assert_eq!(user, "1700000000:alice");
        assert_eq!(pass, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    }
}

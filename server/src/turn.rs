//! TURN: the credentials handed to clients and, when `turn_listen_addr` is
//! set, an embedded TURN server (the `turn` crate) that checks them.
//! Credentials follow coturn's REST scheme (`use-auth-secret`): username
//! `<expiry>:<userId>`, password `base64(HMAC-SHA1(turn_secret, username))`,
//! so coturn and the embedded server accept the same ones and nothing is
//! stored.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine;
use hmac::{Hmac, Mac};
use turn::auth::{generate_auth_key, AuthHandler};
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::config::{ConnConfig, ServerConfig};
use turn::server::Server;

use crate::token::now_s;

/// The realm the embedded server names in its challenges.
const REALM: &str = "switchboard";

/// The TURN username and password for `user` until `expires` (seconds
/// since the epoch).
pub fn turn_credentials(secret: &str, user: &str, expires: u64) -> (String, String) {
    let username = format!("{expires}:{user}");
    let password = password(secret, &username);
    (username, password)
}

fn password(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Why a TURN username is refused, before any key is made.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Expired,
}

/// The expiry of a `<expiry>:<userId>` username that is still valid at
/// `now`.
pub fn check_username(username: &str, now: u64) -> Result<u64, Refusal> {
    let (expiry, user) = username.split_once(':').ok_or(Refusal::Malformed)?;
    let expiry: u64 = expiry.parse().map_err(|_| Refusal::Malformed)?;
    if user.is_empty() {
        return Err(Refusal::Malformed);
    }
    if expiry < now {
        return Err(Refusal::Expired);
    }
    Ok(expiry)
}

struct SharedSecret(String);

impl AuthHandler for SharedSecret {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        from: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        if let Err(refusal) = check_username(username, now_s()) {
            tracing::debug!(%from, ?refusal, "TURN credentials refused");
            return Err(turn::Error::Other(format!("{refusal:?} username")));
        }
        Ok(generate_auth_key(
            username,
            realm,
            &password(&self.0, username),
        ))
    }
}

pub struct Turn {
    server: Server,
    pub addr: SocketAddr,
}

impl Turn {
    /// Listens on `listen` (UDP); relayed candidates carry `relay_ip`.
    pub async fn start(listen: SocketAddr, relay_ip: Option<IpAddr>, secret: &str) -> Result<Turn> {
        let socket = tokio::net::UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding TURN on {listen}"))?;
        let addr = socket.local_addr()?;
        let relay_ip = relay_ip.unwrap_or(addr.ip());
        let server = Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn: Arc::new(socket),
                relay_addr_generator: Box::new(RelayAddressGeneratorStatic {
                    relay_address: relay_ip,
                    address: listen.ip().to_string(),
                    net: Arc::new(webrtc_util::vnet::net::Net::new(None)),
                }),
            }],
            realm: REALM.into(),
            auth_handler: Arc::new(SharedSecret(secret.to_string())),
            channel_bind_timeout: std::time::Duration::ZERO,
            alloc_close_notify: None,
        })
        .await
        .context("starting the TURN server")?;
        Ok(Turn { server, addr })
    }

    pub async fn stop(self) {
        if let Err(e) = self.server.close().await {
            tracing::warn!("stopping the TURN server: {e}");
        }
    }
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
        assert_eq!(password("north", &user), pass);
    }

    #[test]
    fn usernames_are_checked_for_shape_and_expiry() {
        assert_eq!(check_username("100:alice", 100), Ok(100));
        assert_eq!(check_username("99:alice", 100), Err(Refusal::Expired));
        assert_eq!(check_username("alice", 0), Err(Refusal::Malformed));
        assert_eq!(check_username("soon:alice", 0), Err(Refusal::Malformed));
        assert_eq!(check_username("100:", 0), Err(Refusal::Malformed));
    }
}

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
use turn::relay::RelayAddressGenerator;
use turn::server::config::{ConnConfig, ServerConfig};
use turn::server::Server;
use webrtc_util::Conn;

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

/// Whether the TURN server may relay to `ip`. Clients hold credentials, so
/// without this any of them could send UDP from the server into its own
/// network (loopback, private and link-local ranges); those are refused
/// except the addresses in `reachable`, the media relay's own.
pub fn peer_allowed(ip: IpAddr, reachable: &[IpAddr]) -> bool {
    if reachable.contains(&ip) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b); // 100.64/10, carrier NAT
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || shared)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return peer_allowed(IpAddr::V4(v4), reachable);
            }
            let first = v6.segments()[0];
            let unique_local = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || unique_local
                || link_local)
        }
    }
}

/// Relay sockets of the embedded server that only send to allowed peers.
struct Guarded {
    inner: Arc<dyn Conn + Send + Sync>,
    reachable: Arc<Vec<IpAddr>>,
}

#[async_trait::async_trait]
impl Conn for Guarded {
    async fn connect(&self, addr: SocketAddr) -> Result<(), webrtc_util::Error> {
        self.inner.connect(addr).await
    }
    async fn recv(&self, buf: &mut [u8]) -> Result<usize, webrtc_util::Error> {
        self.inner.recv(buf).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), webrtc_util::Error> {
        self.inner.recv_from(buf).await
    }
    async fn send(&self, buf: &[u8]) -> Result<usize, webrtc_util::Error> {
        self.inner.send(buf).await
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> Result<usize, webrtc_util::Error> {
        if !peer_allowed(target.ip(), &self.reachable) {
            return Err(webrtc_util::Error::Other(format!(
                "TURN peer {target} is not allowed"
            )));
        }
        self.inner.send_to(buf, target).await
    }
    fn local_addr(&self) -> Result<SocketAddr, webrtc_util::Error> {
        self.inner.local_addr()
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }
    async fn close(&self) -> Result<(), webrtc_util::Error> {
        self.inner.close().await
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

struct GuardedRelays {
    inner: RelayAddressGeneratorStatic,
    reachable: Arc<Vec<IpAddr>>,
}

#[async_trait::async_trait]
impl RelayAddressGenerator for GuardedRelays {
    fn validate(&self) -> Result<(), turn::Error> {
        self.inner.validate()
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        let (inner, addr) = self.inner.allocate_conn(use_ipv4, requested_port).await?;
        let guarded = Guarded {
            inner,
            reachable: self.reachable.clone(),
        };
        Ok((Arc::new(guarded), addr))
    }
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
    /// Internal addresses other than `reachable` are no peers.
    pub async fn start(
        listen: SocketAddr,
        relay_ip: Option<IpAddr>,
        secret: &str,
        reachable: Vec<IpAddr>,
    ) -> Result<Turn> {
        let socket = tokio::net::UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding TURN on {listen}"))?;
        let addr = socket.local_addr()?;
        let relay_ip = relay_ip.unwrap_or(addr.ip());
        let server = Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn: Arc::new(socket),
                relay_addr_generator: Box::new(GuardedRelays {
                    inner: RelayAddressGeneratorStatic {
                        relay_address: relay_ip,
                        address: listen.ip().to_string(),
                        net: Arc::new(webrtc_util::vnet::net::Net::new(None)),
                    },
                    reachable: Arc::new(reachable),
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
    fn internal_peers_are_refused_but_the_relay_itself() {
        let relay: IpAddr = "127.0.0.1".parse().unwrap();
        let allowed = |ip: &str| peer_allowed(ip.parse().unwrap(), &[relay]);
        assert!(allowed("127.0.0.1"), "the relay, on loopback in tests");
        for public in ["8.8.8.8", "2001:4860:4860::8888", "100.128.0.1"] {
            assert!(allowed(public), "{public}");
        }
        for internal in [
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.2",
        ] {
            assert!(!allowed(internal), "{internal}");
        }
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

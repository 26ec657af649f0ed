//! The embedded MQTT broker (our `switchboard-broker` core): listeners,
//! the hooks that apply our rules, and a clean stop.

mod auth;
mod expiry;
mod facts;
mod hooks;
mod publisher;
mod watchers;

pub use publisher::{Attached, Landing, Publisher};
pub use watchers::Watchers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use switchboard_broker::TlsAcceptor;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

use crate::config::{Config, Mqtt, Tls};
use crate::metrics::Metrics;
use crate::services::Services;
use crate::social::Graph;
use crate::token::Tokens;

/// The broker core with our hooks.
type Core = switchboard_broker::Broker<hooks::Hooks>;

/// What the broker's hooks work with.
pub struct Deps {
    pub tokens: Tokens,
    pub metrics: Arc<Metrics>,
    pub graph: Arc<Graph>,
    pub services: Services,
}

pub struct Broker {
    core: Core,
    pub watchers: Watchers,
    expiry_task: JoinHandle<()>,
    /// Where it listens: plain MQTT, over WebSocket, over TLS, over
    /// secure WebSocket (each when configured).
    pub tcp_addr: Option<SocketAddr>,
    pub ws_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
    pub wss_addr: Option<SocketAddr>,
}

/// How long a persistent session (clean session off, e.g. a phone waiting
/// for invites) is kept while its client is away.
const SESSION_EXPIRY: Duration = Duration::from_secs(2 * 60 * 60);

impl Broker {
    /// Starts the broker and its listeners: plain, and with `tls` (its
    /// settings, and the acceptor of its certificates) TLS ones too.
    pub async fn start(
        publisher: Publisher,
        config: &Config,
        deps: Deps,
        tls: Option<(&Tls, TlsAcceptor)>,
    ) -> Result<Broker> {
        if config.mqtt.open.is_some() {
            tracing::warn!("SWITCHBOARD_OPEN_BROKER is on: anyone may log in to MQTT and use any topic. Never run this in production.");
        }
        let expiry = Arc::new(expiry::Expiry::default());
        let hooks = hooks::Hooks::new(deps, config, publisher.clone(), expiry.clone());
        let watchers = Watchers::new(publisher.clone(), hooks.graph());
        let core = Core::new(hooks, limits(&config.mqtt));
        publisher.attach(core.clone());
        let expiry_task = {
            let core = core.clone();
            tokio::spawn(async move { expiry.run(&core).await })
        };
        // Plain MQTT, over WebSocket, over TLS, over secure WebSocket.
        let acceptor = tls.as_ref().map(|(_, acceptor)| acceptor.clone());
        let roles = [
            (config.mqtt.addr, false, None),
            (config.mqtt.ws_addr, true, None),
            (
                tls.as_ref().map(|t| t.0.mqtts_addr),
                false,
                acceptor.clone(),
            ),
            (tls.as_ref().map(|t| t.0.mqtt_wss_addr), true, acceptor),
        ];
        let mut listening = [None; 4];
        for ((addr, websocket, tls), bound_addr) in roles.into_iter().zip(&mut listening) {
            let Some(addr) = addr else {
                continue;
            };
            let bound = listener(addr).with_context(|| format!("binding MQTT on {addr}"))?;
            *bound_addr = Some(bound.local_addr()?);
            let serving = core.clone();
            tokio::spawn(async move {
                let served = match websocket {
                    false => serving.serve(bound, tls).await,
                    true => serving.serve_ws(bound, tls).await,
                };
                if let Err(e) = served {
                    tracing::error!(%addr, "an MQTT listener stopped: {e}");
                }
            });
        }
        let [tcp_addr, ws_addr, tls_addr, wss_addr] = listening;
        tracing::info!(
            ?tcp_addr,
            ?ws_addr,
            ?tls_addr,
            ?wss_addr,
            "MQTT broker listening"
        );
        Ok(Broker {
            core,
            watchers,
            expiry_task,
            tcp_addr,
            ws_addr,
            tls_addr,
            wss_addr,
        })
    }

    /// Stops accepting connections, closes the ones that are open, and
    /// returns once the hooks saw each one end, so presence has every
    /// disconnect.
    pub async fn stop(self) {
        self.expiry_task.abort();
        self.core.stop().await;
    }
}

fn limits(config: &Mqtt) -> switchboard_broker::Limits {
    switchboard_broker::Limits {
        max_packet_bytes: config.max_packet_bytes,
        max_queue: config.max_queue,
        max_inflight: config.max_inflight.get(),
        max_subscriptions: config.max_subscriptions,
        max_topic_aliases: config.max_topic_aliases,
        max_keepalive_s: config.max_keepalive_s,
        session_expiry: SESSION_EXPIRY,
        stuck_after: config.stuck_after,
        proxy_protocol: config.proxy_protocol,
        ..Default::default()
    }
}

fn listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // A restarted server rebinds its port at once, though connections of
    // the previous process linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // As deep as the system allows (Linux caps it at `somaxconn`, 4096 by
    // default since 5.4): in a reconnect storm a full queue drops the
    // phones' SYNs, and each waits a second or more to try again.
    socket.listen(65535)
}

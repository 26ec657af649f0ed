//! The embedded MQTT broker (rmqtt): listeners, retained messages, our
//! hooks, and a clean stop.

mod auth;
mod expiry;
mod facts;
mod hooks;
mod publisher;
mod retained;
mod shared_subscriptions;
mod takeover;
mod watchers;

pub use publisher::Publisher;
pub use watchers::Watchers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use switchboard_protocol::Topic;

use crate::config::{Config, Mqtt};
use crate::metrics::Metrics;
use crate::outbound::Publish as _;
use crate::services::Services;
use crate::social::Graph;
use crate::store::Store;
use crate::token::Tokens;

/// What the broker's hooks work with.
pub struct Deps {
    pub tokens: Tokens,
    pub metrics: Arc<Metrics>,
    pub graph: Arc<Graph>,
    pub store: Store,
    pub services: Services,
}

pub struct Broker {
    scx: ServerContext,
    pub watchers: Watchers,
    task: JoinHandle<()>,
    expiry_task: JoinHandle<()>,
    /// Connections open, as the hooks count them.
    connections: watch::Receiver<usize>,
    pub tcp_addr: SocketAddr,
    pub ws_addr: SocketAddr,
}

/// How long a persistent session (clean session off, e.g. a phone waiting
/// for invites) is kept while its client is away.
const SESSION_EXPIRY: Duration = Duration::from_secs(2 * 60 * 60);

/// The broker's context, before it runs: the services publish through it
/// from the start.
pub async fn context() -> Result<ServerContext> {
    let scx = ServerContext::new()
        // rmqtt refuses logins when the machine is loaded; a calling
        // backend should rather serve slowly than turn users away.
        .busy_check_enable(false)
        .build()
        .await;
    *scx.extends.shared_subscription_mut().await =
        Box::new(shared_subscriptions::InTurn::default());
    Ok(scx)
}

impl Broker {
    /// Starts the broker with `retained` already in place, so no client can
    /// connect before the state rebuilt from the database is there.
    pub async fn start(
        publisher: Publisher,
        config: &Config,
        deps: Deps,
        retained: Vec<(Topic, Vec<u8>)>,
    ) -> Result<Broker> {
        if config.mqtt.open.is_some() {
            tracing::warn!("SWITCHBOARD_OPEN_BROKER is on: anyone may log in to MQTT and use any topic. Never run this in production.");
        }
        let scx = publisher.context();
        let served = config.mqtt.open.is_none().then(|| deps.services.clone());
        *scx.extends.retain_mut().await = Box::new(retained::Retained::new(scx.clone(), served));
        for (topic, payload) in retained {
            publisher.publish(&topic, payload, true).await?;
        }
        let watchers = Watchers::new(scx.clone(), publisher.clone(), deps.graph.clone());
        let expiry = Arc::new(expiry::Expiry::default());
        let expiry_task = {
            let (expiry, scx) = (expiry.clone(), scx.clone());
            tokio::spawn(async move { expiry.run(scx).await })
        };
        let (connections_tx, connections) = watch::channel(0);
        let hooks = Arc::new(hooks::Hooks::new(
            deps,
            config,
            publisher.clone(),
            scx.clone(),
            expiry,
            connections_tx,
        ));
        let register = scx.extends.hook_mgr().register();
        for t in hooks::TYPES {
            register
                .add_priority(t, 100, Box::new(Shared(hooks.clone())))
                .await;
        }
        register.start().await;

        let tcp = listener(&config.mqtt, "tcp", config.mqtt.addr)?;
        let ws = listener(&config.mqtt, "ws", config.mqtt.ws_addr)?;
        let tcp_addr = tcp.local_addr()?;
        let ws_addr = ws.local_addr()?;
        // listener_by_id: two listeners on port 0 would share an id otherwise.
        let server = MqttServer::new(scx.clone())
            .listener_by_id(tcp.tcp()?, 1)
            .listener_by_id(ws.ws()?, 2)
            .build();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!("MQTT server stopped: {e}");
            }
        });
        tracing::info!(%tcp_addr, %ws_addr, "MQTT broker listening");
        Ok(Broker {
            scx,
            watchers,
            task,
            expiry_task,
            connections,
            tcp_addr,
            ws_addr,
        })
    }

    /// Stops accepting connections, closes the ones that are open, and
    /// waits (up to 10 s) until the hooks saw each one end, so presence
    /// has every disconnect.
    pub async fn stop(mut self) {
        self.task.abort();
        // The accept loops are gone before the sweep starts.
        let _ = (&mut self.task).await;
        self.expiry_task.abort();
        // A connection that was mid-handshake may register during a sweep:
        // the next one closes it.
        for _ in 0..3 {
            let shared = self.scx.extends.shared().await;
            let ids: Vec<_> = shared.iter().map(|e| e.id()).collect();
            if ids.is_empty() {
                break;
            }
            for id in ids {
                let mut entry = shared.entry(id);
                if let Err(e) = entry.kick(true, true, true).await {
                    tracing::debug!("closing an MQTT session at shutdown: {e}");
                }
            }
        }
        let all_ended = self.connections.wait_for(|open| *open == 0);
        if tokio::time::timeout(Duration::from_secs(10), all_ended)
            .await
            .is_err()
        {
            tracing::warn!("connections still open 10 s after the stop");
        }
    }
}

fn listener(config: &Mqtt, name: &str, addr: SocketAddr) -> Result<rmqtt::net::Listener> {
    Builder::new()
        .name(name)
        .laddr(addr)
        // Without it request/response exchanges wait ~40 ms for Nagle.
        .nodelay(true)
        // A restarted server rebinds its port at once, though connections
        // of the previous process linger in TIME_WAIT.
        .reuseaddr(Some(true))
        .allow_anonymous(false)
        .max_packet_size(config.max_packet_bytes)
        .max_mqueue_len(config.max_queue)
        .max_inflight(config.max_inflight)
        .max_subscriptions(config.max_subscriptions)
        .max_keepalive(config.max_keepalive_s)
        .max_topic_aliases(config.max_topic_aliases)
        // No expiry of rmqtt's own: it would stamp every forwarded MQTT 5
        // message with one its publisher never set. The hooks expire
        // queued messages after `mqtt_message_expiry_s` instead.
        .message_expiry_interval(Duration::ZERO)
        .session_expiry_interval(SESSION_EXPIRY)
        .bind()
        .with_context(|| format!("binding MQTT {name} listener on {addr}"))
}

/// rmqtt takes handlers by `Box`; this lets one `Hooks` serve every type.
struct Shared(Arc<hooks::Hooks>);

#[async_trait::async_trait]
impl rmqtt::hook::Handler for Shared {
    async fn hook(
        &self,
        param: &rmqtt::hook::Parameter,
        acc: Option<rmqtt::hook::HookResult>,
    ) -> rmqtt::hook::ReturnType {
        self.0.hook(param, acc).await
    }
}

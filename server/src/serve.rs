//! Startup, wiring and shutdown of the `serve`, `migrate` and `token`
//! commands.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Attached, Broker, Deps, Landing, Publisher};
use crate::bus::Bus;
use crate::clock;
use crate::config::Config;
use crate::holder::Holder;
use crate::http::{self, App};
use crate::keys;
use crate::limits::Limits;
use crate::media::Rooms;
use crate::metrics::Metrics;
use crate::push::{self, Push};
use crate::services::calls::{CallService, Follow};
use crate::services::presence::PresenceService;
use crate::services::profiles::ProfileService;
use crate::services::robots::RobotService;
use crate::services::{Edges, Services};
use crate::sms::Sms;
use crate::social::Graph;
use crate::store::Store;
use crate::tls::{CertFiles, Served};
use crate::token::Tokens;
use switchboard_broker::TlsAcceptor;

pub fn tokens(config: &Config) -> Result<Tokens> {
    ensure_data_dir(config)?;
    let secret = keys::load_or_create(
        &config.data_dir,
        "jwt.key",
        config.accounts.jwt_secret.as_deref(),
    )?;
    Ok(Tokens::new(&secret))
}

fn ensure_data_dir(config: &Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))
}

/// This node's name in the store: made once, kept in the data directory,
/// so a restarted node takes back (and clears) what its last run left.
/// The file stays locked while the node runs: two processes on one data
/// directory would be one node to the store, each clearing the other's
/// devices.
fn node_id(config: &Config) -> Result<(String, std::fs::File)> {
    use std::io::{Read, Write};
    let path = config.data_dir.join("node.id");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        anyhow::bail!(
            "another switchboard runs on the data directory {} (each node needs its own)",
            config.data_dir.display()
        );
    }
    let mut id = String::new();
    file.read_to_string(&mut id)?;
    let id = id.trim().to_string();
    if !id.is_empty() {
        // It names the node's NATS subject too.
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        anyhow::ensure!(
            id.chars().all(plain),
            "{} holds {id:?}, not a node name (letters, digits, - and _)",
            path.display()
        );
        return Ok((id, file));
    }
    let id = format!("{:016x}", rand::random::<u64>());
    file.write_all(id.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((id, file))
}

fn id_key(config: &Config) -> Result<Vec<u8>> {
    keys::load_or_create(
        &config.data_dir,
        "id.key",
        config.accounts.id_secret.as_deref(),
    )
}

pub async fn open_store(config: &Config) -> Result<Store> {
    ensure_data_dir(config)?;
    let store = Store::connect(&config.database_url).await?;
    store.migrate().await?;
    Ok(store)
}

pub async fn migrate(config: &Config) -> Result<()> {
    let store = open_store(config).await?;
    let applied = store.applied_migrations().await?;
    tracing::info!(count = applied.len(), latest = ?applied.last(), "migrations applied");
    store.close().await;
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM, then stops it in order.
pub async fn run(config: Config) -> Result<()> {
    let (running, listeners, app) = start(&config).await?;
    let stopping = CancellationToken::new();
    let signalled = stopping.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signalled.cancel();
    });
    let router = http::router(app);
    let serving = listeners.into_iter().map(|listener| {
        // axum gives a tapped listener's address as the connect info.
        use axum::serve::ListenerExt as _;
        let service = router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener.tap_io(|_| {}), service)
            .with_graceful_shutdown(stopping.clone().cancelled_owned());
        async move { served.await.context("serving HTTP") }
    });
    futures_util::future::try_join_all(serving).await?;
    running.stop().await;
    Ok(())
}

/// How long the stop waits for the services' tasks and the relay's rooms.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// What runs besides HTTP, for the stop to end in order.
struct Running {
    /// Held until the process ends: this node's name is its own.
    _node_lock: std::fs::File,
    broker: Broker,
    edges: Edges,
    relay: Option<switchboard_relay::Relay>,
    turn: Option<crate::turn::Turn>,
    store: Store,
}

impl Running {
    /// After HTTP ended, in order: no new MQTT clients and every connection
    /// closed, its end seen by presence; the services' stop (tickers end,
    /// queued presence and call states stored and published, every task
    /// they started awaited); the relay's rooms and TURN closed; the store
    /// closed last.
    async fn stop(self) {
        tracing::info!("shutting down");
        self.broker.stop().await;
        self.edges.stop.cancel();
        self.edges.tasks.close();
        // A media connection that never finishes closing must not keep the
        // store from closing.
        let services = async {
            self.edges.tasks.wait().await;
            if let Some(relay) = &self.relay {
                relay.close_all().await;
            }
        };
        if tokio::time::timeout(STOP_WAIT, services).await.is_err() {
            tracing::warn!("service tasks still running {STOP_WAIT:?} after the stop");
        }
        if let Some(turn) = self.turn {
            turn.stop().await;
        }
        // The last presence and call states for the other nodes leave.
        self.edges.bus.close().await;
        self.store.close().await;
        tracing::info!("stopped");
    }
}

/// Everything but serving HTTP: the store, the services, the broker, TURN,
/// and the HTTP listeners bound (HTTPS too, with TLS).
async fn start(config: &Config) -> Result<(Running, Vec<http::HttpListener>, Arc<App>)> {
    // Its keys are checked before anything is opened or written.
    let push = push::Services::from_config(&config.push)?;
    let store = open_store(config).await?;
    let tokens = tokens(config)?;
    let id_key = id_key(config)?;
    let sms = Sms::from_config(config)?;
    // On the bus before the graph is read, so no change made meanwhile on
    // another node is missed.
    let attached = Attached::default();
    let (news, graph_news) = tokio::sync::mpsc::unbounded_channel();
    let (call_news, calls_heard) = tokio::sync::mpsc::unbounded_channel();
    let (held, held_queue) = tokio::sync::mpsc::unbounded_channel();
    let landing = Arc::new(Landing {
        core: attached.clone(),
        graph_news: news,
        call_news,
        held,
    });
    let (node, node_lock) = node_id(config)?;
    let metrics = Arc::new(Metrics::new());
    let bus = match &config.nats_url {
        Some(url) => {
            tracing::info!(node, "one of several nodes (nats_url; docs/scaling.md)");
            Bus::nats(url, &node, landing, metrics.bus_unsent.clone()).await?
        }
        None => Bus::alone(landing),
    };
    let graph = Arc::new(Graph::load(&store).await?);
    let limits = Arc::new(Limits::new());
    let publisher = Publisher::new(attached, bus.clone());
    // Cancelled at shutdown once no client is connected: the services'
    // tasks store and publish what was queued, then end.
    let edges = Edges {
        store: store.clone(),
        clock: clock::system(),
        publish: Arc::new(publisher.clone()),
        bus,
        metrics: metrics.clone(),
        tasks: TaskTracker::new(),
        stop: CancellationToken::new(),
    };
    let presence = PresenceService::new(edges.clone(), node.clone()).await?;
    let robots = RobotService::new(
        config.calls.pairing_code_ttl,
        config.calls.command_timeout,
        graph.clone(),
        edges.clone(),
    );
    let (relay, relay_queue) = match &config.relay {
        Some(settings) => {
            let (relay, queue) =
                switchboard_relay::Relay::new(settings.clone(), metrics.relay.clone());
            (Some(relay), Some(queue))
        }
        None => (None, None),
    };
    let mut followers: Vec<Arc<dyn Follow>> = vec![robots.clone()];
    if let Some(relay) = &relay {
        followers.push(Arc::new(Rooms {
            relay: relay.clone(),
            node: node.clone(),
            tasks: edges.tasks.clone(),
        }));
    }
    let (calls, calls_queue) = CallService::new(
        config.calls.ring_timeout,
        node,
        relay.is_some(),
        edges.clone(),
        presence.clone(),
        push.map(|services| Arc::new(Push::new(services, &edges))),
        followers,
    );
    // Calls this node held when it stopped end `failed`.
    let failed = calls.fail_held().await?;
    if failed > 0 {
        tracing::info!(
            count = failed,
            "calls accepted here and live at the last stop ended as failed"
        );
    }
    let services = Services {
        presence,
        calls,
        robots,
        profiles: ProfileService::new(edges.clone()),
        relay: relay.clone(),
    };
    let deps = Deps {
        tokens: tokens.clone(),
        metrics: metrics.clone(),
        graph: graph.clone(),
        services: services.clone(),
    };
    let (certs, acme) = match &config.tls {
        Some(tls) => {
            let (served, acme) = Served::start(&tls.certificates, &config.data_dir)?;
            (Some(served), acme)
        }
        None => (None, None),
    };
    if let Some(Served::Files(files)) = &certs {
        reload_on_sighup(files.clone());
    }
    let mqtt_tls = match (&config.tls, &certs) {
        (Some(tls), Some(certs)) => Some((tls, TlsAcceptor::from(certs.config(&[], false)?))),
        _ => None,
    };
    let broker = Broker::start(publisher.clone(), config, deps, mqtt_tls).await?;
    // Their timers and publishers run once the broker's state is in place.
    services.presence.start();
    services.robots.start();
    services.calls.start(calls_queue, calls_heard);
    let watchers = broker.watchers.clone();
    (edges.tasks).spawn(watchers.follow(
        store.clone(),
        metrics.clone(),
        graph_news,
        edges.stop.clone(),
    ));
    let (idle_limits, idle_store, now) = (limits.clone(), store.clone(), edges.clock.clone());
    edges.every(Duration::from_secs(60), move || {
        idle_limits.forget_idle();
        let (store, now) = (idle_store.clone(), now.now_ms());
        async move {
            if let Err(e) = store.forget_spent(now).await {
                tracing::warn!("forgetting full rate limits: {e:#}");
            }
        }
    });
    if let Some(queue) = relay_queue {
        edges.tasks.spawn(crate::media::run_publisher(
            queue,
            publisher.clone(),
            edges.stop.clone(),
        ));
    }
    let holder = Holder {
        relay: relay.clone(),
        calls: services.calls.clone(),
        robots: services.robots.clone(),
        publisher: publisher.clone(),
    };
    edges
        .tasks
        .spawn(holder.run(held_queue, edges.stop.clone()));

    let turn_settings = config.ice.turn.as_ref();
    let turn = match turn_settings.and_then(|t| Some((t.server.as_ref()?, &t.secret))) {
        Some((server, secret)) => {
            // The relay must stay reachable through TURN wherever it binds.
            let reachable = (config.relay.iter())
                .flat_map(|r| [Some(r.bind_ip), r.nat_1to1_ip])
                .flatten()
                .filter(|ip| !ip.is_unspecified())
                .collect();
            let turn = crate::turn::Turn::start(server.listen, server.relay_ip, secret, reachable);
            Some(turn.await?)
        }
        None => None,
    };
    let turn_urls = match (&turn, turn_settings) {
        (Some(t), Some(settings)) if settings.urls.is_empty() => {
            let relay_ip = settings.server.as_ref().and_then(|s| s.relay_ip);
            let ip = relay_ip.unwrap_or(reachable(t.addr).ip());
            vec![format!(
                "turn:{}?transport=udp",
                SocketAddr::new(ip, t.addr.port())
            )]
        }
        (_, Some(settings)) => settings.urls.clone(),
        (_, None) => Vec::new(),
    };

    let proxy_protocol = config.http.proxy_protocol;
    let https = match (&config.tls, &certs) {
        (Some(tls), Some(certs)) => {
            let acceptor = TlsAcceptor::from(certs.config(&[b"http/1.1"], true)?);
            Some((tls.https_addr, acceptor))
        }
        _ => None,
    };
    let plain = config.http.addr.map(|addr| (addr, None));
    let secure = https.map(|(addr, acceptor)| (addr, Some(acceptor)));
    let mut listeners = Vec::new();
    let mut http_addrs = [None, None];
    for (wanted, bound_addr) in [plain, secure].into_iter().zip(&mut http_addrs) {
        let Some((addr, tls)) = wanted else {
            continue;
        };
        let bound = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding HTTP on {addr}"))?;
        *bound_addr = Some(bound.local_addr()?);
        listeners.push(http::HttpListener::new(bound, proxy_protocol, tls)?);
    }
    let [http_addr, https_addr] = http_addrs;
    // Asked for once the HTTPS listener is there to prove the domain.
    if let Some(acme) = acme {
        acme.spawn();
    }
    let (mqtt_url, ws_url) = handed_out(
        broker.tcp_addr,
        broker.ws_addr,
        broker.tls_addr,
        broker.wss_addr,
    );
    let mqtt_urls = (
        config.mqtt.public_url.clone().unwrap_or(mqtt_url),
        config.mqtt.ws_public_url.clone().unwrap_or(ws_url),
    );
    let app = Arc::new(App {
        services,
        store: store.clone(),
        tokens,
        graph,
        watchers: broker.watchers.clone(),
        sms,
        limits,
        id_key,
        mqtt_urls,
        turn_urls,
        metrics: metrics.clone(),
        mqtt_probe_addr: reachable(
            broker
                .tcp_addr
                .or(broker.tls_addr)
                .expect("an MQTT listener, checked by the config"),
        ),
        openapi: http::openapi(),
        config: config.clone(),
    });
    tracing::info!(
        http_addr = http_addr.map(|a| a.to_string()),
        mqtt = broker.tcp_addr.map(|a| a.to_string()),
        mqtt_ws = broker.ws_addr.map(|a| a.to_string()),
        https = https_addr.map(|a| a.to_string()),
        mqtts = broker.tls_addr.map(|a| a.to_string()),
        mqtt_wss = broker.wss_addr.map(|a| a.to_string()),
        turn = turn.as_ref().map(|t| t.addr.to_string()),
        database = %crate::store::redact(&config.database_url),
        "switchboard ready"
    );
    let running = Running {
        _node_lock: node_lock,
        broker,
        edges,
        relay,
        turn,
        store,
    };
    Ok((running, listeners, app))
}

/// The MQTT URLs sign-in hands out, (TCP, WebSocket), from where the
/// broker listens: over TLS when it does, else plain. The config sees
/// that each has one of the two.
fn handed_out(
    tcp: Option<SocketAddr>,
    ws: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    wss: Option<SocketAddr>,
) -> (String, String) {
    let url =
        |secure: Option<SocketAddr>, plain: Option<SocketAddr>, schemes: [&str; 2], path: &str| {
            let (scheme, addr) = match (secure, plain) {
                (Some(addr), _) => (schemes[0], addr),
                (None, Some(addr)) => (schemes[1], addr),
                (None, None) => unreachable!("the config requires a listener"),
            };
            format!("{scheme}://{}{path}", reachable(addr))
        };
    (
        url(tls, tcp, ["mqtts", "mqtt"], ""),
        url(wss, ws, ["wss", "ws"], "/mqtt"),
    )
}

/// Reads the certificate files again on each SIGHUP (a renewal), for new
/// connections on every TLS listener.
fn reload_on_sighup(certs: Arc<CertFiles>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return tracing::warn!("no SIGHUP handler: certificate files are read at start only");
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match certs.reload() {
                Ok(()) => tracing::info!("certificate files read again"),
                Err(e) => tracing::error!(
                    "reading the certificate files again (the old certificate stays): {e:#}"
                ),
            }
        }
    });
}

/// The address to dial to reach a listener bound to `addr` (a wildcard
/// address is reached through loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        other => other,
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_hands_out_the_tls_listeners_when_there_are_some() {
        let at = |port: u16| Some(SocketAddr::from(([0, 0, 0, 0], port)));
        // (tcp, ws, tls, wss) -> the URLs
        let cases = [
            (
                (at(1883), at(8083), None, None),
                ("mqtt://127.0.0.1:1883", "ws://127.0.0.1:8083/mqtt"),
            ),
            (
                (at(1883), at(8083), at(8883), at(8084)),
                ("mqtts://127.0.0.1:8883", "wss://127.0.0.1:8084/mqtt"),
            ),
            (
                (None, None, at(8883), at(8084)),
                ("mqtts://127.0.0.1:8883", "wss://127.0.0.1:8084/mqtt"),
            ),
        ];
        for ((tcp, ws, tls, wss), (want_tcp, want_ws)) in cases {
            let got = handed_out(tcp, ws, tls, wss);
            assert_eq!(got, (want_tcp.to_string(), want_ws.to_string()));
        }
    }
}

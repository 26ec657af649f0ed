//! Signalling round trip: P caller/callee pairs call at the same time, R
//! calls each in turn. Per call: the caller publishes its invite, the
//! callee (notified on `invite/<me>/+`) accepts, and the caller sees
//! `accepted` on the call's state. Reported: p50 and p99 of invite ->
//! caller sees `accepted`, over all calls, and calls per second.
//!
//! On one server on SQLite, or (`--nodes N`) on N nodes sharing a
//! PostgreSQL database (`E2E_POSTGRES_URL`) and a nats-server, each
//! pair's caller on one node and callee on the next.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use switchboard_e2e::api::{Api, SignedIn};
use switchboard_e2e::cluster::Cluster;
use switchboard_e2e::{random_id, Database, Server};
use tokio::sync::mpsc;

use crate::stats::{ms, quantile};
use crate::users::visible_user;

/// A connected client and the publishes it receives.
async fn client(
    server: &Server,
    id: &str,
    token: &str,
) -> Result<(AsyncClient, mpsc::UnboundedReceiver<(String, Value)>)> {
    let mut opts = MqttOptions::new(id, server.mqtt.ip().to_string(), server.mqtt.port());
    opts.set_credentials(id, token);
    opts.set_keep_alive(Duration::from_secs(120));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    no_delay(&mut eventloop);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(pump(eventloop, tx));
    Ok((client, rx))
}

/// Small MQTT packets go out at once (as the server's do); otherwise
/// Nagle's algorithm on the client adds tens of milliseconds per hop.
pub fn no_delay(eventloop: &mut EventLoop) {
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
}

/// Forwards publishes, and SUBACKs as `SUBACK`.
async fn pump(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<(String, Value)>) {
    while let Ok(event) = eventloop.poll().await {
        let message = match event {
            Event::Incoming(Packet::Publish(p)) => (
                p.topic,
                serde_json::from_slice(&p.payload).unwrap_or(Value::Null),
            ),
            Event::Incoming(Packet::SubAck(_)) => (SUBACK.to_string(), Value::Null),
            _ => continue,
        };
        if tx.send(message).is_err() {
            return;
        }
    }
}

const SUBACK: &str = "SUBACK";

/// Waits for the SUBACK of the subscription just sent.
async fn subscribed(rx: &mut mpsc::UnboundedReceiver<(String, Value)>) -> Result<()> {
    loop {
        let (t, _) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .context("no SUBACK in time")?
            .context("connection closed")?;
        if t == SUBACK {
            return Ok(());
        }
    }
}

async fn wait_state(
    rx: &mut mpsc::UnboundedReceiver<(String, Value)>,
    topic: &str,
    state: &str,
) -> Result<()> {
    loop {
        let (t, v) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .context("no call state in time")?
            .context("connection closed")?;
        if t == topic && v["state"] == state {
            return Ok(());
        }
        if t.starts_with("clients/") {
            bail!("refused: {v}");
        }
    }
}

pub async fn run(pairs: usize, rounds: usize, nodes: Option<usize>) -> Result<()> {
    let (single, cluster);
    let servers: Vec<&Server> = match nodes {
        None => {
            single = Server::start(&Database::Sqlite).await?;
            vec![&single]
        }
        Some(n) => {
            cluster = Cluster::start(n).await;
            cluster.nodes.iter().map(|node| &node.server).collect()
        }
    };
    let (server, n) = (servers[0], servers.len());
    let api = Api::new(server);
    eprintln!("setting up {pairs} caller/callee pairs on {n} node(s)");
    let mut callees = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        callees.push(visible_user(server, &api, None).await?);
    }
    // Every node applied each callee's visibility before anyone calls.
    for other in &servers[1..] {
        other
            .metric_reaches("switchboard_graph_news_total", pairs as f64)
            .await;
    }
    let mut tasks = Vec::new();
    for (i, callee) in callees.into_iter().enumerate() {
        let (caller_node, callee_node) = (servers[i % n], servers[(i + 1) % n]);
        let caller = random_id();
        let caller_token = server.token(&caller, None, "user", 3600)?;
        let SignedIn {
            id: callee,
            access: callee_token,
            ..
        } = callee;
        // The callee accepts every invite.
        let (callee_client, mut invites) = client(callee_node, &callee, &callee_token).await?;
        callee_client
            .subscribe(format!("invite/{callee}/+"), QoS::AtLeastOnce)
            .await?;
        subscribed(&mut invites).await?;
        tokio::spawn(async move {
            while let Some((topic, invite)) = invites.recv().await {
                if topic.starts_with("invite/") {
                    let sid = invite["sid"].as_str().unwrap_or_default().to_string();
                    let accept = json!({"action": "accept"}).to_string();
                    let _ = callee_client
                        .publish(
                            format!("session/{sid}/call"),
                            QoS::AtLeastOnce,
                            false,
                            accept,
                        )
                        .await;
                }
            }
        });
        let (caller_client, mut states) = client(caller_node, &caller, &caller_token).await?;
        caller_client
            .subscribe(format!("clients/{caller}/errors"), QoS::AtLeastOnce)
            .await?;
        subscribed(&mut states).await?;
        tasks.push(async move {
            let mut times = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let sid = random_id();
                let state = format!("session/{sid}/state");
                let invite = json!({"sid": sid, "from": caller, "fromDevice": null, "kind": "audio", "sentAt": 0});
                let t0 = Instant::now();
                caller_client
                    .publish(format!("invite/{callee}/{sid}"), QoS::AtLeastOnce, false, invite.to_string())
                    .await?;
                caller_client.subscribe(state.clone(), QoS::AtLeastOnce).await?;
                wait_state(&mut states, &state, "accepted").await?;
                times.push(t0.elapsed());
                let hangup = json!({"action": "hangup"}).to_string();
                caller_client
                    .publish(format!("session/{sid}/call"), QoS::AtLeastOnce, false, hangup)
                    .await?;
                wait_state(&mut states, &state, "ended").await?;
                caller_client.unsubscribe(state).await?;
            }
            anyhow::Ok(times)
        });
    }
    eprintln!("calling: {pairs} pairs x {rounds} calls");
    let started = Instant::now();
    let running: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut all: Vec<Duration> = Vec::with_capacity(pairs * rounds);
    for task in running {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let on = match nodes {
        None => "1 node, SQLite".to_string(),
        Some(n) => format!(
            "{n} node(s), PostgreSQL and NATS, caller and callee on different nodes when n > 1"
        ),
    };
    println!(
        "signalling round trip ({on}): {pairs} concurrent pairs x {rounds} calls ({} calls, {:.0} calls/s): invite -> caller sees accepted p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        ms(quantile(&all, 0.5)),
        ms(quantile(&all, 0.99)),
    );
    Ok(())
}

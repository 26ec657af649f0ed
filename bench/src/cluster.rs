//! What crossing nodes adds to a message's latency. Two nodes on one
//! PostgreSQL and one nats-server, as open brokers (no login, no topic
//! rules: only the bus is measured). A publisher on node 0, and one
//! subscriber of `bench/x/t` on each node. Each round publishes one QoS 0
//! message and waits for both subscribers; reported: publish -> arrival
//! on the same node and on the other (p50, p99), and the difference of
//! their medians.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use switchboard_e2e::cluster::Cluster;
use switchboard_e2e::random_id;
use tokio::sync::mpsc;

use crate::stats::{ms, quantile};

const TOPIC: &str = "bench/x/t";
/// Rounds left out of the figures while connections and caches warm up.
const WARM_UP: usize = 200;

/// An anonymous client, subscribed to `TOPIC` if `node` is given; each
/// message it gets is reported with its node.
async fn client(
    addr: SocketAddr,
    node: Option<usize>,
    arrivals: mpsc::UnboundedSender<(usize, Instant)>,
) -> Result<AsyncClient> {
    let mut opts = MqttOptions::new(random_id(), addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(120));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    crate::calls::no_delay(&mut eventloop);
    if node.is_some() {
        client.subscribe(TOPIC, QoS::AtMostOnce).await?;
    }
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready);
    tokio::spawn(async move {
        loop {
            let event = match eventloop.poll().await {
                Ok(event) => event,
                // The nodes stop at the end of the run.
                Err(e) => {
                    if ready.is_some() {
                        eprintln!("client on {addr}: {e}");
                    }
                    return;
                }
            };
            let done = match (event, node) {
                (Event::Incoming(Packet::Publish(_)), Some(node)) => {
                    let _ = arrivals.send((node, Instant::now()));
                    false
                }
                (Event::Incoming(Packet::SubAck(_)), Some(_)) => true,
                (Event::Incoming(Packet::ConnAck(_)), None) => true,
                _ => false,
            };
            if let Some(r) = ready.take_if(|_| done) {
                let _ = r.send(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), is_ready)
        .await
        .context("not connected and subscribed")??;
    Ok(client)
}

pub async fn run(rounds: usize) -> Result<()> {
    let cluster =
        Cluster::start_with(2, |_, node| node.env("SWITCHBOARD_OPEN_BROKER", "true")).await;
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.server.mqtt).collect();
    measure(&addrs, rounds).await
}

async fn measure(addrs: &[SocketAddr], rounds: usize) -> Result<()> {
    let (arrived, mut arrivals) = mpsc::unbounded_channel();
    let mut subscribers = Vec::new();
    for (node, addr) in addrs.iter().enumerate() {
        subscribers.push(client(*addr, Some(node), arrived.clone()).await?);
    }
    let publisher = client(addrs[0], None, arrived).await?;
    let mut delays: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..WARM_UP + rounds {
        let t0 = Instant::now();
        publisher
            .publish(TOPIC, QoS::AtMostOnce, false, round.to_string())
            .await?;
        let mut got = [None, None];
        while got.iter().any(Option::is_none) {
            let (node, at) = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await
                .with_context(|| format!("round {round}: a subscriber got nothing"))?
                .context("subscribers gone")?;
            got[node] = Some(at - t0);
        }
        if round >= WARM_UP {
            for (node, d) in got.into_iter().enumerate() {
                delays[node].push(d.expect("both arrived"));
            }
        }
    }
    for d in &mut delays {
        d.sort();
    }
    let [same, other] = &delays;
    println!(
        "cluster, 2 nodes, {rounds} messages one at a time: publish -> same node p50 {:.3} ms, p99 {:.3} ms; -> other node p50 {:.3} ms, p99 {:.3} ms; added by crossing p50 {:.3} ms",
        ms(quantile(same, 0.5)),
        ms(quantile(same, 0.99)),
        ms(quantile(other, 0.5)),
        ms(quantile(other, 0.99)),
        ms(quantile(other, 0.5)) - ms(quantile(same, 0.5)),
    );
    drop(subscribers);
    Ok(())
}

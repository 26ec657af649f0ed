//! Media relay throughput and latency: K calls at once, both devices of
//! each a headless WebRTC peer sending numbered, timestamped RTP at a fixed
//! rate through the relay. Reported: packets the relay forwarded per second
//! of its CPU time (the server's utime + stime from /proc), and the
//! latency from a sender's write to the receiver's arrival, p50 and p99.
//! Both peers and the relay share this machine's cores, so the latency is
//! an upper bound of what the relay adds.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::future::join_all;
use switchboard_e2e::api::Api;
use switchboard_e2e::calls;
use switchboard_e2e::media::{MediaPeer, PeerOptions};
use switchboard_e2e::{Database, Server};

use crate::proc::cpu_seconds;
use crate::stats::{ms, quantile};
use crate::users::visible_user;

async fn forwarded(server: &Server) -> Result<f64> {
    let text = reqwest::get(format!("{}/metrics", server.http))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("switchboard_relay_forwarded_packets_total ")?
                .parse()
                .ok()
        })
        .context("forwarded packets metric")
}

pub async fn run(calls: usize, rate: u64, seconds: u64) -> Result<()> {
    let server = Server::start(&Database::Sqlite).await?;
    let api = Api::new(&server);
    eprintln!("setting up {calls} calls");
    let mut peers = Vec::new();
    for _ in 0..calls {
        let a = visible_user(&server, &api, Some("phone")).await?;
        let b = visible_user(&server, &api, Some("phone")).await?;
        let (sid, ca, cb) = calls::accepted(&server, &a, &b).await?;
        for (who, mqtt) in [(&a, ca), (&b, cb)] {
            peers.push(MediaPeer::join(mqtt, &sid, &who.client_id, PeerOptions::default()).await?);
        }
    }
    for peer in &mut peers {
        peer.connected().await?;
    }
    let gap = Duration::from_micros(1_000_000 / rate);
    // Warm up until every receiver gets the other's track.
    let warm: Vec<_> = peers
        .iter()
        .map(|p| p.send_numbered(0..rate / 2, gap))
        .collect();
    for sent in join_all(warm).await {
        sent?;
    }
    for peer in &mut peers {
        peer.received_any().await?;
        peer.take_latencies_us();
    }

    let count = rate * seconds;
    let (cpu0, fwd0, t0) = (
        cpu_seconds(server.pid())?,
        forwarded(&server).await?,
        Instant::now(),
    );
    let first = 1_000_000;
    let sending: Vec<_> = peers
        .iter()
        .map(|p| p.send_numbered(first..first + count, gap))
        .collect();
    for sent in join_all(sending).await {
        sent?;
    }
    let mut received = 0;
    for peer in &mut peers {
        received += peer
            .received_through(first, first + count - 1, Duration::from_secs(5))
            .await
            .len();
    }
    let (cpu, fwd, wall) = (
        cpu_seconds(server.pid())? - cpu0,
        forwarded(&server).await? - fwd0,
        t0.elapsed().as_secs_f64(),
    );
    let mut latencies: Vec<Duration> = peers
        .iter()
        .flat_map(|p| p.take_latencies_us())
        .map(Duration::from_micros)
        .collect();
    latencies.sort();
    let expected = (peers.len() as u64 * count) as f64;
    println!(
        "relay: {calls} calls x 2 streams x {rate} pkt/s for {seconds} s: received {received} of {expected:.0} packets ({:.2}% lost) in {wall:.1} s; relay forwarded {fwd:.0} on {cpu:.2} s of CPU = {:.0} packets per CPU-second; sender write -> receiver arrival p50 {:.2} ms, p99 {:.2} ms",
        100.0 * (1.0 - received as f64 / expected),
        fwd / cpu,
        ms(quantile(&latencies, 0.5)),
        ms(quantile(&latencies, 0.99)),
    );
    for peer in peers {
        peer.close().await;
    }
    Ok(())
}

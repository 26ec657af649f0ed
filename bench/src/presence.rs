//! Presence fan-out. One user `X` (visibility `everyone`) is watched by N
//! MQTT clients subscribed to `users/X/isConnected`. Each round X connects,
//! every watcher sees `true`, then X disconnects at t0 and every watcher
//! notes when its `false` arrives. Reported: p50 and p99 of those delays
//! over all watchers and rounds, and p50 / p99 over rounds of the time to
//! the last watcher.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use switchboard_e2e::api::{Api, SignedIn};
use switchboard_e2e::{random_id, Database, Server, JWT_SECRET};
use tokio::sync::mpsc;

use crate::stats::{ms, quantile};
use crate::users::visible_user;

/// Connections opened at once while setting up the watchers.
const CONNECT_BATCH: usize = 250;

fn token(sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": sub, "kind": "user", "iat": now, "exp": now + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("signing")
}

/// A watcher: connects, subscribes, and reports each `isConnected` payload
/// with the instant it arrived.
async fn watcher(
    server: std::net::SocketAddr,
    topic: String,
    report: mpsc::UnboundedSender<(bool, Instant)>,
) -> Result<()> {
    let id = random_id();
    let mut opts = MqttOptions::new(id.clone(), server.ip().to_string(), server.port());
    opts.set_credentials(id.clone(), token(&id));
    opts.set_keep_alive(Duration::from_secs(120));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    crate::calls::no_delay(&mut eventloop);
    client.subscribe(topic, QoS::AtMostOnce).await?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        // Dropping `ready` fails the setup with "no SUBACK".
                        eprintln!("watcher {id}: subscription refused");
                        return;
                    }
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = report.send((p.payload.as_ref() == b"true", Instant::now()));
                }
                Ok(_) => {}
                // The server stops at the end of the run.
                Err(_) => return,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .context("no SUBACK")??;
    // The client must outlive this function: its event loop holds it.
    std::mem::forget(client);
    Ok(())
}

pub async fn run(watchers: usize, rounds: usize) -> Result<()> {
    let db = Database::Sqlite;
    let server = Server::start(&db).await?;
    let api = Api::new(&server);
    let SignedIn {
        id: x,
        access: x_token,
        ..
    } = visible_user(&server, &api, None).await?;
    let topic = format!("users/{x}/isConnected");

    eprintln!("connecting {watchers} watchers");
    let started = Instant::now();
    let (report, mut reports) = mpsc::unbounded_channel();
    let mut left = watchers;
    while left > 0 {
        let batch = left.min(CONNECT_BATCH);
        let mut tasks = Vec::with_capacity(batch);
        for _ in 0..batch {
            tasks.push(tokio::spawn(watcher(
                server.mqtt,
                topic.clone(),
                report.clone(),
            )));
        }
        for t in tasks {
            t.await??;
        }
        left -= batch;
    }
    eprintln!(
        "{watchers} watchers subscribed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut delays = Vec::with_capacity(watchers * rounds);
    let mut last = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Connect X; wait until every watcher saw `true`.
        let mut opts =
            MqttOptions::new(x.clone(), server.mqtt.ip().to_string(), server.mqtt.port());
        opts.set_credentials(x.clone(), x_token.as_str());
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        collect(&mut reports, watchers, true).await?;

        // The connection ends: the event loop and its socket are dropped,
        // as when an app is killed.
        let t0 = Instant::now();
        poller.abort();
        let arrivals = collect(&mut reports, watchers, false).await?;
        drop(client);
        let mut round_delays: Vec<Duration> = arrivals
            .iter()
            .map(|t| t.saturating_duration_since(t0))
            .collect();
        round_delays.sort();
        let slowest = *round_delays.last().expect("watchers");
        eprintln!("round {round}: last watcher after {:.2} ms", ms(slowest));
        last.push(slowest);
        delays.extend(round_delays);
    }
    delays.sort();
    last.sort();
    println!(
        "presence fan-out: {watchers} watchers, {rounds} rounds: disconnect -> watcher notified p50 {:.2} ms, p99 {:.2} ms; -> last watcher p50 {:.2} ms, p99 {:.2} ms",
        ms(quantile(&delays, 0.5)),
        ms(quantile(&delays, 0.99)),
        ms(quantile(&last, 0.5)),
        ms(quantile(&last, 0.99)),
    );
    Ok(())
}

/// Waits until `n` watchers reported `online`; returns their arrival times.
/// Reports of the other value (retained messages at subscribe) are skipped.
async fn collect(
    reports: &mut mpsc::UnboundedReceiver<(bool, Instant)>,
    n: usize,
    online: bool,
) -> Result<Vec<Instant>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (value, at) = tokio::time::timeout(Duration::from_secs(60), reports.recv())
            .await
            .context("watchers stopped hearing presence")?
            .context("watchers gone")?;
        if value == online {
            out.push(at);
        }
    }
    Ok(out)
}

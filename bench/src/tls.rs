//! MQTT over TLS against plain MQTT, on one server with a certificate (a
//! CA made here): N clients connect at once, each with its own login
//! (over TLS: a full handshake, no resumption), and stay idle; then the
//! same over plain TCP. Reported for each: connects per second (from the
//! first to the last CONNACK), the server's CPU per connect, and its RSS
//! per idle connection once settled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};
use switchboard_e2e::api::SmsInbox;
use switchboard_e2e::tls::{ca, client_config, tls_builder};
use switchboard_e2e::{random_id, Server};
use tokio::sync::oneshot;

use crate::proc::{cpu_seconds, settled_rss_kib};

/// A client connected and idle, kept alive by its task.
async fn connect(
    addr: SocketAddr,
    id: &str,
    token: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<AsyncClient> {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_credentials(id, token);
    opts.set_keep_alive(Duration::from_secs(60));
    if let Some(config) = tls {
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(config)));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let (connected, is_connected) = oneshot::channel();
    let mut connected = Some(connected);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(c) = connected.take() {
                        let _ = c.send(Ok(()));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(c) = connected.take() {
                        let _ = c.send(Err(e));
                    }
                    return;
                }
            }
        }
    });
    is_connected.await?.context("connecting")?;
    Ok(client)
}

/// N clients connected at once to `addr`: connects per second, server
/// CPU per connect (µs) and RSS per connection (KB).
async fn measure(
    server: &Server,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    n: usize,
) -> Result<(f64, f64, f64)> {
    let ids: Vec<String> = (0..n).map(|_| random_id()).collect();
    let tokens = server.tokens(&ids, None, "user", 3600)?;
    let pid = server.pid();
    let (before, _) = settled_rss_kib(pid).await?;
    let cpu = cpu_seconds(pid)?;
    let started = Instant::now();
    let connecting = ids
        .iter()
        .zip(&tokens)
        .map(|(id, token)| connect(addr, id, token, tls.clone()));
    let clients = futures::future::try_join_all(connecting).await?;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(pid)? - cpu;
    let (after, _) = settled_rss_kib(pid).await?;
    let per_connection = (after.saturating_sub(before)) as f64 * 1.024 / n as f64;
    drop(clients);
    Ok((
        n as f64 / elapsed.as_secs_f64(),
        cpu * 1e6 / n as f64,
        per_connection,
    ))
}

pub async fn run(connections: usize) -> Result<()> {
    let files = tempfile::tempdir()?;
    let authority = ca("switchboard bench CA");
    let sms = SmsInbox::start().await?;
    let server = tls_builder(&authority, files.path(), &sms).start().await?;
    let tls = Some(client_config(&authority.pem)?);
    let mqtts = server.mqtts.context("the server listens over TLS")?;
    let (tls_rate, tls_cpu, tls_rss) = measure(&server, mqtts, tls, connections).await?;
    let (rate, cpu, rss) = measure(&server, server.mqtt, None, connections).await?;
    println!(
        "tls: {connections} clients at once: over TLS {tls_rate:.0} connects/s, {tls_cpu:.0} µs server CPU per connect, {tls_rss:.2} KB per idle connection; plain {rate:.0} connects/s, {cpu:.0} µs, {rss:.2} KB"
    );
    Ok(())
}

//! The broker side by side with mosquitto (from Debian, started here on a
//! free loopback port), with the same clients, in one run:
//!
//! - idle connections: N clients, each with its own login, keep-alive 60 s,
//!   subscribed to `invite/<me>/+` and `clients/<cid>/errors`; the server's
//!   RSS per connection and its CPU time per connect (CONNECT and the two
//!   SUBSCRIBEs);
//! - the robot hot path: a robot streaming `session/<sid>/moveTo/response`
//!   to its owner on `session/<sid>/+/response`, at QoS 1 and 0, with 1 and
//!   10 such pairs at once; messages per second from the first publish to
//!   the last arrival, and how many never arrived.
//!
//! Switchboard runs with its topic rules on: its clients are real accounts,
//! and its robots answer a request of a call they accepted. mosquitto allows
//! anonymous clients on the same topics, as must any other broker given with
//! `--other NAME=COMMAND` (a prototype, say), which is measured the same way.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use switchboard_e2e::api::Api;
use switchboard_e2e::robots::{follow_commands, next_json, paired_with, robot};
use switchboard_e2e::{random_id, Database, Server};

use crate::calls::no_delay;
use crate::proc::{cpu_seconds, rss_kib, settled_rss_kib};

/// Both servers' per-client limits, as Switchboard's defaults have them.
const MAX_QUEUE: usize = 1000;
const MAX_INFLIGHT: u16 = 64;
/// How long a login may wait for its answer: in a storm, SYNs that found
/// the listen backlog full are sent again after 1, 3, 7, 15, 31 and 63 s.
const STORM_WAIT: Duration = Duration::from_secs(120);
/// How long the last arrivals may lag before the rest count as lost.
const DRAIN: Duration = Duration::from_secs(3);

/// A broker under test: where it listens and how clients log in.
pub(crate) struct Broker {
    pub name: String,
    pub addr: SocketAddr,
    pub pid: u32,
}

/// One client's login: client id, username, password.
pub(crate) type Login = (String, String, Option<String>);

/// A broker of anonymous clients in a child process on a free loopback
/// port: mosquitto, or another given by its command line.
pub(crate) struct Anonymous {
    name: String,
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Anonymous {
    /// mosquitto with Switchboard's queue limits.
    pub async fn mosquitto() -> Result<Anonymous> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        let command = format!("mosquitto -c {}", conf.display());
        Anonymous::start("mosquitto", &command, dir, |port| {
            let conf_text = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages {MAX_QUEUE}\nmax_inflight_messages {MAX_INFLIGHT}\n\
                 log_dest none\n"
            );
            std::fs::write(&conf, conf_text)
        })
        .await
    }

    /// `command` with the port as its last argument.
    async fn other(name: &str, command: &str) -> Result<Anonymous> {
        Anonymous::start(name, command, tempfile::tempdir()?, |_| Ok(())).await
    }

    async fn start(
        name: &str,
        command: &str,
        dir: tempfile::TempDir,
        prepare: impl FnOnce(u16) -> std::io::Result<()>,
    ) -> Result<Anonymous> {
        // mosquitto cannot take port 0: take a free port and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        prepare(port)?;
        let mut words = command.split_whitespace();
        let program = words.next().context("an empty broker command")?;
        let mut cmd = Command::new(program);
        cmd.args(words);
        if name != "mosquitto" {
            cmd.arg(port.to_string());
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program} (scripts/bench installs mosquitto)"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(Anonymous {
                    name: name.to_string(),
                    child,
                    addr,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("{name} did not listen on {addr}")
    }
}

impl Anonymous {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Anonymous {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options(addr: SocketAddr, login: &Login, keep_alive: Duration) -> MqttOptions {
    let (client_id, username, password) = login;
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    if let Some(password) = password {
        opts.set_credentials(username, password);
    }
    opts.set_keep_alive(keep_alive);
    opts.set_inflight(MAX_INFLIGHT);
    opts
}

/// Connects and subscribes to `filters`; returns once every SUBACK came.
/// The returned task keeps the connection alive (PINGs) and counts the
/// publishes that arrive on `arrived`.
pub(crate) async fn connect(
    addr: SocketAddr,
    login: &Login,
    filters: &[String],
    arrived: Arc<AtomicU64>,
) -> Result<(AsyncClient, tokio::task::JoinHandle<()>)> {
    let (client, mut eventloop) =
        AsyncClient::new(options(addr, login, Duration::from_secs(60)), 1024);
    no_delay(&mut eventloop);
    // In a storm a connection may wait in the broker's listen backlog
    // well past rumqttc's 5 s default.
    let mut network = eventloop.network_options();
    network.set_connection_timeout(STORM_WAIT.as_secs());
    eventloop.set_network_options(network);
    for filter in filters {
        client.subscribe(filter, QoS::AtLeastOnce).await?;
    }
    // Logged in and every SUBACK in: the streams start from there.
    let (mut connected, mut acks) = (false, 0);
    while !connected || acks < filters.len() {
        match tokio::time::timeout(STORM_WAIT, eventloop.poll()).await?? {
            Event::Incoming(Packet::ConnAck(ack)) => {
                if ack.code != rumqttc::ConnectReturnCode::Success {
                    bail!("{}: login refused: {:?}", login.0, ack.code)
                }
                connected = true;
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                if refused {
                    bail!("{}: a subscription was refused", login.0);
                }
                acks += 1;
            }
            _ => {}
        }
    }
    let task = tokio::spawn(pump(eventloop, arrived));
    Ok((client, task))
}

async fn pump(mut eventloop: EventLoop, arrived: Arc<AtomicU64>) {
    while let Ok(event) = eventloop.poll().await {
        if let Event::Incoming(Packet::Publish(_)) = event {
            arrived.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// N idle connections: RSS per connection and CPU per connect.
async fn idle(broker: &Broker, logins: &[Login]) -> Result<(f64, f64)> {
    let before_rss = rss_kib(broker.pid)?;
    let before_cpu = cpu_seconds(broker.pid)?;
    let mut clients = Vec::with_capacity(logins.len());
    let none = Arc::new(AtomicU64::new(0));
    for login in logins {
        let filters = phone_filters(login);
        clients.push(connect(broker.addr, login, &filters, none.clone()).await?);
    }
    let cpu = cpu_seconds(broker.pid)? - before_cpu;
    // Let the server settle what the logins queued (presence, timers).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(broker.pid)?;
    let per_connection = (rss as f64 - before_rss as f64) * 1024.0 / logins.len() as f64;
    let per_connect_us = cpu * 1e6 / logins.len() as f64;
    for (client, task) in clients {
        let _ = client.disconnect().await;
        task.abort();
    }
    Ok((per_connection, per_connect_us))
}

/// One robot and its owner in an accepted call: the robot's login, the
/// owner's, and the call's response topic and filter.
struct Pair {
    robot: Login,
    owner: Login,
    topic: String,
    filter: String,
}

/// P robot/owner pairs stream M messages each at `qos`: messages per second
/// from the first publish to the last arrival, and the share lost.
async fn stream(broker: &Broker, pairs: &[Pair], messages: u64, qos: QoS) -> Result<(f64, f64)> {
    let arrived = Arc::new(AtomicU64::new(0));
    let mut owners = Vec::new();
    for pair in pairs {
        owners.push(
            connect(
                broker.addr,
                &pair.owner,
                std::slice::from_ref(&pair.filter),
                arrived.clone(),
            )
            .await?,
        );
    }
    let payload = br#"{"requestId":"r","status":"moving"}"#.to_vec();
    let mut robots = Vec::new();
    for pair in pairs {
        robots.push(connect(broker.addr, &pair.robot, &[], Arc::new(AtomicU64::new(0))).await?);
    }
    let started = Instant::now();
    let mut publishers = Vec::new();
    for (pair, (client, _)) in pairs.iter().zip(&robots) {
        let (client, topic, payload) = (client.clone(), pair.topic.clone(), payload.clone());
        publishers.push(tokio::spawn(async move {
            for _ in 0..messages {
                client
                    .publish(topic.as_str(), qos, false, payload.clone())
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for publisher in publishers {
        publisher.await??;
    }
    let want = messages * pairs.len() as u64;
    let (mut last, mut last_at) = (0, Instant::now());
    let mut done_at = Instant::now();
    while last < want && last_at.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = arrived.load(Ordering::Relaxed);
        if now > last {
            (last, last_at, done_at) = (now, Instant::now(), Instant::now());
        }
    }
    let rate = last as f64 / (done_at - started).as_secs_f64();
    // A request the robot left open past its deadline is answered
    // `timed_out` by the server too: arrivals may pass `want`.
    let lost = want.saturating_sub(last) as f64 / want as f64;
    for (client, task) in owners.into_iter().chain(robots) {
        let _ = client.disconnect().await;
        task.abort();
    }
    Ok((rate, lost))
}

/// N new users' phones, each with a day-long token.
pub(crate) fn user_logins(server: &Server, n: usize) -> Result<Vec<Login>> {
    let ids: Vec<String> = (0..n).map(|_| random_id()).collect();
    let mut logins = Vec::with_capacity(n);
    for chunk in ids.chunks(1000) {
        let tokens = server.tokens(chunk, Some("phone"), "user", 86_400)?;
        for (id, token) in chunk.iter().zip(tokens) {
            logins.push((format!("{id}:phone"), id.clone(), Some(token)));
        }
    }
    Ok(logins)
}

/// N anonymous phones (for mosquitto and the other brokers).
pub(crate) fn anonymous_logins(n: usize) -> Vec<Login> {
    (0..n)
        .map(|_| {
            let id = random_id();
            (format!("{id}:phone"), id, None)
        })
        .collect()
}

/// The filters an idle phone subscribes to: its invites and its errors.
pub(crate) fn phone_filters(login: &Login) -> [String; 2] {
    [
        format!("invite/{}/+", login.1),
        format!("clients/{}/errors", login.0),
    ]
}

/// Switchboard's accounts: N users for the idle test, and robots paired
/// with owners in accepted calls, each with an open `moveTo` request.
async fn switchboard_clients(
    server: &Server,
    idle: usize,
    pairs: usize,
) -> Result<(Vec<Login>, Vec<Pair>)> {
    let logins = user_logins(server, idle)?;
    let api = Api::new(server);
    let mut calls = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let owner = server.minted("user", Some("phone"), 86_400)?;
        let mut paired = paired_with(server, &api, robot(&api).await, &owner).await;
        let sid = paired.call().await;
        // The robot answers an open request: the owner asks once, and the
        // robot has it before the streams start.
        let (request, _) =
            follow_commands(&mut paired.owner_mqtt, &mut paired.bot_mqtt, &sid).await;
        paired
            .owner_mqtt
            .publish(&request, br#"{"requestId":"r"}"#, false)
            .await?;
        next_json(&mut paired.bot_mqtt, &request).await;
        calls.push((paired, sid));
    }
    let mut out = Vec::with_capacity(pairs);
    for (paired, sid) in calls {
        let login = |who: &switchboard_e2e::api::SignedIn| {
            (
                who.client_id.clone(),
                who.id.clone(),
                Some(who.access.clone()),
            )
        };
        out.push(Pair {
            robot: login(&paired.bot),
            owner: login(&paired.owner),
            topic: format!("session/{sid}/moveTo/response"),
            filter: format!("session/{sid}/+/response"),
        });
        // The streams log in again under these client ids.
        drop(paired);
    }
    Ok((logins, out))
}

fn anonymous_clients(idle: usize, pairs: usize) -> (Vec<Login>, Vec<Pair>) {
    let anonymous = |id: String| (id.clone(), id, None);
    let logins = anonymous_logins(idle);
    let pairs = (0..pairs)
        .map(|_| {
            let sid = random_id();
            Pair {
                robot: anonymous(random_id()),
                owner: anonymous(random_id()),
                topic: format!("session/{sid}/moveTo/response"),
                filter: format!("session/{sid}/+/response"),
            }
        })
        .collect();
    (logins, pairs)
}

/// Every measure for one broker, one line each.
async fn measure(broker: &Broker, logins: &[Login], pairs: &[Pair], messages: u64) -> Result<()> {
    let idle_rss = rss_kib(broker.pid)?;
    let (per_connection, per_connect) = idle(broker, logins).await?;
    println!(
        "{}: {} idle connections: {:.2} KB RSS per connection, {:.0} µs server CPU per connect",
        broker.name,
        logins.len(),
        per_connection / 1000.0,
        per_connect
    );
    for (qos, name) in [(QoS::AtLeastOnce, "QoS 1"), (QoS::AtMostOnce, "QoS 0")] {
        for n in [1, pairs.len()] {
            let (rate, lost) = stream(broker, &pairs[..n], messages / n as u64, qos).await?;
            println!(
                "{}: {name}, {n} -> {n}: {:.1}k msg/s, {:.1}% lost",
                broker.name,
                rate / 1000.0,
                lost * 100.0
            );
        }
    }
    let after = rss_kib(broker.pid)?;
    let (settled, waited) = settled_rss_kib(broker.pid).await?;
    println!(
        "{}: RSS before the load {:.1} MB, at its end {:.1} MB, {:.1} MB {waited} s later ({:+.0}% of before)",
        broker.name,
        idle_rss as f64 / 1024.0,
        after as f64 / 1024.0,
        settled as f64 / 1024.0,
        (settled as f64 / idle_rss as f64 - 1.0) * 100.0
    );
    Ok(())
}

/// Switchboard (unless `others_only`), mosquitto, and each of `others`
/// (`name=command`, the command taking the port as its last argument).
pub async fn run(
    connections: usize,
    pairs: usize,
    messages: u64,
    others: &[String],
    others_only: bool,
) -> Result<()> {
    if !others_only {
        let server = Server::start(&Database::Sqlite).await?;
        let (logins, streams) = switchboard_clients(&server, connections, pairs).await?;
        let switchboard = Broker {
            name: "switchboard".into(),
            addr: server.mqtt,
            pid: server.pid(),
        };
        measure(&switchboard, &logins, &streams, messages).await?;
        drop(server);
    }
    let mut brokers = vec![Anonymous::mosquitto().await?];
    for other in others {
        let (name, command) = other.split_once('=').context("--other NAME=COMMAND")?;
        brokers.push(Anonymous::other(name, command).await?);
    }
    for anonymous in brokers {
        let (logins, streams) = anonymous_clients(connections, pairs);
        let broker = Broker {
            name: anonymous.name.clone(),
            addr: anonymous.addr,
            pid: anonymous.pid(),
        };
        measure(&broker, &logins, &streams, messages).await?;
    }
    Ok(())
}

//! The bus on NATS. Subjects are `sb.<kind>.<name>` for a key
//! `<kind>/<name>`, and `sb.graph` for who-sees-whom news, which every
//! node wants. The connection is made with no echo, so a node never gets
//! back what it sent. One task makes and drops the subscriptions, in the
//! order the router reported them, and hands on what arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures_util::stream::{SelectAll, StreamExt, TakeUntil};
use switchboard_protocol::Id;
use tokio::sync::{mpsc, oneshot};

use super::{frame, Arrivals, Carried};

const GRAPH: &str = "sb.graph";
/// Client ids that connected to a node, so the others close theirs:
/// `<microseconds since the epoch> <client id>`.
const LOGINS: &str = "sb.logins";

fn subject(key: &str) -> String {
    format!("sb.{}", key.replace('/', "."))
}

enum Op {
    Want(String),
    Unwant(String),
    /// Answered once the server has every subscription made before it.
    Flush(oneshot::Sender<()>),
    /// NATS is back after an absence: this node and every other read what
    /// is stored again, since news may have been lost either way.
    Resync,
}

/// The news on `sb.graph` that says "read everything again".
const EVERYTHING: &[u8] = b"*";

#[derive(Clone)]
pub(super) struct Nats {
    client: Client,
    ops: mpsc::UnboundedSender<Op>,
    /// Subscriptions asked for, and those the server confirmed: `settled`
    /// waits only when the second is behind.
    asked: Arc<AtomicU64>,
    confirmed: Arc<AtomicU64>,
}

impl Nats {
    pub async fn connect(url: &str, arrivals: Arc<dyn Arrivals>) -> Result<Nats> {
        let (ops, rx) = mpsc::unbounded_channel();
        let on_event = ops.clone();
        let was_connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = async_nats::ConnectOptions::new()
            .no_echo()
            .name("switchboard")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let (ops, was_connected) = (on_event.clone(), was_connected.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("NATS: connected");
                            if was_connected.swap(true, Ordering::AcqRel) {
                                let _ = ops.send(Op::Resync);
                            }
                        }
                        // A slow consumer is a subscription whose messages
                        // NATS dropped.
                        event => tracing::warn!("NATS: {event}"),
                    }
                }
            })
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let graph = client.subscribe(GRAPH).await?;
        let logins = client.subscribe(LOGINS).await?;
        client.flush().await.context("NATS did not answer")?;
        let nats = Nats {
            client,
            ops,
            asked: Arc::default(),
            confirmed: Arc::default(),
        };
        let task = Subscriptions {
            client: nats.client.clone(),
            confirmed: nats.confirmed.clone(),
        };
        tokio::spawn(task.run(rx, [graph, logins], arrivals));
        Ok(nats)
    }

    /// Whether NATS is reachable now. While it is not, nothing is sent:
    /// the client would queue it and then make every publisher on this
    /// node wait for NATS, and every node reads what is stored again once
    /// it is back (`Op::Resync`).
    fn reachable(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub async fn send(&self, key: &str, message: Carried) {
        if !self.reachable() {
            tracing::debug!(
                topic = message.topic,
                "NATS away: not sent to the other nodes"
            );
            return;
        }
        let payload = frame::encode(&message);
        if let Err(e) = self.client.publish(subject(key), payload).await {
            tracing::warn!(topic = message.topic, "not sent to the other nodes: {e}");
        }
    }

    pub async fn graph_changed(&self, users: &[Id]) {
        if !self.reachable() {
            tracing::warn!("NATS away: the other nodes read who sees whom again once it is back");
            return;
        }
        let ids: Vec<&str> = users.iter().map(Id::as_str).collect();
        let payload = ids.join(",").into_bytes().into();
        if let Err(e) = self.client.publish(GRAPH, payload).await {
            tracing::warn!("who-sees-whom news not sent to the other nodes: {e}");
        }
    }

    pub async fn logged_in(&self, client_id: &str, at: SystemTime) {
        if !self.reachable() {
            return;
        }
        let micros = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let payload = Bytes::from(format!("{micros} {client_id}"));
        if let Err(e) = self.client.publish(LOGINS, payload).await {
            tracing::warn!(client_id, "a login not told to the other nodes: {e}");
        }
    }

    pub fn want(&self, key: &str, wanted: bool) {
        let key = key.to_string();
        let op = match wanted {
            true => {
                self.asked.fetch_add(1, Ordering::AcqRel);
                Op::Want(key)
            }
            false => Op::Unwant(key),
        };
        // Fails only once the task ended, at shutdown.
        let _ = self.ops.send(op);
    }

    pub async fn settled(&self) {
        // While NATS is away no confirmation can come: its client makes
        // the subscriptions again when it is back.
        let behind = self.confirmed.load(Ordering::Acquire) < self.asked.load(Ordering::Acquire);
        if !behind || !self.reachable() {
            return;
        }
        let (done, confirmed) = oneshot::channel();
        if self.ops.send(Op::Flush(done)).is_ok() {
            let _ = confirmed.await;
        }
    }
}

/// The task that makes and drops subscriptions; it ends once every `Nats`
/// is dropped.
struct Subscriptions {
    client: Client,
    confirmed: Arc<AtomicU64>,
}

impl Subscriptions {
    async fn run(
        self,
        mut ops: mpsc::UnboundedReceiver<Op>,
        always: [Subscriber; 2],
        arrivals: Arc<dyn Arrivals>,
    ) {
        // A subscription ends when its sender here is dropped.
        type Ending = TakeUntil<Subscriber, oneshot::Receiver<()>>;
        let mut streams: SelectAll<Ending> = SelectAll::new();
        let mut ends: HashMap<String, oneshot::Sender<()>> = HashMap::new();
        // Held for the task's life: these subscriptions never end.
        let mut _kept = Vec::with_capacity(always.len());
        for sub in always {
            let (keep, kept) = oneshot::channel();
            _kept.push(keep);
            streams.push(sub.take_until(kept));
        }
        let mut made = 0;
        loop {
            tokio::select! {
                op = ops.recv() => match op {
                    Some(Op::Want(key)) => {
                        made += 1;
                        match self.client.subscribe(subject(&key)).await {
                            Ok(sub) => {
                                let (end, ended) = oneshot::channel();
                                ends.insert(key, end);
                                streams.push(sub.take_until(ended));
                            }
                            Err(e) => tracing::error!(key, "could not subscribe on NATS: {e}"),
                        }
                    }
                    Some(Op::Unwant(key)) => {
                        ends.remove(&key);
                        switchboard_broker::sparse::shrink_when_sparse(&mut ends);
                    }
                    Some(Op::Resync) => {
                        let everything = Bytes::from_static(EVERYTHING);
                        if let Err(e) = self.client.publish(GRAPH, everything).await {
                            tracing::warn!("NATS: could not ask the other nodes to read the graph again: {e}");
                        }
                        arrivals.resync();
                    }
                    Some(Op::Flush(done)) => {
                        if let Err(e) = self.client.flush().await {
                            tracing::warn!("NATS flush: {e}");
                        }
                        self.confirmed.store(made, Ordering::Release);
                        let _ = done.send(());
                    }
                    None => return,
                },
                Some(message) = streams.next() => arrived(&*arrivals, message),
            }
        }
    }
}

fn arrived(arrivals: &dyn Arrivals, message: async_nats::Message) {
    if message.subject.as_str() == LOGINS {
        match login(&message.payload) {
            Some((client_id, at)) => arrivals.connected_elsewhere(client_id, at),
            None => {
                tracing::warn!("a login from another node that is not `<µs> <client id>`, ignored")
            }
        }
        return;
    }
    if message.subject.as_str() == GRAPH && message.payload == EVERYTHING {
        arrivals.resync();
        return;
    }
    if message.subject.as_str() == GRAPH {
        let users = std::str::from_utf8(&message.payload).ok().map(|s| {
            s.split(',')
                .filter(|s| !s.is_empty())
                .map(str::parse::<Id>)
                .collect()
        });
        match users {
            Some(Ok(users)) => arrivals.graph_changed(users),
            _ => tracing::warn!("who-sees-whom news that is not a list of ids, ignored"),
        }
        return;
    }
    match frame::decode(message.payload) {
        Ok(carried) => arrivals.message(carried),
        Err(e) => {
            tracing::warn!(subject = %message.subject, "a message from another node that is not a frame ({e}), ignored")
        }
    }
}

/// A login as `sb.logins` carries it: the client id, and when.
fn login(payload: &[u8]) -> Option<(String, SystemTime)> {
    let (micros, client_id) = std::str::from_utf8(payload).ok()?.split_once(' ')?;
    let at = UNIX_EPOCH + Duration::from_micros(micros.parse().ok()?);
    (!client_id.is_empty()).then(|| (client_id.to_string(), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_reads_as_its_client_id_and_time() {
        let at = |us| UNIX_EPOCH + Duration::from_micros(us);
        type Case<'a> = (&'a [u8], Option<(&'a str, SystemTime)>);
        let cases: [Case; 6] = [
            (
                b"1700000000000001 abc:phone",
                Some(("abc:phone", at(1_700_000_000_000_001))),
            ),
            (b"0 a", Some(("a", at(0)))),
            (b"12 ", None),
            (b"abc", None),
            (b"-1 abc", None),
            (b"\xff abc", None),
        ];
        for (payload, want) in cases {
            let want = want.map(|(c, t)| (c.to_string(), t));
            assert_eq!(login(payload), want, "{payload:?}");
        }
    }
}

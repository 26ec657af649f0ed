//! The bus on NATS. Subjects are `sb.<kind>.<name>` for a key
//! `<kind>/<name>`; `sb.graph` for who-sees-whom news, `sb.calls` for
//! calls' changes and `sb.logins` for logins, which every node wants; and
//! `sb.holder-<node>` for work for the calls a node holds. The
//! connection is made with no echo, so a node never gets back what it
//! sent.
//!
//! Two tasks: one sends what this node sends, from a bounded queue (full,
//! or NATS away: dropped and counted, so no publisher here ever waits for
//! NATS); one makes and drops subscriptions to match the node's interest
//! and hands on what arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures_util::stream::{SelectAll, StreamExt, TakeUntil};
use prometheus_client::metrics::counter::Counter;
use switchboard_protocol::Id;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{frame, Arrivals, Carried, Interest};

const GRAPH: &str = "sb.graph";
const CALLS: &str = "sb.calls";
/// Client ids that connected to a node, so the others close theirs:
/// `<microseconds since the epoch> <client id>`.
const LOGINS: &str = "sb.logins";
/// Asked by nobody: a request to it comes back "no responders" once the
/// server has handled everything this connection sent before.
const PING: &str = "sb.ping";
/// The news on `sb.graph` that says "read everything again".
const EVERYTHING: &[u8] = b"*";
/// Messages waiting to leave for NATS; past this they are dropped.
const OUTGOING: usize = 16_384;
/// How long a SUBACK waits for NATS to confirm the node's subscriptions.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

fn subject(key: &str) -> String {
    format!("sb.{}", key.replace('/', "."))
}

/// Two tokens, so never a key's subject (three or more).
fn holder_subject(node: &str) -> String {
    format!("sb.holder-{node}")
}

enum Op {
    /// The node's interest in this key changed (`held`: a first filter
    /// under it): subscribe or unsubscribe to match what it is now.
    Check { key: String, held: bool },
    /// Answered once the server confirmed every subscription made before.
    Confirm(oneshot::Sender<()>),
    /// NATS is back after an absence: this node and every other read what
    /// is stored again, since news may have been lost either way.
    Resync,
}

#[derive(Clone)]
pub(super) struct Nats {
    client: Client,
    ops: mpsc::UnboundedSender<Op>,
    out: mpsc::Sender<Outgoing>,
    /// What was not sent: NATS away, or the queue full.
    unsent: Counter,
    /// Subscriptions asked for, and those the server confirmed: `settled`
    /// waits only when the second is behind.
    asked: Arc<AtomicU64>,
    confirmed: Arc<AtomicU64>,
    /// The sending task and what tells it to finish, for `close`.
    sending: Arc<Mutex<Option<Sending>>>,
}

/// A message to send: its subject and payload.
type Outgoing = (String, Bytes);
/// The sending task, and what tells it to finish.
type Sending = (oneshot::Sender<()>, JoinHandle<()>);

impl Nats {
    pub async fn connect(
        url: &str,
        node: &str,
        interest: Arc<Interest>,
        arrivals: Arc<dyn Arrivals>,
        unsent: Counter,
    ) -> Result<Nats> {
        let (ops, rx) = mpsc::unbounded_channel();
        // Weak: the client keeps its callback, which must not keep the
        // subscription task alive.
        let on_event = ops.downgrade();
        let was_connected = Arc::new(AtomicBool::new(false));
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
                            let again = was_connected.swap(true, Ordering::AcqRel);
                            if let (true, Some(ops)) = (again, ops.upgrade()) {
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
        let always = [
            client.subscribe(GRAPH).await?,
            client.subscribe(CALLS).await?,
            client.subscribe(LOGINS).await?,
            client.subscribe(holder_subject(node)).await?,
        ];
        // A node waits for NATS rather than start without its news.
        while let Err(e) = round_trip(&client).await {
            tracing::warn!("waiting for NATS at {url}: {e:#}");
        }
        let (out, outgoing) = mpsc::channel(OUTGOING);
        let (finish, finishing) = oneshot::channel();
        let sending = tokio::spawn(send_out(client.clone(), outgoing, finishing));
        let nats = Nats {
            client,
            ops,
            out,
            unsent,
            asked: Arc::default(),
            confirmed: Arc::default(),
            sending: Arc::new(Mutex::new(Some((finish, sending)))),
        };
        let task = Subscriptions {
            client: nats.client.clone(),
            interest,
            confirmed: nats.confirmed.clone(),
        };
        tokio::spawn(task.run(rx, always, arrivals));
        Ok(nats)
    }

    /// Whether NATS is reachable now: while it is not, nothing is queued
    /// (every node reads what is stored again once it is back).
    fn reachable(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Queues `payload` for `subject`, unless NATS is away or the queue
    /// full; whether it was queued.
    fn queue(&self, subject: String, payload: Bytes) -> bool {
        let queued = self.reachable() && self.out.try_send((subject, payload)).is_ok();
        if !queued {
            self.unsent.inc();
        }
        queued
    }

    pub fn send(&self, key: &str, message: Carried) {
        if !self.queue(subject(key), frame::encode(&message)) {
            tracing::debug!(topic = message.topic, "not sent to the other nodes");
        }
    }

    pub fn graph_changed(&self, users: &[Id]) {
        let ids: Vec<&str> = users.iter().map(Id::as_str).collect();
        if !self.queue(GRAPH.into(), ids.join(",").into_bytes().into()) {
            tracing::warn!(
                "who-sees-whom news not sent: every node reads it again once NATS is back"
            );
        }
    }

    pub fn call_changed(&self, call: Bytes) {
        if !self.queue(CALLS.into(), call) {
            tracing::warn!("a call's change not sent to the other nodes");
        }
    }

    pub fn to_holder(&self, node: &str, work: Bytes) -> bool {
        self.queue(holder_subject(node), work)
    }

    pub fn logged_in(&self, client_id: &str, at: SystemTime) {
        let micros = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let payload = Bytes::from(format!("{micros} {client_id}"));
        if !self.queue(LOGINS.into(), payload) {
            tracing::debug!(client_id, "a login not told to the other nodes");
        }
    }

    /// `key`'s interest changed; counted when it is new, for `settled`.
    pub fn interest_changed(&self, key: &str, held: bool) {
        if held {
            self.asked.fetch_add(1, Ordering::AcqRel);
        }
        // Fails only once the task ended, at shutdown.
        let key = key.to_string();
        let _ = self.ops.send(Op::Check { key, held });
    }

    pub async fn settled(&self) {
        let behind = self.confirmed.load(Ordering::Acquire) < self.asked.load(Ordering::Acquire);
        // While NATS is away no confirmation can come: its client makes
        // the subscriptions again when it is back.
        if !behind || !self.reachable() {
            return;
        }
        let (done, confirmed) = oneshot::channel();
        if self.ops.send(Op::Confirm(done)).is_ok() {
            let _ = tokio::time::timeout(CONFIRM_WAIT, confirmed).await;
        }
    }

    /// Sends what is queued (nothing more is taken), then returns.
    pub async fn close(&self) {
        let sending = self.sending.lock().expect("sending lock").take();
        if let Some((finish, sending)) = sending {
            let _ = finish.send(());
            let _ = sending.await;
        }
    }
}

/// A round trip to the server on this connection: once it is back, the
/// server has handled everything sent before it (a flush only empties the
/// socket's buffer).
async fn round_trip(client: &Client) -> Result<()> {
    let asked = client.request(PING, Bytes::new());
    match tokio::time::timeout(CONFIRM_WAIT, asked).await {
        Ok(Err(e)) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => Ok(()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => anyhow::bail!("no answer in {CONFIRM_WAIT:?}"),
    }
}

/// Sends what the node queued, in order; once told to finish, what is
/// queued then, and the socket's buffer with it.
async fn send_out(
    client: Client,
    mut outgoing: mpsc::Receiver<Outgoing>,
    mut finishing: oneshot::Receiver<()>,
) {
    let send = |(subject, payload): Outgoing| async {
        if let Err(e) = client.publish(subject, payload).await {
            tracing::warn!("NATS: not sent: {e}");
        }
    };
    loop {
        tokio::select! {
            next = outgoing.recv() => match next {
                Some(next) => send(next).await,
                None => break,
            },
            // Told to finish, or every `Nats` gone.
            _ = &mut finishing => {
                outgoing.close();
                while let Some(next) = outgoing.recv().await {
                    send(next).await;
                }
                break;
            }
        }
    }
    if let Err(e) = tokio::time::timeout(CONFIRM_WAIT, client.flush()).await {
        tracing::warn!("NATS: what was queued may not all have left: {e}");
    }
}

/// The task that makes and drops subscriptions to match the node's
/// interest (read when it acts, so orders that cross each other still end
/// as the interest is); it ends once every `Nats` is dropped.
struct Subscriptions {
    client: Client,
    interest: Arc<Interest>,
    confirmed: Arc<AtomicU64>,
}

impl Subscriptions {
    async fn run(
        self,
        mut ops: mpsc::UnboundedReceiver<Op>,
        always: [Subscriber; 4],
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
                    Some(Op::Check { key, held }) => {
                        made += u64::from(held);
                        match (self.interest.wants(&key), ends.contains_key(&key)) {
                            (true, false) => {
                                match self.client.subscribe(subject(&key)).await {
                                    Ok(sub) => {
                                        let (end, ended) = oneshot::channel();
                                        ends.insert(key, end);
                                        streams.push(sub.take_until(ended));
                                    }
                                    Err(e) => tracing::error!(key, "could not subscribe on NATS: {e}"),
                                }
                            }
                            (false, true) => {
                                ends.remove(&key);
                                switchboard_broker::sparse::shrink_when_sparse(&mut ends);
                            }
                            // Already as the interest is.
                            _ => {}
                        }
                    }
                    Some(Op::Resync) => {
                        let everything = Bytes::from_static(EVERYTHING);
                        if let Err(e) = self.client.publish(GRAPH, everything).await {
                            tracing::warn!("NATS: could not ask the other nodes to read the graph again: {e}");
                        }
                        arrivals.resync();
                    }
                    Some(Op::Confirm(done)) => {
                        match round_trip(&self.client).await {
                            Ok(()) => self.confirmed.store(made, Ordering::Release),
                            Err(e) => tracing::warn!("NATS: subscriptions not confirmed: {e:#}"),
                        }
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
    if message.subject.as_str() == CALLS {
        arrivals.call_changed(message.payload);
        return;
    }
    if message.subject.starts_with("sb.holder-") {
        arrivals.for_holder(message.payload);
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

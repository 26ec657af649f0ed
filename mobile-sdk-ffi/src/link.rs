//! The MQTT connection of a session: one task that owns it, reconnects,
//! keeps the subscriptions in place, and swaps in a fresh connection with a
//! new token before the old token runs out (so the server never has to
//! close it and watchers never see the device go offline).
//!
//! Requests reach the task through an unbounded channel and are handed to
//! rumqttc only while it has room, so nothing queued is lost when the task
//! swaps connections.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event as MqttEvent, EventLoop, MqttOptions,
    Outgoing, Packet, QoS, SubscribeReasonCode, Transport,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout};

use crate::api::Auth;
use crate::error::SdkError;
use crate::router::{Arrival, Router, Wire};
use crate::types::{ConnectionState, Event};

/// rumqttc's request queue; the task keeps at most half of it in use.
const RUMQTTC_CAP: usize = 128;
/// How long a connection attempt or a flush may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_secs(20);

pub(crate) enum Request {
    Publish {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
    /// `done` learns whether the broker granted it.
    Subscribe {
        filter: String,
        done: Option<oneshot::Sender<bool>>,
    },
    Unsubscribe(String),
    /// DISCONNECT, then close the socket.
    Close(oneshot::Sender<()>),
}

/// What the session and its link task share.
pub(crate) struct Shared {
    pub router: Mutex<Router>,
    /// API calls waiting for messages on (or refusals of) a topic.
    pub waiters: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Arrival>>>>,
    pub events: mpsc::UnboundedSender<Event>,
}

impl Shared {
    pub fn router(&self) -> std::sync::MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts collecting what arrives for `topic`; registered before the
    /// message that causes it goes out, so nothing is missed.
    pub fn wait_on(&self, topic: &str) -> mpsc::UnboundedReceiver<Arrival> {
        self.wait_on_all(&[topic])
    }

    /// `wait_on` for several topics, in one stream.
    pub fn wait_on_all(&self, topics: &[&str]) -> mpsc::UnboundedReceiver<Arrival> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        // Drop the waiters whose callers are gone (they never hear again
        // of a topic such as a finished call's invite).
        waiters.retain(|_, list| {
            list.retain(|w| !w.is_closed());
            !list.is_empty()
        });
        for topic in topics {
            waiters
                .entry((*topic).to_owned())
                .or_default()
                .push(tx.clone());
        }
        rx
    }

    fn deliver(&self, topic: String, arrival: Arrival) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = waiters.get_mut(&topic) {
            list.retain(|w| w.send(arrival.clone()).is_ok());
            if list.is_empty() {
                waiters.remove(&topic);
            }
        }
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

/// Where the broker is: `mqtt://host:port` or `ws://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broker {
    url: String,
    host: String,
    port: u16,
    websocket: bool,
}

impl Broker {
    pub fn parse(url: &str) -> Result<Broker, SdkError> {
        let bad = |why: &str| SdkError::InvalidArgument {
            reason: format!("broker URL {url:?}: {why}"),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let websocket = match parsed.scheme() {
            "mqtt" | "tcp" => false,
            "ws" => true,
            _ => return Err(bad("must be mqtt://host:port or ws://host:port/path")),
        };
        let host = parsed.host_str().ok_or_else(|| bad("no host"))?.to_owned();
        let port = parsed.port().unwrap_or(if websocket { 80 } else { 1883 });
        Ok(Broker {
            url: url.to_owned(),
            host,
            port,
            websocket,
        })
    }
}

pub(crate) struct Identity {
    pub broker: Broker,
    pub client_id: String,
    pub username: String,
}

/// Starts the link task; it ends when `requests` closes or on `Close`.
pub(crate) fn spawn(
    who: Identity,
    auth: Arc<Auth>,
    shared: Arc<Shared>,
    requests: mpsc::UnboundedReceiver<Request>,
) {
    tokio::spawn(run(who, auth, shared, requests));
}

/// Subscriptions: the filters to restore on a new session, and the
/// SUBSCRIBEs waiting for their SUBACK.
#[derive(Default)]
struct Subs {
    filters: BTreeSet<String>,
    /// Handed to rumqttc, packet id not yet known (it hands them out in
    /// order, so the next `Outgoing::Subscribe` is the front one).
    unsent: VecDeque<(String, Option<oneshot::Sender<bool>>)>,
    sent: HashMap<u16, (String, Option<oneshot::Sender<bool>>)>,
    /// Written on a connection that dropped before the SUBACK.
    retry: Vec<(String, Option<oneshot::Sender<bool>>)>,
}

struct Conn {
    client: AsyncClient,
    eventloop: EventLoop,
    /// Requests handed to rumqttc, and those it wrote: the difference is
    /// what sits in its queue.
    handed: u64,
    written: u64,
}

impl Conn {
    fn new(who: &Identity, password: &str) -> Conn {
        let b = &who.broker;
        let mut opts = if b.websocket {
            let mut o = MqttOptions::new(&who.client_id, &b.url, b.port);
            o.set_transport(Transport::Ws);
            o
        } else {
            MqttOptions::new(&who.client_id, &b.host, b.port)
        };
        opts.set_keep_alive(KEEP_ALIVE);
        // A persistent session: invites and commands sent while the
        // connection is being replaced wait for it.
        opts.set_clean_session(false);
        opts.set_credentials(&who.username, password);
        let (client, mut eventloop) = AsyncClient::new(opts, RUMQTTC_CAP);
        // Small packets go out at once; Nagle would add tens of ms a hop.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        Conn {
            client,
            eventloop,
            handed: 0,
            written: 0,
        }
    }

    fn has_room(&self) -> bool {
        self.handed.saturating_sub(self.written) < (RUMQTTC_CAP / 2) as u64
    }

    fn hand(&mut self, request: Request, subs: &mut Subs) {
        let handed = match request {
            Request::Publish {
                topic,
                payload,
                retain,
            } => self
                .client
                .try_publish(topic, QoS::AtLeastOnce, retain, payload)
                .is_ok(),
            Request::Subscribe { filter, done } => {
                let ok = self
                    .client
                    .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                    .is_ok();
                if ok {
                    subs.unsent.push_back((filter, done));
                }
                ok
            }
            Request::Unsubscribe(filter) => {
                subs.filters.remove(&filter);
                self.client.try_unsubscribe(filter).is_ok()
            }
            Request::Close(_) => false,
        };
        if handed {
            self.handed += 1;
        }
    }

    fn wrote(&mut self) {
        self.written = (self.written + 1).min(self.handed);
    }
}

struct Task {
    who: Identity,
    auth: Arc<Auth>,
    shared: Arc<Shared>,
    subs: Subs,
    conn: Conn,
    /// Consecutive failed connection attempts, for the backoff.
    failures: u32,
}

async fn run(
    who: Identity,
    auth: Arc<Auth>,
    shared: Arc<Shared>,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let conn = Conn::new(&who, &auth.access());
    let mut task = Task {
        who,
        auth,
        shared,
        subs: Subs::default(),
        conn,
        failures: 0,
    };
    loop {
        let refresh_at = task.auth.refresh_at();
        let room = task.conn.has_room();
        tokio::select! {
            request = requests.recv(), if room => match request {
                Some(Request::Close(done)) => {
                    task.close().await;
                    let _ = done.send(());
                    return;
                }
                Some(request) => {
                    let Task { conn, subs, .. } = &mut task;
                    conn.hand(request, subs);
                }
                // The session was dropped.
                None => return task.close().await,
            },
            polled = task.conn.eventloop.poll() => {
                if let Err(e) = polled.map(|event| task.handle(event)) {
                    if !task.failed(e).await {
                        return;
                    }
                }
            }
            _ = sleep_until(refresh_at) => {
                if let Err(SdkError::SignedOut) = task.take_over().await {
                    task.shared.emit(Event::Connection { state: ConnectionState::SignedOut });
                    return;
                }
            }
        }
    }
}

impl Task {
    fn handle(&mut self, event: MqttEvent) {
        match event {
            MqttEvent::Incoming(Packet::ConnAck(ack)) => self.connected(ack.session_present),
            MqttEvent::Incoming(Packet::Publish(p)) => {
                let routed = self.shared.router().route(&p.topic, &p.payload);
                if let Some((topic, arrival)) = routed.arrival {
                    self.shared.deliver(topic, arrival);
                }
                for event in routed.events {
                    self.shared.emit(event);
                }
                for wire in routed.wire {
                    let request = match wire {
                        Wire::Publish { topic, payload } => Request::Publish {
                            topic,
                            payload,
                            retain: false,
                        },
                        Wire::Subscribe(filter) => Request::Subscribe { filter, done: None },
                        Wire::Unsubscribe(filter) => Request::Unsubscribe(filter),
                    };
                    self.conn.hand(request, &mut self.subs);
                }
            }
            MqttEvent::Incoming(Packet::SubAck(ack)) => {
                if let Some((filter, done)) = self.subs.sent.remove(&ack.pkid) {
                    let granted = ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                    if granted {
                        self.subs.filters.insert(filter);
                    }
                    if let Some(done) = done {
                        let _ = done.send(granted);
                    }
                }
            }
            MqttEvent::Outgoing(Outgoing::Subscribe(pkid)) => {
                self.conn.wrote();
                if let Some(front) = self.subs.unsent.pop_front() {
                    self.subs.sent.insert(pkid, front);
                }
            }
            MqttEvent::Outgoing(Outgoing::Publish(_) | Outgoing::Unsubscribe(_)) => {
                self.conn.wrote()
            }
            _ => {}
        }
    }

    fn connected(&mut self, session_present: bool) {
        self.failures = 0;
        for (filter, done) in std::mem::take(&mut self.subs.retry) {
            self.conn
                .hand(Request::Subscribe { filter, done }, &mut self.subs);
        }
        if !session_present {
            // A new session on the broker: put the subscriptions back.
            let filters: Vec<String> = self.subs.filters.iter().cloned().collect();
            for filter in filters {
                self.conn
                    .hand(Request::Subscribe { filter, done: None }, &mut self.subs);
            }
        }
        self.shared.emit(Event::Connection {
            state: ConnectionState::Connected,
        });
    }

    /// A connection error; `false` when the session cannot go on.
    async fn failed(&mut self, e: ConnectionError) -> bool {
        // rumqttc does not send a SUBSCRIBE again after a reconnect: the
        // ones written but not acknowledged are asked again once connected.
        let lost: Vec<_> = self.subs.sent.drain().map(|(_, s)| s).collect();
        self.subs.retry.extend(lost);
        match e {
            ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword) => {
                match self.auth.refresh(&self.current_password()).await {
                    Ok(()) => {
                        let access = self.auth.access();
                        self.conn
                            .eventloop
                            .mqtt_options
                            .set_credentials(&self.who.username, access);
                    }
                    Err(SdkError::SignedOut) => {
                        self.shared.emit(Event::Connection {
                            state: ConnectionState::SignedOut,
                        });
                        return false;
                    }
                    Err(_) => self.back_off().await,
                }
            }
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => {
                self.shared.emit(Event::Connection {
                    state: ConnectionState::SignedOut,
                });
                return false;
            }
            // The broker was still closing this client id's previous
            // connection: try again shortly.
            ConnectionError::ConnectionRefused(ConnectReturnCode::ServiceUnavailable) => {
                sleep(Duration::from_millis(200)).await
            }
            _ => {
                if self.failures == 0 {
                    self.shared.emit(Event::Connection {
                        state: ConnectionState::Reconnecting,
                    });
                }
                self.back_off().await
            }
        }
        true
    }

    fn current_password(&self) -> String {
        self.conn
            .eventloop
            .mqtt_options
            .credentials()
            .map(|login| login.password)
            .unwrap_or_default()
    }

    /// 250 ms, doubling up to 8 s.
    async fn back_off(&mut self) {
        let wait = Duration::from_millis(250) * 2u32.pow(self.failures.min(5));
        self.failures += 1;
        sleep(wait).await;
    }

    /// Refreshes the token and moves to a new connection with it; the
    /// broker hands the persistent session over, so nobody sees this device
    /// leave.
    async fn take_over(&mut self) -> Result<(), SdkError> {
        // Let the old connection write what it was handed.
        let flushed = timeout(CONNECT_TIMEOUT, async {
            while self.conn.written < self.conn.handed {
                match self.conn.eventloop.poll().await {
                    Ok(event) => self.handle(event),
                    Err(_) => return,
                }
            }
        })
        .await;
        if flushed.is_err() {
            tracing::debug!("flush before the token swap timed out");
        }
        self.auth.refresh(&self.current_password()).await?;
        let mut next = Conn::new(&self.who, &self.auth.access());
        let present = timeout(CONNECT_TIMEOUT, async {
            loop {
                match next.eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => return Ok(ack.session_present),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match present {
            Ok(Ok(session_present)) => {
                // What the old connection had not had acknowledged is asked
                // again on the new one.
                let pending: Vec<_> = self
                    .subs
                    .sent
                    .drain()
                    .map(|(_, s)| s)
                    .chain(self.subs.unsent.drain(..))
                    .collect();
                self.subs.retry.extend(pending);
                self.conn = next;
                self.connected(session_present);
                Ok(())
            }
            // Keep the old connection; the old token still has its grace.
            Ok(Err(e)) => Err(SdkError::Network {
                reason: e.to_string(),
            }),
            Err(_) => Err(SdkError::timeout("the new connection")),
        }
    }

    /// DISCONNECT, and close the socket once it is out (MQTT requires it;
    /// the broker counts the device online until then).
    async fn close(&mut self) {
        if self.conn.client.try_disconnect().is_ok() {
            let _ = timeout(Duration::from_secs(2), async {
                loop {
                    match self.conn.eventloop.poll().await {
                        Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
        self.shared.emit(Event::Connection {
            state: ConnectionState::SignedOut,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let b = Broker::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.websocket),
            ("127.0.0.1", 1884, false)
        );
        let b = Broker::parse("ws://example.org:8083/mqtt").unwrap();
        assert_eq!((b.port, b.websocket), (8083, true));
        assert!(matches!(
            Broker::parse("http://x:1"),
            Err(SdkError::InvalidArgument { .. })
        ));
        assert!(Broker::parse("not a url").is_err());
    }
}

//! The MQTT connection of a session: one task that owns it, reconnects,
//! keeps the subscriptions in place, and swaps in a fresh connection with a
//! new token before the old token runs out (so the server never has to
//! close it and watchers never see the device go offline).
//!
//! Requests reach the task through an unbounded channel and are handed to
//! rumqttc only while it has room, so nothing queued is lost when the task
//! swaps connections.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    ConnectReturnCode, ConnectionError, Event as MqttEvent, Outgoing, Packet, SubscribeReasonCode,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout};

mod conn;

pub(crate) use conn::{Broker, Identity};
use conn::{Conn, Subs};

use crate::api::Auth;
use crate::error::SdkError;
use crate::router::{Arrival, Router, Wire};
use crate::types::{ConnectionState, Event};

/// How long a connection attempt or a flush may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Starts the link task; it ends when `requests` closes or on `Close`.
pub(crate) fn spawn(
    who: Identity,
    auth: Arc<Auth>,
    shared: Arc<Shared>,
    requests: mpsc::UnboundedReceiver<Request>,
) {
    tokio::spawn(run(who, auth, shared, requests));
}

struct Task {
    who: Identity,
    auth: Arc<Auth>,
    shared: Arc<Shared>,
    subs: Subs,
    conn: Conn,
    /// Consecutive failed connection attempts, for the backoff.
    failures: u32,
    /// Subscriptions asked again on a new connection: `Connected` waits for
    /// the broker's answer to each, so an app that acts on it (a call
    /// placed to this device) finds them in place.
    restoring: BTreeSet<String>,
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
        restoring: BTreeSet::new(),
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
                    if self.restoring.remove(&filter) && self.restoring.is_empty() {
                        self.shared.emit(Event::Connection {
                            state: ConnectionState::Connected,
                        });
                    }
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
            self.restoring.insert(filter.clone());
            self.conn
                .hand(Request::Subscribe { filter, done }, &mut self.subs);
        }
        if !session_present {
            // A new session on the broker: put the subscriptions back.
            let filters: Vec<String> = self.subs.filters.iter().cloned().collect();
            for filter in filters {
                self.restoring.insert(filter.clone());
                self.conn
                    .hand(Request::Subscribe { filter, done: None }, &mut self.subs);
            }
        }
        if self.restoring.is_empty() {
            self.shared.emit(Event::Connection {
                state: ConnectionState::Connected,
            });
        }
    }

    /// A connection error; `false` when the session cannot go on.
    async fn failed(&mut self, e: ConnectionError) -> bool {
        // rumqttc does not send a SUBSCRIBE again after a reconnect: the
        // ones written but not acknowledged are asked again once connected.
        let lost: Vec<_> = self.subs.sent.drain().map(|(_, s)| s).collect();
        self.subs.retry.extend(lost);
        self.restoring.clear();
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
            while self.conn.waiting() {
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

//! An MQTT 3.1.1 and 5 broker core on tokio: connections, sessions,
//! routing and flow control. What is allowed is the embedder's
//! (`Hooks`). Built to hold many idle connections cheaply: a connection
//! is one task that keeps no buffer while idle, and a session's queue
//! holds memory only while it has messages.
//!
//! Flow control: a message for a subscriber whose queue is full makes its
//! publisher wait (its PUBACK waits too) rather than being lost. While it
//! waits, the publisher's connection still delivers its own queue and
//! reads acknowledgements, so two clients publishing into each other's
//! full queues do not wait on each other forever; a queue that
//! stays full past `Limits::stuck_after` belongs to a client that is not
//! reading: what is waiting for it is dropped, and so is what does not
//! fit in its queue until it reads again.

mod aliases;
mod children;
mod connection;
pub mod hooks;
pub mod message;
pub mod proxy;
mod queue;
mod retained;
mod router;
mod session;
mod socket;
pub mod sparse;
pub mod trie;
pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytestring::ByteString;
pub use socket::Stream;
use tokio::net::{TcpListener, TcpStream};
pub use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use hooks::{Dropped, Ended, Hooks, Login};
pub use message::Message;
pub use rmqtt_codec::types::QoS;
pub use wire::{Closing, ConnectRefusal, Granted, PubRefusal, Version};

use queue::Queued;
use router::{Filter, Router};
use session::Session;
pub use session::NEVER;

#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest packet taken from a client.
    pub max_packet_bytes: u32,
    /// Messages a session's queue holds.
    pub max_queue: usize,
    /// QoS 1 messages sent to a client and not yet acknowledged.
    pub max_inflight: u16,
    pub max_subscriptions: usize,
    /// MQTT 5 topic aliases the broker takes from a client, and uses
    /// toward one (up to what the client takes).
    pub max_topic_aliases: u16,
    /// The longest keep-alive a client may ask for.
    pub max_keepalive_s: u16,
    /// How long a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
    /// How long an MQTT 3.1.1 session with clean session off outlives
    /// its connection (an MQTT 5 client says for itself).
    pub session_expiry: Duration,
    /// How long a publisher waits for room in a subscriber's queue before
    /// it counts that subscriber as stuck and drops the message for it.
    pub stuck_after: Duration,
    /// Connections begin with a PROXY protocol v2 header (`proxy`): the
    /// broker sits behind a load balancer.
    pub proxy_protocol: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_bytes: 1 << 20,
            max_queue: 1000,
            max_inflight: 64,
            max_subscriptions: 100,
            max_topic_aliases: 0,
            max_keepalive_s: 3600,
            connect_timeout: Duration::from_secs(10),
            session_expiry: Duration::from_secs(2 * 60 * 60),
            stuck_after: Duration::from_secs(10),
            proxy_protocol: false,
        }
    }
}

/// A new connection's stream and its client's address (`admitted`), its
/// TLS handshake done within the connect timeout when `tls` is given.
async fn opened<H: Hooks>(
    shared: &Shared<H>,
    socket: TcpStream,
    address: SocketAddr,
    tls: Option<TlsAcceptor>,
) -> Option<(socket::Stream, SocketAddr)> {
    let (socket, address) = admitted(shared, socket, address).await?;
    let Some(tls) = tls else {
        return Some((socket::Stream::Plain(socket), address));
    };
    let handshake = tokio::time::timeout(shared.limits.connect_timeout, tls.accept(socket));
    let done = tokio::select! {
        done = handshake => done,
        _ = shared.shutdown.cancelled() => return None,
    };
    match done {
        Ok(Ok(stream)) => Some((socket::Stream::Tls(Box::new(stream)), address)),
        _ => None,
    }
}

/// A new connection and its client's address: the peer's, or behind a
/// load balancer the one its PROXY header names, read within the connect
/// timeout (without one, the connection is dropped).
async fn admitted<H: Hooks>(
    shared: &Shared<H>,
    mut socket: TcpStream,
    address: SocketAddr,
) -> Option<(TcpStream, SocketAddr)> {
    if !shared.limits.proxy_protocol {
        return Some((socket, address));
    }
    let header = proxy::read_header(&mut socket, address);
    let read = tokio::select! {
        read = tokio::time::timeout(shared.limits.connect_timeout, header) => read,
        _ = shared.shutdown.cancelled() => return None,
    };
    match read {
        Ok(Ok(client)) => Some((socket, client)),
        _ => None,
    }
}

pub struct Broker<H: Hooks> {
    shared: Arc<Shared<H>>,
}

impl<H: Hooks> Clone for Broker<H> {
    fn clone(&self) -> Self {
        Broker {
            shared: self.shared.clone(),
        }
    }
}

impl<H: Hooks> Broker<H> {
    pub fn new(hooks: H, limits: Limits) -> Broker<H> {
        Broker {
            shared: Arc::new(Shared {
                hooks,
                limits,
                router: Default::default(),
                retained: Default::default(),
                sessions: Default::default(),
                next_id: AtomicU64::new(1),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn hooks(&self) -> &H {
        &self.shared.hooks
    }

    /// Accepts MQTT connections on `listener` until `stop` (or until
    /// accepting fails); over TLS with `tls`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<()> {
        self.accept(listener, tls, |shared, stream, address| {
            connection::run(shared, stream.into(), address)
        })
        .await
    }

    /// Accepts MQTT over WebSocket on `listener` until `stop`; over TLS
    /// with `tls` (`wss://`).
    pub async fn serve_ws(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<()> {
        self.accept(listener, tls, |shared, stream, address| async move {
            let max = shared.limits.max_packet_bytes as usize + 5;
            // Boxed, as the opening is in `accept`.
            let handshake = Box::pin(socket::accept_ws(stream, max));
            let socket = tokio::select! {
                ws = tokio::time::timeout(shared.limits.connect_timeout, handshake) => ws,
                _ = shared.shutdown.cancelled() => return,
            };
            if let Ok(Ok(socket)) = socket {
                connection::run(shared, socket, address).await;
            }
        })
        .await
    }

    /// Accepts connections on `listener` until `stop`, and hands each one,
    /// once opened (`opened`), to `start` on a task of its own.
    async fn accept<F, R>(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        start: F,
    ) -> std::io::Result<()>
    where
        F: Fn(Arc<Shared<H>>, socket::Stream, SocketAddr) -> R + Copy + Send + 'static,
        R: Future<Output = ()> + Send + 'static,
    {
        let shared = &self.shared;
        // Counted as a task, so `stop` waits for it; dropped after the
        // listener (locals go in reverse order), so `stop` returns with the
        // port closed.
        let _serving = shared.tasks.token();
        let listener = listener;
        loop {
            let (socket, address) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = shared.shutdown.cancelled() => return Ok(()),
            };
            let _ = socket.set_nodelay(true);
            let (shared, tls) = (shared.clone(), tls.clone());
            shared.tasks.clone().spawn(async move {
                // Boxed while it runs: a TLS handshake's state would
                // otherwise stay in every connection's task (1.9 KB
                // instead of 1.2 per idle phone).
                let opening = Box::pin(opened(&shared, socket, address, tls));
                if let Some((stream, address)) = opening.await {
                    start(shared, stream, address).await;
                }
            });
        }
    }

    /// Closes connection `connection` of `client_id`, saying `why` to an
    /// MQTT 5 client; `false` if it is not open.
    pub fn close(&self, client_id: &str, connection: u64, why: Closing) -> bool {
        let session = self.shared.sessions.lock().unwrap().get(client_id).cloned();
        session.is_some_and(|s| s.close(connection, why))
    }

    /// Closes the open connection of `client_id` if it was made before
    /// `made_before` (by the wall clock), as a newer connection of it
    /// would (one made on another node, say); whether it did. Its session
    /// stays for the client's return.
    pub fn take_over(&self, client_id: &str, made_before: std::time::SystemTime) -> bool {
        let session = self.shared.sessions.lock().unwrap().get(client_id).cloned();
        session.is_some_and(|s| s.take_over_if_made_before(made_before))
    }

    /// Stops accepting, closes every connection, and returns once each
    /// has ended (and the hooks heard of it).
    pub async fn stop(&self) {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// Ends subscription `filter` (as it was subscribed, wildcards and
    /// all) of every session whose client id `keep` refuses, as when who
    /// may see what has changed; returns those client ids.
    pub fn unsubscribe_where(&self, filter: &str, keep: impl Fn(&str) -> bool) -> Vec<ByteString> {
        let shared = &self.shared;
        let holders = shared.router.read().unwrap().holders(filter);
        let mut ended = Vec::new();
        for holder in holders {
            let session = &holder.session;
            if keep(&session.client_id) {
                continue;
            }
            if shared.unsubscribe(session, filter) {
                ended.push(session.client_id.clone());
            }
        }
        ended
    }

    /// Publishes a message of the broker's own: to every subscriber with
    /// room for it (no publisher to slow down; a full queue drops it).
    pub fn publish(&self, message: Message) {
        self.shared.offer_now(message);
    }
}

pub(crate) struct Shared<H: Hooks> {
    hooks: H,
    limits: Limits,
    router: RwLock<Router>,
    retained: RwLock<retained::Retained>,
    /// The sessions, by client id.
    sessions: Mutex<HashMap<ByteString, Arc<Session>>>,
    next_id: AtomicU64,
    shutdown: CancellationToken,
    /// The connections' tasks, for `stop` to wait on.
    tasks: TaskTracker,
}

impl<H: Hooks> Shared<H> {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Ends `session`'s subscription `filter` (as subscribed); `false` if
    /// it had none.
    fn unsubscribe(&self, session: &Session, filter: &str) -> bool {
        let mut subscriptions = session.subscriptions.lock().unwrap();
        let Some(i) = subscriptions.iter().position(|(f, _)| f == filter) else {
            return false;
        };
        subscriptions.swap_remove(i);
        if let Some(parsed) = Filter::parse(filter) {
            let mut router = self.router.write().unwrap();
            if router.remove(parsed, session.id) {
                // Under the lock, so interest is reported in the order the
                // router changed.
                self.hooks.interest(parsed.topics(), false);
            }
        }
        true
    }

    /// Ends `session`'s subscriptions.
    fn unsubscribe_all(&self, session: &Session) {
        let filters = std::mem::take(&mut *session.subscriptions.lock().unwrap());
        let mut router = self.router.write().unwrap();
        for (filter, _) in &filters {
            if let Some(filter) = Filter::parse(filter) {
                if router.remove(filter, session.id) {
                    self.hooks.interest(filter.topics(), false);
                }
            }
        }
    }

    /// Ends `session` if claim `claim` is still its latest: no connection
    /// took it since.
    fn end_session(&self, session: &Arc<Session>, claim: u64) {
        let mut sessions = self.sessions.lock().unwrap();
        let current = sessions
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session));
        if current && session.claimed_by(claim) {
            sessions.remove(&session.client_id);
            sparse::shrink_when_sparse(&mut sessions);
            drop(sessions);
            self.unsubscribe_all(session);
        }
    }

    /// Keeps `message` for later subscribers if it is retained (and the
    /// embedder does not serve its topic); an empty one clears the topic.
    fn keep_retained(&self, message: &Arc<Message>) {
        if message.retain && self.hooks.keeps_retained(&message.topic) {
            self.retained.write().unwrap().set(message.clone());
        }
    }

    /// Queues `message` for every subscriber with room for it, dropping it
    /// for the others.
    fn offer_now(&self, message: Message) {
        let message = Arc::new(message);
        self.keep_retained(&message);
        for (session, queued) in self.route(&message) {
            if session.queue.try_push(queued).is_err() {
                self.hooks.dropped(Dropped::QueueFull);
            }
        }
    }

    /// The subscribers `message` goes to, once each (at the highest QoS
    /// of its subscriptions that match), at the QoS it gets.
    fn route(&self, message: &Arc<Message>) -> Vec<(Arc<Session>, Queued)> {
        let mut matched = self.router.read().unwrap().matches(&message.topic);
        matched.retain(|s| !(s.options.no_local && s.session.id == message.from));
        matched.sort_by_key(|s| (s.session.id, std::cmp::Reverse(s.options.qos)));
        let mut out: Vec<(Arc<Session>, Queued)> = Vec::with_capacity(matched.len());
        for s in matched {
            match out.last_mut() {
                // Another subscription of the same session: its identifier
                // goes along (the first, highest QoS, decided the rest).
                Some((session, queued)) if session.id == s.session.id => {
                    queued.subscription_ids.extend(s.options.id);
                }
                _ => {
                    let queued = Queued {
                        message: message.clone(),
                        qos: s.options.qos.min(message.qos),
                        retain: s.options.retain_as_published && message.retain,
                        subscription_ids: s.options.id.into_iter().collect(),
                    };
                    out.push((s.session, queued));
                }
            }
        }
        out
    }
}

/// Whether `topic` may be published to: not empty, no wildcard, no NUL.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// Whether `filter` is a valid MQTT filter: `+` and `#` only as whole
/// levels, `#` only last.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_filters_are_checked_as_mqtt_says() {
        let topics = [
            ("a/b", true),
            ("/", true),
            ("", false),
            ("a/+", false),
            ("a/#", false),
            ("a\0b", false),
        ];
        for (topic, valid) in topics {
            assert_eq!(valid_topic(topic), valid, "{topic:?}");
        }
        let filters = [
            ("a/b", true),
            ("#", true),
            ("+", true),
            ("a/+/c", true),
            ("a/#", true),
            ("+/+/#", true),
            ("", false),
            ("a/#/c", false),
            ("a#", false),
            ("a/b+", false),
            ("a\0", false),
        ];
        for (filter, valid) in filters {
            assert_eq!(valid_filter(filter), valid, "{filter:?}");
        }
    }
}

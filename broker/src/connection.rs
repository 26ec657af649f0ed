//! One client connection: its CONNECT, then one task that reads its
//! packets, sends its session's queue within the inflight window, and
//! waits for room when a subscriber's queue is full.

use std::collections::VecDeque;
use std::future::{pending, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::types::Publish;
use std::sync::atomic::Ordering;
use tokio::sync::OwnedMutexGuard;
use tokio::time::{sleep_until, Instant};

use crate::aliases::Aliases;
use crate::hooks::{Dropped, Ended, Hooks, Login};
use crate::message::Message;
use crate::queue::Queued;
use crate::router::{Filter, Subscriber};
use crate::session::{Carried, Inflight, Serving, Stopping, NEVER};
use crate::socket::Socket;
use crate::wire::{
    Closing, Codec, Connect, ConnectRefusal, Granted, In, Out, RetainHandling, SubscribeOptions,
    Version, Will,
};
use crate::{valid_topic, QoS, Session, Shared};

/// Packets read and put aside while a publish waits for room. Reading
/// goes on meanwhile, so the client's acknowledgements are not stuck
/// behind them: a client with fewer unacknowledged messages than this
/// (every MQTT 5 client: it is the Receive Maximum announced) cannot
/// wait on its own queue. Past it the socket is left unread, which slows
/// a client flooding QoS 0 messages; should that client wait on a
/// subscriber that waits on it, `Limits::stuck_after` ends the wait.
const HELD_MAX: usize = 256;

pub(crate) async fn run<H: Hooks>(shared: Arc<Shared<H>>, socket: Socket, address: SocketAddr) {
    let mut wire = Wire {
        socket,
        partial: None,
        codec: Codec::new(shared.limits.max_packet_bytes),
        out: BytesMut::new(),
    };
    let connect = tokio::select! {
        connect = tokio::time::timeout(shared.limits.connect_timeout, wire.read_connect()) => connect,
        _ = shared.shutdown.cancelled() => return,
    };
    let Ok(Some(connect)) = connect else { return };
    // Boxed here and below: what runs once (or rarely) and awaits the
    // embedder's hooks would otherwise make every connection's task as
    // large as its largest step, idle or not.
    let Some(mut connection) = Box::pin(login(shared, wire, *connect, address)).await else {
        return;
    };
    let ended = connection.serve().await;
    Box::pin(connection.end(ended)).await;
}

/// The socket and what is half read from it or waiting to be written.
struct Wire {
    socket: Socket,
    /// Bytes of a packet not yet whole; allocated only while there are.
    partial: Option<BytesMut>,
    codec: Codec,
    out: BytesMut,
}

impl Wire {
    /// Waits for bytes from the client; `false` if none came after all.
    async fn read(&mut self) -> io::Result<bool> {
        self.socket.read(&mut self.partial).await
    }

    fn next_packet(&mut self) -> Result<Option<In>, DecodeError> {
        let Some(partial) = self.partial.as_mut() else {
            return Ok(None);
        };
        let packet = self.codec.decode(partial)?;
        if partial.is_empty() {
            self.partial = None;
        }
        Ok(packet)
    }

    async fn read_connect(&mut self) -> Option<Box<Connect>> {
        loop {
            match self.next_packet() {
                Ok(Some(In::Connect(c))) => return Some(c),
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => return None,
            }
            self.read().await.ok()?;
        }
    }

    /// `false` if `out` cannot be sent to this client (too large).
    fn put(&mut self, out: Out) -> bool {
        self.codec.encode(out, &mut self.out)
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.socket.write_all(std::mem::take(&mut self.out)).await
    }
}

/// Answers a CONNECT: refused, or the client id's session taken (its
/// previous connection closed, and ended first) or made anew, and CONNACK
/// sent.
async fn login<H: Hooks>(
    shared: Arc<Shared<H>>,
    mut wire: Wire,
    connect: Connect,
    address: SocketAddr,
) -> Option<Connection<H>> {
    let limits = &shared.limits;
    let refuse = |mut wire: Wire, why: ConnectRefusal| async move {
        wire.put(Out::ConnAck {
            session_present: false,
            refused: Some(why),
            receive_max: HELD_MAX as u16,
            max_packet_size: 0,
            keep_alive: None,
            assigned_client_id: None,
            topic_alias_max: 0,
        });
        let _ = wire.flush().await;
    };
    if connect.client_id.is_empty() && !connect.clean_start {
        refuse(wire, ConnectRefusal::BadClientId).await;
        return None;
    }
    // An MQTT 3.1.1 client cannot be told a shorter keep-alive: one asking
    // for more than the broker allows is refused.
    if connect.version == Version::V3 && connect.keep_alive > limits.max_keepalive_s {
        refuse(wire, ConnectRefusal::Unavailable).await;
        return None;
    }
    let assigned = connect
        .client_id
        .is_empty()
        .then(|| ByteString::from(format!("auto-{}", shared.next_id())));
    let client_id = assigned.clone().unwrap_or(connect.client_id);
    let login = Login {
        client_id: &client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
        version: connect.version,
        address,
        will_topic: connect.will.as_ref().map(|w| &*w.topic),
    };
    let client = match shared.hooks.authenticate(&login).await {
        Ok(client) => Arc::new(client),
        Err(why) => {
            refuse(wire, why).await;
            return None;
        }
    };
    // 0 asks for no keep-alive; the broker's maximum applies then too.
    let keep_alive = match connect.keep_alive {
        0 => limits.max_keepalive_s,
        asked => asked.min(limits.max_keepalive_s),
    };
    let expiry = match connect.session_expiry {
        Some(asked) => asked,
        None if connect.clean_start => 0,
        None => u32::try_from(limits.session_expiry.as_secs()).unwrap_or(NEVER),
    };
    let (session, claim, present) = claim(&shared, client_id, connect.clean_start);
    // The previous connection hands the session over as it ends.
    let carried = session.carried.clone().lock_owned().await;
    if !session.claimed_by(claim) {
        // A newer connection claimed it meanwhile.
        return None;
    }
    let connection = shared.next_id();
    let stop = Arc::new(Stopping::default());
    session.expiry.store(expiry, Ordering::Release);
    session.serve(Serving {
        connection,
        stop: stop.clone(),
        since: std::time::SystemTime::now(),
    });
    if let Some(max) = connect.max_packet_size {
        wire.codec.set_max_out(max);
    }
    let told_keep_alive = (keep_alive != connect.keep_alive).then_some(keep_alive);
    wire.put(Out::ConnAck {
        session_present: present,
        refused: None,
        receive_max: HELD_MAX as u16,
        max_packet_size: limits.max_packet_bytes,
        keep_alive: told_keep_alive,
        assigned_client_id: assigned,
        topic_alias_max: limits.max_topic_aliases,
    });
    let max_inflight =
        usize::from((connect.receive_max.unwrap_or(u16::MAX)).min(limits.max_inflight));
    let mut connection = Connection {
        version: connect.version,
        keep_alive: Duration::from_secs(u64::from(keep_alive)) * 3 / 2,
        last_read: Instant::now(),
        will: connect.will.map(Box::new),
        held: VecDeque::new(),
        waiting: None,
        max_inflight: max_inflight.max(1),
        aliases: Aliases::new(
            limits.max_topic_aliases,
            connect.topic_alias_max.min(limits.max_topic_aliases),
        ),
        connection,
        claim,
        client,
        stop,
        carried,
        shared,
        session,
        wire,
    };
    connection.resend_inflight();
    let shared = &connection.shared;
    (shared.hooks)
        .connected(&connection.client, connection.connection)
        .await;
    if connection.wire.flush().await.is_err() {
        connection.end(Ended::Lost).await;
        return None;
    }
    Some(connection)
}

/// The session `client_id` logs in to: its own if it has one and asks to
/// keep it (`true`: present), else a new one (the old one's subscriptions
/// end). Its previous connection is told to go.
fn claim<H: Hooks>(
    shared: &Shared<H>,
    client_id: ByteString,
    clean_start: bool,
) -> (Arc<Session>, u64, bool) {
    let mut sessions = shared.sessions.lock().unwrap();
    let existing = sessions.get(&client_id).cloned();
    let (session, present) = match existing {
        Some(s) if !clean_start => (s, true),
        existing => {
            if let Some(old) = existing {
                old.take_over();
                shared.unsubscribe_all(&old);
            }
            let new = Session::new(shared.next_id(), client_id.clone(), shared.limits.max_queue);
            (Arc::new(new), false)
        }
    };
    let claim = session.claim();
    session.take_over();
    sessions.insert(client_id, session.clone());
    (session, claim, present)
}

struct Connection<H: Hooks> {
    shared: Arc<Shared<H>>,
    session: Arc<Session>,
    /// This connection's claim on the session.
    claim: u64,
    connection: u64,
    client: Arc<H::Client>,
    stop: Arc<Stopping>,
    /// The session's state, held while this connection serves it.
    carried: OwnedMutexGuard<Carried>,
    wire: Wire,
    version: Version,
    /// Silence longer than this ends the connection (1.5 keep-alives).
    keep_alive: Duration,
    last_read: Instant,
    will: Option<Box<Will>>,
    /// Packets read while a publish waits for room, in their order.
    held: VecDeque<In>,
    waiting: Option<Box<Waiting>>,
    max_inflight: usize,
    aliases: Aliases,
}

/// A publish whose subscribers are being given it: one queue was full.
struct Waiting {
    current: (Arc<Session>, Queued),
    rest: std::vec::IntoIter<(Arc<Session>, Queued)>,
    /// Sent to the publisher once every subscriber has it.
    ack: Option<Out>,
    since: Instant,
}

/// Why the connection's loop stops.
enum Stop {
    Disconnected,
    Closed(Closing),
    Lost,
}

impl From<DecodeError> for Stop {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::MaxSizeExceeded { .. } => Stop::Closed(Closing::TooLarge),
            _ => Stop::Closed(Closing::ProtocolError),
        }
    }
}

impl<H: Hooks> Connection<H> {
    async fn serve(&mut self) -> Ended {
        let keep_alive = sleep_until(self.last_read + self.keep_alive);
        tokio::pin!(keep_alive);
        loop {
            let stop = match self.work().await {
                Ok(()) => {
                    self.send_queued();
                    match self.wire.flush().await {
                        Ok(()) => None,
                        Err(_) => Some(Stop::Lost),
                    }
                }
                Err(stop) => Some(stop),
            };
            if let Some(stop) = stop {
                return self.close(stop).await;
            }
            let reading = self.held.len() <= HELD_MAX;
            let window_open = self.carried.inflight.len() < self.max_inflight;
            let stuck_after = self.shared.limits.stuck_after;
            tokio::select! {
                biased;
                why = self.stop.stopped() => {
                    return self.close(Stop::Closed(why)).await;
                }
                _ = self.shared.shutdown.cancelled() => {
                    return self.close(Stop::Closed(Closing::ShuttingDown)).await;
                }
                read = self.wire.read(), if reading => {
                    match read {
                        Ok(true) => self.last_read = Instant::now(),
                        Ok(false) => {}
                        Err(_) => return self.close(Stop::Lost).await,
                    }
                }
                _ = self.session.queue.filled(), if window_open => {}
                queued = room(&self.waiting, stuck_after) => {
                    if !queued {
                        self.shared.hooks.dropped(Dropped::QueueFull);
                        if let Some(waiting) = &self.waiting {
                            waiting.current.0.stuck.store(true, Ordering::Release);
                        }
                    }
                    self.offer_rest();
                }
                _ = &mut keep_alive, if reading => {
                    let deadline = self.last_read + self.keep_alive;
                    if deadline <= Instant::now() {
                        return self.close(Stop::Closed(Closing::KeepAlive)).await;
                    }
                    keep_alive.as_mut().reset(deadline);
                }
            }
        }
    }

    /// Handles the packets read so far; while a publish waits for room,
    /// only acknowledgements and pings, the rest put aside in order.
    async fn work(&mut self) -> Result<(), Stop> {
        loop {
            let packet = if self.waiting.is_some() {
                if self.held.len() > HELD_MAX {
                    return Ok(());
                }
                match self.wire.next_packet()? {
                    // What answers this connection's own messages, and
                    // pings, cannot wait.
                    Some(
                        p @ (In::PubAck(_)
                        | In::PubRec { .. }
                        | In::PubRel(_)
                        | In::PubComp(_)
                        | In::PingReq),
                    ) => p,
                    Some(p) => {
                        self.held.push_back(p);
                        continue;
                    }
                    None => return Ok(()),
                }
            } else if let Some(p) = self.held.pop_front() {
                p
            } else {
                match self.wire.next_packet()? {
                    Some(p) => p,
                    None => return Ok(()),
                }
            };
            // Boxed: kept out of an idle connection's task (see `run`).
            Box::pin(self.handle(packet)).await?;
        }
    }

    async fn handle(&mut self, packet: In) -> Result<(), Stop> {
        match packet {
            In::Publish(p) => self.publish(*p).await?,
            In::PubAck(id) => {
                (self.carried).answered(id, |f| f.queued.qos == QoS::AtLeastOnce);
            }
            In::PubRec { packet_id, failed } => {
                let is_qos2 = |f: &Inflight| f.queued.qos == QoS::ExactlyOnce;
                if failed {
                    self.carried.answered(packet_id, is_qos2);
                } else if let Some(f) =
                    (self.carried.inflight.iter_mut()).find(|f| f.id == packet_id && is_qos2(f))
                {
                    f.released = true;
                    self.wire.put(Out::PubRel(packet_id));
                }
            }
            In::PubComp(id) => {
                self.carried.answered(id, |f| f.released);
            }
            In::PubRel(id) => {
                self.carried.released.retain(|r| *r != id);
                self.wire.put(Out::PubComp(id));
            }
            In::Subscribe { packet_id, filters } => {
                let mut granted = Vec::with_capacity(filters.len());
                let mut retained_for = Vec::new();
                let mut any_new = false;
                for (filter, options) in filters {
                    let (g, new) = self.subscribe(filter.clone(), options).await;
                    any_new |= new;
                    // A shared subscription gets none (MQTT 4.8.2).
                    let shared = matches!(Filter::parse(&filter), Some(Filter::Shared { .. }));
                    let wanted = !shared && wants_retained(&options, new);
                    if let (Granted::Qos(_), true) = (g, wanted) {
                        retained_for.push((filter, options));
                    }
                    granted.push(g);
                }
                if any_new {
                    Box::pin(self.shared.hooks.granted()).await;
                }
                self.wire.put(Out::SubAck(packet_id, granted));
                for (filter, options) in retained_for {
                    self.send_retained(&filter, options).await;
                }
            }
            In::Unsubscribe { packet_id, filters } => {
                let unsubscribe = |f: &ByteString| self.shared.unsubscribe(&self.session, f);
                let found = filters.iter().map(unsubscribe).collect();
                self.wire.put(Out::UnsubAck(packet_id, found));
            }
            In::PingReq => {
                self.wire.put(Out::PingResp);
            }
            In::Disconnect {
                with_will,
                session_expiry,
            } => {
                if !with_will {
                    self.will = None;
                }
                // MQTT 5: a session that was to end with its connection
                // stays so.
                let expiry = &self.session.expiry;
                if let (Some(new), false) = (session_expiry, expiry.load(Ordering::Acquire) == 0) {
                    expiry.store(new, Ordering::Release);
                }
                return Err(Stop::Disconnected);
            }
            In::Connect(_) | In::Unexpected => return Err(Stop::Closed(Closing::ProtocolError)),
        }
        Ok(())
    }

    async fn publish(&mut self, mut p: Publish) -> Result<(), Stop> {
        if let Some(alias) = p.properties.as_mut().and_then(|pp| pp.topic_alias.take()) {
            p.topic = (self.aliases.resolve(alias.get(), &p.topic))
                .ok_or(Stop::Closed(Closing::TopicAliasInvalid))?;
        }
        if !valid_topic(&p.topic) {
            return Err(Stop::Closed(Closing::ProtocolError));
        }
        let (qos, packet_id) = (p.qos, p.packet_id);
        if qos != QoS::AtMostOnce && packet_id.is_none() {
            return Err(Stop::Closed(Closing::ProtocolError));
        }
        if let (QoS::ExactlyOnce, Some(id)) = (qos, packet_id) {
            if self.carried.released.contains(&id) {
                // A resend of one already taken: taken once.
                self.wire.put(Out::PubRec(id, None));
                return Ok(());
            }
            if self.carried.released.len() >= HELD_MAX {
                // More unreleased than the Receive Maximum announced.
                return Err(Stop::Closed(Closing::ReceiveMaximumExceeded));
            }
        }
        let mut message = Message::published(p, self.session.id, Instant::now());
        let verdict = Box::pin((self.shared.hooks).publish(&self.client, &mut message)).await;
        let ack = match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => Some(Out::PubAck(id, verdict.err())),
            (QoS::ExactlyOnce, Some(id)) => {
                if verdict.is_ok() {
                    self.carried.released.push(id);
                }
                Some(Out::PubRec(id, verdict.err()))
            }
            _ => None,
        };
        if verdict.is_err() {
            if let Some(ack) = ack {
                self.wire.put(ack);
            }
            return Ok(());
        }
        let message = Arc::new(message);
        self.shared.keep_retained(&message);
        let deliveries = self.shared.route(&message);
        self.offer(deliveries.into_iter(), ack);
        Ok(())
    }

    /// Queues a message for each subscriber in turn; at a full queue of a
    /// reading subscriber, it waits for room.
    fn offer(
        &mut self,
        mut deliveries: std::vec::IntoIter<(Arc<Session>, Queued)>,
        ack: Option<Out>,
    ) {
        while let Some((session, queued)) = deliveries.next() {
            match session.queue.try_push(queued) {
                Ok(()) => {}
                // Nobody reads an offline or stuck session's queue.
                Err(_) if !session.worth_waiting_for() => {
                    self.shared.hooks.dropped(Dropped::QueueFull);
                }
                // QoS 0 waits too: MQTT lets it be lost, but a burst
                // should slow its publisher, not vanish.
                Err(queued) => {
                    self.waiting = Some(Box::new(Waiting {
                        current: (session, queued),
                        rest: deliveries,
                        ack,
                        since: Instant::now(),
                    }));
                    return;
                }
            }
        }
        if let Some(ack) = ack {
            self.wire.put(ack);
        }
    }

    /// The waiting copy is queued (or given up on): on to the others.
    fn offer_rest(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            self.offer(waiting.rest, waiting.ack);
        }
    }

    /// Subscribes; and whether the subscription is new (not a change of
    /// one the session had).
    async fn subscribe(&mut self, full: ByteString, options: SubscribeOptions) -> (Granted, bool) {
        let Some(filter) = Filter::parse(&full) else {
            return (Granted::BadFilter, false);
        };
        let session = &self.session;
        let held = |subscriptions: &[(ByteString, SubscribeOptions)]| {
            subscriptions.iter().position(|(f, _)| *f == full)
        };
        {
            let subscriptions = session.subscriptions.lock().unwrap();
            let max = self.shared.limits.max_subscriptions;
            if held(&subscriptions).is_none() && subscriptions.len() >= max {
                return (Granted::TooMany, false);
            }
        }
        let decided = Box::pin(self.shared.hooks.subscribe(&self.client, filter.topics()));
        if let Err(refused) = decided.await {
            return (refused, false);
        }
        let mut subscriptions = session.subscriptions.lock().unwrap();
        let again = held(&subscriptions);
        let subscriber = Subscriber {
            session: session.clone(),
            options,
        };
        let mut router = self.shared.router.write().unwrap();
        match again {
            // The same filter held again: no change of interest.
            Some(i) => {
                router.remove(filter, session.id);
                router.insert(filter, session.id, subscriber);
                subscriptions[i].1 = options;
            }
            None => {
                subscriptions.push((full.clone(), options));
                if router.insert(filter, session.id, subscriber) {
                    self.shared.hooks.interest(filter.topics(), true);
                }
            }
        }
        (Granted::Qos(options.qos), again.is_none())
    }

    /// Sends the retained messages `filter` matches: the embedder's current
    /// values if it serves them, else the broker's. Straight to the socket
    /// ahead of the queue, so a message queued meanwhile, newer, comes
    /// after them.
    async fn send_retained(&mut self, filter: &str, options: SubscribeOptions) {
        let shared = &self.shared;
        let messages = match Box::pin(shared.hooks.served(&self.client, filter)).await {
            Some(served) => served.into_iter().map(Arc::new).collect(),
            None => shared.retained.read().unwrap().matching(filter),
        };
        let now = Instant::now();
        for message in messages {
            let queued = Queued {
                qos: options.qos.min(message.qos),
                message,
                retain: true,
                subscription_ids: options.id.into_iter().collect(),
            };
            self.send(queued, now);
        }
    }

    /// Moves queued messages to the socket's buffer while the inflight
    /// window has room.
    fn send_queued(&mut self) {
        let now = Instant::now();
        while self.carried.inflight.len() < self.max_inflight {
            let Some(queued) = self.session.queue.pop() else {
                break;
            };
            self.session.stuck.store(false, Ordering::Release);
            self.send(queued, now);
        }
    }

    /// Puts one message in the socket's buffer, unless it expired or may
    /// no longer reach this client.
    fn send(&mut self, queued: Queued, now: Instant) {
        let message = &queued.message;
        if message.expired(now) {
            self.shared.hooks.dropped(Dropped::Expired);
            return;
        }
        if !self.shared.hooks.deliver(&self.client, message) {
            return;
        }
        let v5 = self.version == Version::V5;
        let packet_id = (queued.qos != QoS::AtMostOnce).then(|| self.carried.next_packet_id());
        let mut publish = message.to_publish(&queued, packet_id, v5, now);
        if let Some(properties) = publish.properties.as_mut() {
            let (alias, known) = self.aliases.outgoing(&publish.topic);
            properties.topic_alias = alias;
            if known {
                publish.topic = ByteString::new();
            }
        }
        if !self.wire.put(Out::Publish(Box::new(publish))) {
            self.shared.hooks.dropped(Dropped::TooLarge);
            return;
        }
        if let Some(id) = packet_id {
            self.carried.inflight.push_back(Inflight {
                id,
                queued,
                released: false,
            });
        }
    }

    /// Sends again what the session's last connection sent and its client
    /// did not acknowledge: the message flagged DUP, or the PUBREL of a
    /// QoS 2 message whose PUBREC came.
    fn resend_inflight(&mut self) {
        let now = Instant::now();
        let v5 = self.version == Version::V5;
        for f in std::mem::take(&mut self.carried.inflight) {
            let sent = match f.released {
                true => self.wire.put(Out::PubRel(f.id)),
                false => {
                    let mut publish = (f.queued.message).to_publish(&f.queued, Some(f.id), v5, now);
                    publish.dup = true;
                    self.wire.put(Out::Publish(Box::new(publish)))
                }
            };
            if sent {
                self.carried.inflight.push_back(f);
            }
        }
    }

    /// Says why to an MQTT 5 client, and how the connection ended.
    async fn close(&mut self, stop: Stop) -> Ended {
        match stop {
            Stop::Disconnected => Ended::Graceful,
            Stop::Lost => Ended::Lost,
            Stop::Closed(why) => {
                if self.wire.put(Out::Disconnect(why)) {
                    let _ = self.wire.flush().await;
                }
                if why.is_clients_fault() {
                    Box::pin(self.wire.socket.linger()).await;
                }
                match why {
                    Closing::TakenOver => Ended::TakenOver,
                    _ => Ended::Lost,
                }
            }
        }
    }

    /// Leaves the session to its next connection, or to its expiry, or
    /// ends it; publishes the Will of a connection lost; tells the hooks.
    async fn end(self, ended: Ended) {
        let Connection {
            shared,
            session,
            claim,
            connection,
            client,
            carried,
            will,
            ..
        } = self;
        session.leave(connection);
        let replaced = {
            let sessions = shared.sessions.lock().unwrap();
            !(sessions.get(&session.client_id)).is_some_and(|s| Arc::ptr_eq(s, &session))
        };
        if replaced {
            // A clean start took the client id: this session is over.
            shared.unsubscribe_all(&session);
        } else if session.claimed_by(claim) {
            match session.expiry.load(Ordering::Acquire) {
                0 => shared.end_session(&session, claim),
                NEVER => {}
                seconds => {
                    let (shared, session) = (shared.clone(), session.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(u64::from(seconds))).await;
                        shared.end_session(&session, claim);
                    });
                }
            }
        }
        // The next connection may take the session now.
        drop(carried);
        if let (Some(will), Ended::Lost) = (will, ended) {
            // MQTT 5: the Will waits its delay, or until the session ends
            // if sooner; a connection taking the session meanwhile
            // cancels it.
            let delay = will.delay.min(session.expiry.load(Ordering::Acquire));
            if delay == 0 {
                publish_will(&shared, &session, &client, *will).await;
            } else {
                let (shared, session, client) = (shared.clone(), session.clone(), client.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
                    if session.claimed_by(claim) {
                        publish_will(&shared, &session, &client, *will).await;
                    }
                });
            }
        }
        shared.hooks.disconnected(&client, connection, ended);
    }
}

async fn publish_will<H: Hooks>(
    shared: &Shared<H>,
    session: &Session,
    client: &H::Client,
    will: Will,
) {
    let publish = Publish {
        dup: false,
        retain: will.retain,
        qos: will.qos,
        topic: will.topic,
        packet_id: None,
        payload: will.payload,
        properties: will.properties,
    };
    let mut message = Message::published(publish, session.id, Instant::now());
    if shared.hooks.publish(client, &mut message).await.is_ok() {
        shared.offer_now(message);
    }
}

/// Whether a subscription gets the retained messages it matches (MQTT 5's
/// Retain Handling: always, only when new, or never).
fn wants_retained(options: &SubscribeOptions, new: bool) -> bool {
    match options.retain_handling {
        RetainHandling::Always => true,
        RetainHandling::IfNew => new,
        RetainHandling::Never => false,
    }
}

/// Resolves once the waiting copy has its place in the queue (`true`),
/// or has waited `after` (`false`). Allocated only while a copy waits,
/// so an idle connection's task does not carry it.
fn room(
    waiting: &Option<Box<Waiting>>,
    after: Duration,
) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
    let Some(w) = waiting else {
        // A zero-sized future: no allocation.
        return Box::pin(pending());
    };
    Box::pin(async move {
        let push = w.current.0.queue.push(w.current.1.clone());
        tokio::time::timeout_at(w.since + after, push).await.is_ok()
    })
}

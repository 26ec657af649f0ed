//! The broker core against real MQTT clients (rumqttc, 3.1.1 and 5, and
//! raw bytes where a client library would refuse to send them), on
//! loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use switchboard_broker::{
    Broker, ConnectRefusal, Dropped, Ended, Granted, Hooks, Limits, Login, Message, PubRefusal,
    QoS as Q,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Long enough for a loaded machine; a test waits this only if it fails.
const WAIT: Duration = Duration::from_secs(20);

/// Hooks that refuse `forbidden/...` and the password `wrong`, and report
/// what happens.
struct Recorder {
    dropped: AtomicUsize,
    connected: mpsc::UnboundedSender<(String, u64)>,
    ended: mpsc::UnboundedSender<(String, Ended)>,
    /// Interest reported, and (as `("granted", true)`) each wait before a
    /// SUBACK, in order.
    interest: std::sync::Mutex<Vec<(String, bool)>>,
}

impl Hooks for Recorder {
    type Client = String;

    async fn authenticate(&self, login: &Login<'_>) -> Result<String, ConnectRefusal> {
        match login.password {
            Some(b"wrong") => Err(ConnectRefusal::BadCredentials),
            _ => Ok(login.client_id.to_string()),
        }
    }

    async fn connected(&self, client: &String, connection: u64) {
        let _ = self.connected.send((client.clone(), connection));
    }

    fn disconnected(&self, client: &String, _: u64, ended: Ended) {
        let _ = self.ended.send((client.clone(), ended));
    }

    async fn subscribe(&self, _: &String, filter: &str) -> Result<(), Granted> {
        match filter.starts_with("forbidden/") {
            true => Err(Granted::NotAuthorized),
            false => Ok(()),
        }
    }

    async fn publish(&self, _: &String, message: &mut Message) -> Result<(), PubRefusal> {
        match message.topic.starts_with("forbidden/") {
            true => Err(PubRefusal::NotAuthorized),
            false => Ok(()),
        }
    }

    /// `served/...` is the embedder's: its value is always "current".
    async fn served(&self, _: &String, filter: &str) -> Option<Vec<Message>> {
        let topic = filter.strip_prefix("served/")?;
        let current = Message::new(
            format!("served/{topic}").into(),
            "current".into(),
            Q::AtLeastOnce,
        );
        Some(vec![current])
    }

    fn keeps_retained(&self, topic: &str) -> bool {
        !topic.starts_with("served/")
    }

    fn dropped(&self, why: Dropped) {
        assert_eq!(why, Dropped::QueueFull);
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn interest(&self, filter: &str, held: bool) {
        self.interest.lock().unwrap().push((filter.into(), held));
    }

    async fn granted(&self) {
        self.interest.lock().unwrap().push(("granted".into(), true));
    }
}

struct Running {
    addr: SocketAddr,
    ws_addr: SocketAddr,
    broker: Broker<Recorder>,
    connected: mpsc::UnboundedReceiver<(String, u64)>,
    ended: mpsc::UnboundedReceiver<(String, Ended)>,
}

impl Running {
    async fn start(limits: Limits) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_addr = ws_listener.local_addr().unwrap();
        let (tx, ended) = mpsc::unbounded_channel();
        let (connected_tx, connected) = mpsc::unbounded_channel();
        let hooks = Recorder {
            dropped: AtomicUsize::new(0),
            connected: connected_tx,
            ended: tx,
            interest: Default::default(),
        };
        let broker = Broker::new(hooks, limits);
        let serving = broker.clone();
        tokio::spawn(async move { serving.serve(listener, None).await });
        let serving = broker.clone();
        tokio::spawn(async move { serving.serve_ws(ws_listener, None).await });
        Running {
            addr,
            ws_addr,
            broker,
            connected,
            ended,
        }
    }

    fn dropped(&self) -> usize {
        self.broker.hooks().dropped.load(Ordering::Relaxed)
    }

    async fn next_connected(&mut self) -> (String, u64) {
        tokio::time::timeout(WAIT, self.connected.recv())
            .await
            .expect("a connection was made")
            .unwrap()
    }

    async fn next_ended(&mut self) -> (String, Ended) {
        tokio::time::timeout(WAIT, self.ended.recv())
            .await
            .expect("a connection ended")
            .unwrap()
    }
}

/// A 3.1.1 client whose event loop runs while `gate` is open.
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
    acks: usize,
    sent: usize,
    session_present: bool,
}

impl Client {
    async fn connect(addr: SocketAddr, id: &str) -> Client {
        Client::connect_gated(addr, id, watch::channel(true).1).await
    }

    async fn connect_gated(addr: SocketAddr, id: &str, gate: watch::Receiver<bool>) -> Client {
        Client::connect_with(options(addr, id), gate).await
    }

    async fn connect_with(options: MqttOptions, mut gate: watch::Receiver<bool>) -> Client {
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (tx, mut events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                if gate.wait_for(|open| *open).await.is_err() {
                    return;
                }
                match eventloop.poll().await {
                    Ok(event) => {
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Event::Outgoing(Outgoing::Disconnect));
                        eprintln!("client event loop ended: {e}");
                        return;
                    }
                }
            }
        });
        let mut c = Client {
            client,
            events: mpsc::unbounded_channel().1,
            task,
            acks: 0,
            sent: 0,
            session_present: false,
        };
        loop {
            match tokio::time::timeout(WAIT, events.recv()).await.unwrap() {
                Some(Event::Incoming(Packet::ConnAck(ack))) => {
                    c.session_present = ack.session_present;
                    break;
                }
                Some(_) => {}
                None => panic!("no CONNACK"),
            }
        }
        c.events = events;
        c
    }

    /// The next event, counted if it is a PUBACK or a PUBLISH sent.
    async fn next(&mut self) -> Event {
        let event = tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event in time")
            .expect("the event loop runs");
        match event {
            Event::Incoming(Packet::PubAck(_)) => self.acks += 1,
            Event::Outgoing(Outgoing::Publish(_)) => self.sent += 1,
            _ => {}
        }
        event
    }

    async fn subscribe(&mut self, filter: &str) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let Event::Incoming(Packet::SubAck(s)) = self.next().await {
                return s.return_codes;
            }
        }
    }

    /// The payloads of the next `n` messages delivered.
    async fn receive(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < n {
            if let Event::Incoming(Packet::Publish(p)) = self.next().await {
                got.push(p.payload.to_vec());
            }
        }
        got
    }

    /// Waits until `n` PUBACKs came back in all.
    async fn acknowledged(&mut self, n: usize) {
        while self.acks < n {
            self.next().await;
        }
    }

    /// Waits until `n` PUBLISHes went out in all.
    async fn sent(&mut self, n: usize) {
        while self.sent < n {
            self.next().await;
        }
    }

    async fn publish_numbered(&self, topic: &str, n: usize) {
        for i in 0..n {
            let payload = i.to_string().into_bytes();
            self.client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    }
}

/// A 3.1.1 connection by hand (clean session, keep-alive 60 s).
async fn raw_connect(addr: SocketAddr, id: &[u8]) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut connect = vec![0x10, 12 + id.len() as u8];
    connect.extend_from_slice(b"\x00\x04MQTT\x04\x02\x00\x3c\x00");
    connect.push(id.len() as u8);
    connect.extend_from_slice(id);
    socket.write_all(&connect).await.unwrap();
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    socket
}

/// Subscribes to `filter` at QoS 1 by hand; the SUBACK's return code.
async fn raw_subscribe(socket: &mut TcpStream, filter: &[u8]) -> u8 {
    let mut subscribe = vec![0x82, 5 + filter.len() as u8, 0, 1, 0];
    subscribe.push(filter.len() as u8);
    subscribe.extend_from_slice(filter);
    subscribe.push(1);
    socket.write_all(&subscribe).await.unwrap();
    let mut suback = [0u8; 5];
    socket.read_exact(&mut suback).await.unwrap();
    assert_eq!(suback[..4], [0x90, 3, 0, 1]);
    suback[4]
}

fn options(addr: SocketAddr, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

fn numbered(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| i.to_string().into_bytes()).collect()
}

fn small(max_queue: usize, max_inflight: u16, stuck_after: Duration) -> Limits {
    Limits {
        max_queue,
        max_inflight,
        stuck_after,
        ..Limits::default()
    }
}

#[tokio::test]
async fn messages_reach_subscribers_once_at_the_highest_qos_in_order() {
    let b = Running::start(Limits::default()).await;
    let mut sub = Client::connect(b.addr, "sub").await;
    // Two filters match: the message still comes once.
    assert_eq!(sub.subscribe("a/+").await.len(), 1);
    sub.subscribe("a/#").await;
    let mut publisher = Client::connect(b.addr, "pub").await;
    publisher.publish_numbered("a/b", 50).await;
    publisher.acknowledged(50).await;
    assert_eq!(sub.receive(50).await, numbered(50));
    publisher.publish_numbered("a/end", 1).await;
    assert_eq!(sub.receive(1).await, numbered(1), "nothing delivered twice");
}

#[tokio::test]
async fn a_slow_subscriber_slows_its_publisher_and_loses_nothing() {
    let b = Running::start(small(8, 4, Duration::from_secs(600))).await;
    let (open, gate) = watch::channel(true);
    let mut sub = Client::connect_gated(b.addr, "slow", gate).await;
    sub.subscribe("stream").await;
    open.send(false).unwrap();
    let mut o = options(b.addr, "fast");
    o.set_inflight(1000);
    let mut publisher = Client::connect_with(o, watch::channel(true).1).await;
    // 200 messages, far past the 8 + 4 the subscriber's queue and window
    // hold, all sent while it reads nothing.
    publisher.publish_numbered("stream", 200).await;
    publisher.sent(200).await;
    open.send(true).unwrap();
    assert_eq!(sub.receive(200).await, numbered(200));
    publisher.acknowledged(200).await;
    assert_eq!(b.dropped(), 0);
}

#[tokio::test]
async fn publishers_into_each_others_full_queues_both_get_through() {
    let b = Running::start(small(4, 2, Duration::from_secs(600))).await;
    let mut a = Client::connect(b.addr, "a").await;
    let mut c = Client::connect(b.addr, "c").await;
    a.subscribe("to/a").await;
    c.subscribe("to/c").await;
    let n = 500;
    a.publish_numbered("to/c", n).await;
    c.publish_numbered("to/a", n).await;
    let (got_a, got_c) = tokio::join!(a.receive(n), c.receive(n));
    assert_eq!(got_a, numbered(n));
    assert_eq!(got_c, numbered(n));
    assert_eq!(b.dropped(), 0);
}

#[tokio::test]
async fn a_subscriber_that_reads_nothing_is_dropped_for_after_a_while() {
    let stuck_after = Duration::from_millis(50);
    let b = Running::start(small(8, 4, stuck_after)).await;
    let mut stuck = raw_connect(b.addr, b"s").await;
    assert_eq!(raw_subscribe(&mut stuck, b"stream").await, 1);
    let mut publisher = Client::connect(b.addr, "pub").await;
    publisher.publish_numbered("stream", 20).await;
    publisher.acknowledged(20).await;
    // 4 on their way and 8 queued; the other 8 waited and were dropped.
    assert_eq!(b.dropped(), 8);
}

#[tokio::test]
async fn a_second_connection_with_the_same_id_takes_over() {
    let mut b = Running::start(Limits::default()).await;
    let mut first = Client::connect(b.addr, "same").await;
    first.subscribe("x").await;
    let mut second = Client::connect(b.addr, "same").await;
    assert_eq!(b.next_ended().await, ("same".into(), Ended::TakenOver));
    // The first connection is closed; the second serves the id.
    loop {
        if let Event::Outgoing(Outgoing::Disconnect) = first.next().await {
            break;
        }
    }
    second.subscribe("y").await;
    let publisher = Client::connect(b.addr, "pub").await;
    publisher.publish_numbered("y", 1).await;
    assert_eq!(second.receive(1).await, numbered(1));
}

#[tokio::test]
async fn a_will_is_published_when_a_connection_is_lost_not_when_it_says_goodbye() {
    let mut b = Running::start(Limits::default()).await;
    let mut watcher = Client::connect(b.addr, "watcher").await;
    watcher.subscribe("wills/#").await;
    let addr = b.addr;
    let with_will = |id: &str| {
        let mut o = options(addr, id);
        o.set_last_will(rumqttc::LastWill::new(
            format!("wills/{id}"),
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
        o
    };
    let polite = Client::connect_with(with_will("polite"), watch::channel(true).1).await;
    polite.client.disconnect().await.unwrap();
    assert_eq!(b.next_ended().await, ("polite".into(), Ended::Graceful));
    let lost = Client::connect_with(with_will("lost"), watch::channel(true).1).await;
    lost.task.abort();
    assert_eq!(b.next_ended().await, ("lost".into(), Ended::Lost));
    match watcher.next().await {
        Event::Incoming(Packet::Publish(p)) => {
            assert_eq!(
                (p.topic.as_str(), &p.payload[..]),
                ("wills/lost", &b"gone"[..])
            )
        }
        other => panic!("expected the lost client's Will, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_after_one_and_a_half_keep_alives() {
    let mut b = Running::start(Limits::default()).await;
    let mut socket = TcpStream::connect(b.addr).await.unwrap();
    // CONNECT, MQTT 3.1.1, clean session, keep-alive 1 s, client id "k".
    socket
        .write_all(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x01\x00\x01k")
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    let closed = tokio::time::timeout(WAIT, socket.read(&mut [0u8; 1])).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert_eq!(b.next_ended().await, ("k".into(), Ended::Lost));
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let mut b = Running::start(Limits::default()).await;
    // A wrong password.
    let mut o = options(b.addr, "intruder");
    o.set_credentials("user", "wrong");
    let (_client, mut eventloop) = AsyncClient::new(o, 10);
    let refused = tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap();
    assert!(
        matches!(
            refused,
            Err(rumqttc::ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::BadUserNamePassword
            ))
        ),
        "{refused:?}"
    );
    // Filters: refused by the hooks, and malformed (sent raw: client
    // libraries refuse to).
    let mut sub = Client::connect(b.addr, "sub").await;
    assert_eq!(
        sub.subscribe("forbidden/x").await,
        [rumqttc::SubscribeReasonCode::Failure]
    );
    let mut raw = raw_connect(b.addr, b"r").await;
    for filter in [&b"a/#/b"[..], b"a+"] {
        assert_eq!(raw_subscribe(&mut raw, filter).await, 0x80, "{filter:?}");
    }
    sub.subscribe("#").await;
    // A refused publish is acknowledged (3.1.1 has no way to say no) and
    // reaches no one: the next message is the one after it.
    let mut publisher = Client::connect(b.addr, "pub").await;
    publisher.publish_numbered("forbidden/x", 1).await;
    publisher.publish_numbered("fine", 1).await;
    publisher.acknowledged(2).await;
    assert_eq!(sub.receive(1).await, numbered(1));
    // A publish to a wildcard topic is a protocol error: the connection
    // ends.
    raw.write_all(b"\x30\x05\x00\x03a/+").await.unwrap();
    let closed = tokio::time::timeout(WAIT, raw.read(&mut [0u8; 1])).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert_eq!(b.next_ended().await, ("r".into(), Ended::Lost));
}

fn persistent(addr: SocketAddr, id: &str) -> MqttOptions {
    let mut o = options(addr, id);
    o.set_clean_session(false);
    o
}

#[tokio::test]
async fn a_persistent_session_keeps_its_subscriptions_and_messages_while_away() {
    let mut b = Running::start(Limits::default()).await;
    let open = || watch::channel(true).1;
    let mut phone = Client::connect_with(persistent(b.addr, "phone"), open()).await;
    assert!(!phone.session_present);
    phone.subscribe("invites/#").await;
    phone.client.disconnect().await.unwrap();
    assert_eq!(b.next_ended().await, ("phone".into(), Ended::Graceful));
    let mut caller = Client::connect(b.addr, "caller").await;
    caller.publish_numbered("invites/1", 5).await;
    caller.acknowledged(5).await;
    let mut phone = Client::connect_with(persistent(b.addr, "phone"), open()).await;
    assert!(phone.session_present);
    assert_eq!(phone.receive(5).await, numbered(5));
    // A clean start ends it: nothing is kept for it any more.
    phone.task.abort();
    assert_eq!(b.next_ended().await, ("phone".into(), Ended::Lost));
    let mut clean = Client::connect(b.addr, "phone").await;
    assert!(!clean.session_present);
    clean.subscribe("barrier").await;
    caller.publish_numbered("invites/1", 1).await;
    caller
        .client
        .publish("barrier", QoS::AtLeastOnce, false, "b")
        .await
        .unwrap();
    assert_eq!(clean.receive(1).await, [b"b".to_vec()]);
}

#[tokio::test]
async fn messages_not_acknowledged_are_sent_again_flagged_dup() {
    let b = Running::start(Limits::default()).await;
    let connect = b"\x10\x0d\x00\x04MQTT\x04\x00\x00\x3c\x00\x01d";
    let mut raw = TcpStream::connect(b.addr).await.unwrap();
    raw.write_all(connect).await.unwrap();
    let mut connack = [0u8; 4];
    raw.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    assert_eq!(raw_subscribe(&mut raw, b"t").await, 1);
    let mut publisher = Client::connect(b.addr, "pub").await;
    publisher.publish_numbered("t", 3).await;
    publisher.acknowledged(3).await;
    // Each PUBLISH: QoS 1, topic "t", packet id, payload "0".."2".
    let mut first = [0u8; 3 * 8];
    raw.read_exact(&mut first).await.unwrap();
    drop(raw);
    let mut raw = TcpStream::connect(b.addr).await.unwrap();
    raw.write_all(connect).await.unwrap();
    raw.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 1, 0], "the session is present");
    let mut again = [0u8; 3 * 8];
    raw.read_exact(&mut again).await.unwrap();
    for (sent, resent) in first.chunks(8).zip(again.chunks(8)) {
        assert_eq!(sent[0], 0x32);
        assert_eq!(resent[0], 0x3a, "DUP set");
        assert_eq!(sent[1..], resent[1..], "the same packet id and message");
    }
}

#[tokio::test]
async fn subscriptions_are_ended_for_the_clients_a_rule_now_refuses() {
    let b = Running::start(Limits::default()).await;
    let mut kept = Client::connect(b.addr, "kept").await;
    let mut cut = Client::connect(b.addr, "cut").await;
    kept.subscribe("users/x/+").await;
    cut.subscribe("users/x/+").await;
    cut.subscribe("barrier").await;
    let ended = b
        .broker
        .unsubscribe_where("users/x/+", |client| client != "cut");
    assert_eq!(ended, ["cut"]);
    let publisher = Client::connect(b.addr, "pub").await;
    publisher.publish_numbered("users/x/info", 1).await;
    publisher
        .client
        .publish("barrier", QoS::AtLeastOnce, false, "b")
        .await
        .unwrap();
    assert_eq!(kept.receive(1).await, numbered(1));
    assert_eq!(cut.receive(1).await, [b"b".to_vec()]);
}

/// The embedder closes a client's connection made before another one
/// (on another node), as a newer one would: it ends as taken over.
#[tokio::test]
async fn the_embedder_takes_an_older_connection_over() {
    let mut b = Running::start(Limits::default()).await;
    let before = std::time::SystemTime::now();
    let _phone = Client::connect(b.addr, "phone").await;
    assert_eq!(b.next_connected().await.0, "phone");
    let after = std::time::SystemTime::now();
    assert!(!b.broker.take_over("nobody", after));
    assert!(!b.broker.take_over("phone", before), "newer than that");
    assert!(b.broker.take_over("phone", after));
    let ended = b.next_ended().await;
    assert_eq!(ended, ("phone".to_string(), Ended::TakenOver));
    assert!(!b.broker.take_over("phone", after), "closed already");
}

/// The embedder hears when a filter is first held on this broker and
/// when its last holder lets go, however it lets go; and it may hold a
/// SUBACK back until then.
#[tokio::test]
async fn the_embedder_learns_which_filters_are_held() {
    let mut b = Running::start(Limits::default()).await;
    let taken = |b: &Running| std::mem::take(&mut *b.broker.hooks().interest.lock().unwrap());
    let held = |f: &str| (f.to_string(), true);
    let let_go = |f: &str| (f.to_string(), false);
    let granted = held("granted");
    let mut one = Client::connect(b.addr, "one").await;
    let mut two = Client::connect(b.addr, "two").await;
    one.subscribe("a/+").await;
    assert_eq!(
        taken(&b),
        [held("a/+"), granted.clone()],
        "before the SUBACK"
    );
    two.subscribe("a/+").await;
    assert_eq!(taken(&b), std::slice::from_ref(&granted), "held already");
    one.subscribe("a/+").await;
    assert_eq!(taken(&b), [], "the same subscription again");
    one.subscribe("forbidden/x").await;
    assert_eq!(taken(&b), [], "refused");
    one.client.unsubscribe("a/+").await.unwrap();
    while !matches!(one.next().await, Event::Incoming(Packet::UnsubAck(_))) {}
    assert_eq!(taken(&b), [], "two holds it still");
    let cut = b.broker.unsubscribe_where("a/+", |_| false);
    assert_eq!(cut, ["two"]);
    assert_eq!(taken(&b), [let_go("a/+")]);
    two.subscribe("$share/g/b/#").await;
    one.subscribe("b/#").await;
    assert_eq!(
        taken(&b),
        [held("b/#"), granted.clone(), held("b/#"), granted]
    );
    one.client.disconnect().await.unwrap();
    assert_eq!(b.next_ended().await.0, "one");
    assert_eq!(taken(&b), [let_go("b/#")], "its session ended");
    two.task.abort();
    assert_eq!(b.next_ended().await.0, "two");
    assert_eq!(taken(&b), [let_go("b/#")]);
}

/// The next `n` messages delivered: topic, payload, RETAIN flag.
async fn retained(c: &mut Client, n: usize) -> Vec<(String, Vec<u8>, bool)> {
    let mut got = Vec::new();
    while got.len() < n {
        if let Event::Incoming(Packet::Publish(p)) = c.next().await {
            got.push((p.topic, p.payload.to_vec(), p.retain));
        }
    }
    got.sort();
    got
}

#[tokio::test]
async fn retained_messages_reach_later_subscribers_until_cleared() {
    let b = Running::start(Limits::default()).await;
    let mut publisher = Client::connect(b.addr, "pub").await;
    for (topic, payload) in [("r/1", "one"), ("r/2", "two"), ("other", "x")] {
        publisher
            .client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }
    publisher.acknowledged(3).await;
    let mut later = Client::connect(b.addr, "later").await;
    later.subscribe("r/+").await;
    let want = |t: &str, p: &str| (t.to_string(), p.as_bytes().to_vec(), true);
    assert_eq!(
        retained(&mut later, 2).await,
        [want("r/1", "one"), want("r/2", "two")]
    );
    // An empty retained message clears the topic (and reaches those
    // subscribed, as any message).
    publisher
        .client
        .publish("r/1", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    publisher.acknowledged(4).await;
    let mut last = Client::connect(b.addr, "last").await;
    last.subscribe("r/#").await;
    assert_eq!(retained(&mut last, 1).await, [want("r/2", "two")]);
}

#[tokio::test]
async fn topics_the_embedder_serves_get_its_current_value_not_a_stored_one() {
    let b = Running::start(Limits::default()).await;
    let mut publisher = Client::connect(b.addr, "pub").await;
    publisher
        .client
        .publish("served/x", QoS::AtLeastOnce, true, "old")
        .await
        .unwrap();
    publisher.acknowledged(1).await;
    let mut sub = Client::connect(b.addr, "sub").await;
    sub.subscribe("barrier").await;
    sub.subscribe("served/x").await;
    publisher
        .client
        .publish("barrier", QoS::AtLeastOnce, false, "b")
        .await
        .unwrap();
    let got = retained(&mut sub, 2).await;
    assert_eq!(
        got,
        [
            ("barrier".into(), b"b".to_vec(), false),
            ("served/x".into(), b"current".to_vec(), true),
        ]
    );
}

#[tokio::test]
async fn the_embedder_closes_a_connection_and_stops_the_broker() {
    let mut b = Running::start(Limits::default()).await;
    let mut expired = Client::connect(b.addr, "expired").await;
    let (client, connection) = b.next_connected().await;
    assert_eq!(client, "expired");
    assert!(!b.broker.close(
        "expired",
        connection + 1,
        switchboard_broker::Closing::NotAuthorized
    ));
    assert!(b.broker.close(
        "expired",
        connection,
        switchboard_broker::Closing::NotAuthorized
    ));
    assert_eq!(b.next_ended().await, ("expired".into(), Ended::Lost));
    loop {
        if let Event::Outgoing(Outgoing::Disconnect) = expired.next().await {
            break;
        }
    }
    let _one = Client::connect(b.addr, "one").await;
    let _two = Client::connect(b.addr, "two").await;
    b.broker.stop().await;
    // Both ended before `stop` returned.
    let mut ended: Vec<_> = std::iter::from_fn(|| b.ended.try_recv().ok()).collect();
    ended.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        ended,
        [("one".into(), Ended::Lost), ("two".into(), Ended::Lost)]
    );
    let refused = TcpStream::connect(b.addr).await;
    assert!(refused.is_err(), "no longer accepting");
}

#[tokio::test]
async fn websocket_clients_and_tcp_clients_talk() {
    let b = Running::start(Limits::default()).await;
    let mut o = MqttOptions::new(
        "browser",
        format!("ws://{}/mqtt", b.ws_addr),
        b.ws_addr.port(),
    );
    o.set_transport(rumqttc::Transport::Ws);
    let mut browser = Client::connect_with(o, watch::channel(true).1).await;
    browser.subscribe("to/browser").await;
    let mut phone = Client::connect(b.addr, "phone").await;
    phone.subscribe("to/phone").await;
    phone.publish_numbered("to/browser", 20).await;
    browser.publish_numbered("to/phone", 20).await;
    assert_eq!(browser.receive(20).await, numbered(20));
    assert_eq!(phone.receive(20).await, numbered(20));
}

#[tokio::test]
async fn a_shared_subscription_gives_each_message_to_one_member_in_turn() {
    let b = Running::start(Limits::default()).await;
    let mut one = Client::connect(b.addr, "one").await;
    let mut two = Client::connect(b.addr, "two").await;
    let mut plain = Client::connect(b.addr, "plain").await;
    one.subscribe("$share/workers/jobs/+").await;
    two.subscribe("$share/workers/jobs/+").await;
    plain.subscribe("jobs/+").await;
    let publisher = Client::connect(b.addr, "pub").await;
    publisher.publish_numbered("jobs/a", 4).await;
    assert_eq!(plain.receive(4).await, numbered(4));
    let (got_one, got_two) = tokio::join!(one.receive(2), two.receive(2));
    let mut all = [got_one, got_two].concat();
    all.sort();
    assert_eq!(all, numbered(4), "each message to exactly one member");
}

/// An MQTT 5 client (rumqttc), its events on a channel.
async fn v5_client(
    options: rumqttc::v5::MqttOptions,
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
    tokio::task::JoinHandle<()>,
) {
    use rumqttc::v5::{mqttbytes::v5::Packet as P5, Event as E5};
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 100);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let E5::Incoming(p) = event {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    loop {
        let p = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let P5::ConnAck(_) = p {
            return (client, rx, task);
        }
    }
}

/// The next PUBLISH: topic (as sent, maybe empty), topic alias, payload.
async fn next_v5_publish(
    rx: &mut mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
) -> (String, Option<u16>, Vec<u8>) {
    loop {
        let p = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let rumqttc::v5::mqttbytes::v5::Packet::Publish(p) = p {
            let alias = p.properties.and_then(|pp| pp.topic_alias);
            let topic = String::from_utf8(p.topic.to_vec()).unwrap();
            return (topic, alias, p.payload.to_vec());
        }
    }
}

#[tokio::test]
async fn a_delayed_will_is_published_after_its_delay() {
    use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties};
    let mut b = Running::start(Limits::default()).await;
    let mut watcher = Client::connect(b.addr, "watcher").await;
    watcher.subscribe("wills/#").await;
    let mut o = rumqttc::v5::MqttOptions::new("late", "127.0.0.1", b.addr.port());
    let properties = LastWillProperties {
        delay_interval: Some(1),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
    };
    let will = LastWill::new(
        "wills/late",
        "gone",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        Some(properties),
    );
    o.set_last_will(will);
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(60));
    let (_client, _rx, task) = v5_client(o).await;
    task.abort();
    assert_eq!(b.next_ended().await, ("late".into(), Ended::Lost));
    assert_eq!(watcher.receive(1).await, [b"gone".to_vec()]);
}

#[tokio::test]
async fn topic_aliases_stand_for_topics_toward_an_mqtt5_client() {
    let b = Running::start(Limits {
        max_topic_aliases: 4,
        ..Limits::default()
    })
    .await;
    let mut o = rumqttc::v5::MqttOptions::new("aliased", "127.0.0.1", b.addr.port());
    o.set_topic_alias_max(Some(1));
    let (client, mut rx, _task) = v5_client(o).await;
    client
        .subscribe("a/+", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        let p = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let rumqttc::v5::mqttbytes::v5::Packet::SubAck(_) = p {
            break;
        }
    }
    let publisher = Client::connect(b.addr, "pub").await;
    for topic in ["a/x", "a/x", "a/y", "a/y"] {
        publisher
            .client
            .publish(topic, QoS::AtLeastOnce, false, topic)
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_v5_publish(&mut rx).await);
    }
    let want = [
        ("a/x", Some(1), "a/x"),
        ("", Some(1), "a/x"),
        // The client takes one alias: a/y goes in full.
        ("a/y", None, "a/y"),
        ("a/y", None, "a/y"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(t, a, p)| (t.to_string(), *a, p.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn qos_2_is_delivered_once_at_qos_2_with_each_subscriptions_identifier() {
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, SubscribeProperties};
    use rumqttc::v5::mqttbytes::QoS as Q5;
    let b = Running::start(Limits::default()).await;
    let o = rumqttc::v5::MqttOptions::new("ids", "127.0.0.1", b.addr.port());
    let (client, mut rx, _task) = v5_client(o).await;
    for (filter, id) in [("q/+", 7), ("q/#", 9)] {
        let properties = SubscribeProperties {
            id: Some(id),
            user_properties: Vec::new(),
        };
        client
            .subscribe_with_properties(filter, Q5::ExactlyOnce, properties)
            .await
            .unwrap();
    }
    let publisher = Client::connect(b.addr, "pub").await;
    publisher
        .client
        .publish("q/x", QoS::ExactlyOnce, false, "once")
        .await
        .unwrap();
    publisher
        .client
        .publish("q/end", QoS::AtLeastOnce, false, "end")
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let p = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let P5::Publish(p) = p {
            let mut ids = p
                .properties
                .map(|pp| pp.subscription_identifiers)
                .unwrap_or_default();
            ids.sort();
            got.push((p.payload.to_vec(), p.qos, ids));
        }
    }
    assert_eq!(
        got,
        [
            (b"once".to_vec(), Q5::ExactlyOnce, vec![7, 9]),
            (b"end".to_vec(), Q5::AtLeastOnce, vec![7, 9]),
        ]
    );
}

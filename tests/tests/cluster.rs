//! Several nodes as one service: a real nats-server, one PostgreSQL
//! database, nodes started from the real binary. What each test shows
//! crossing nodes is named in its name; docs/scaling.md says what does not
//! cross yet.

use serde_json::{json, Value};
use std::time::Duration;
use switchboard_e2e::api::SignedIn;

use switchboard_e2e::calls::{self, Device};
use switchboard_e2e::cluster::Cluster;
use switchboard_e2e::media::MediaPeer;
use switchboard_e2e::mqtt::{granted, Client, Incoming, REFUSED};
use switchboard_e2e::robots;
use switchboard_e2e::{random_id, Server};

const NEWS: &str = "switchboard_graph_news_total";

/// The nickname in the next profile on `topic`, skipping other messages.
async fn next_nickname(c: &mut Client, topic: &str) -> Value {
    loop {
        if let Incoming::Publish {
            topic: t, payload, ..
        } = c.next().await.unwrap()
        {
            if t == topic {
                let profile: Value = serde_json::from_slice(&payload).unwrap();
                return profile["nickname"].clone();
            }
        }
    }
}

/// A on node 0, shared with B and a watcher on node 1, who subscribe to
/// A's profile (B to its errors too).
struct Watching {
    c: Cluster,
    a: SignedIn,
    b: SignedIn,
    a_info: String,
    b_mqtt: Client,
    w_mqtt: Client,
}

async fn watching(phones: [&str; 3]) -> Watching {
    let c = Cluster::start(2).await;
    let (n0, n1) = (&c.nodes[0], &c.nodes[1]);
    let a = c.user(0, phones[0]).await;
    let b = c.user(1, phones[1]).await;
    let watcher = c.user(1, phones[2]).await;
    let r = n0.api.set_contacts(&a.access, &[&b.id, &watcher.id]).await;
    assert_eq!(r.unwrap().status, 200);
    // Node 1 read A's rows again before anyone there asks to see A.
    n1.server.metric_reaches(NEWS, 1.0).await;
    let a_info = format!("users/{}/info", a.id);
    let mut b_mqtt = n1.server.mqtt_as(&b).await;
    let mut w_mqtt = n1.server.mqtt_as(&watcher).await;
    assert!(granted(&b_mqtt.subscribe(&b.errors_topic()).await.unwrap()));
    assert!(granted(&b_mqtt.subscribe(&a_info).await.unwrap()));
    assert!(granted(&w_mqtt.subscribe(&a_info).await.unwrap()));
    Watching {
        c,
        a,
        b,
        a_info,
        b_mqtt,
        w_mqtt,
    }
}

/// A on node 0 is watched by B and C on node 1. A's profile, changed over
/// HTTP (the server publishes it) and over MQTT (a client's message),
/// reaches them; A's block of B, made on node 0, cuts B's subscription
/// held on node 1, B is told, and nothing more of A's reaches B.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn profiles_and_who_sees_whom_cross_nodes() {
    let phones = ["+48555400001", "+48555400002", "+48555400003"];
    let Watching {
        c,
        a,
        b,
        a_info,
        mut b_mqtt,
        mut w_mqtt,
    } = watching(phones).await;
    let (n0, n1) = (&c.nodes[0], &c.nodes[1]);

    let r = n0
        .api
        .set_profile(&a.access, json!({"nickname": "over http"}));
    assert_eq!(r.await.unwrap().status, 200);
    assert_eq!(next_nickname(&mut b_mqtt, &a_info).await, "over http");
    let a_mqtt = n0.server.mqtt_as(&a).await;
    let profile = json!({"nickname": "over mqtt"});
    a_mqtt.publish_json(&a_info, &profile).await.unwrap();
    assert_eq!(next_nickname(&mut b_mqtt, &a_info).await, "over mqtt");
    assert_eq!(next_nickname(&mut w_mqtt, &a_info).await, "over http");
    assert_eq!(next_nickname(&mut w_mqtt, &a_info).await, "over mqtt");

    let r = n0.api.set_blocked(&a.access, &[&b.id]).await;
    assert_eq!(r.unwrap().status, 200);
    let report = loop {
        if let Incoming::Publish { topic, payload, .. } = b_mqtt.next().await.unwrap() {
            assert_ne!(topic, a_info, "B got more of A's profile");
            if topic == b.errors_topic() {
                break serde_json::from_slice::<Value>(&payload).unwrap();
            }
        }
    };
    assert_eq!(report["code"], "forbidden", "{report}");
    assert_eq!(report["topic"], a_info, "{report}");
    n1.server.metric_reaches(NEWS, 2.0).await;

    // A changes its profile again: the watcher sees it; B's own change,
    // made after, is the next thing B gets on any profile it watches.
    let profile = json!({"nickname": "after the block"});
    a_mqtt.publish_json(&a_info, &profile).await.unwrap();
    assert_eq!(next_nickname(&mut w_mqtt, &a_info).await, "after the block");
    let b_info = format!("users/{}/info", b.id);
    assert!(granted(&b_mqtt.subscribe(&b_info).await.unwrap()));
    let r = n1
        .api
        .set_profile(&b.access, json!({"nickname": "barrier"}));
    assert_eq!(r.await.unwrap().status, 200);
    loop {
        match b_mqtt.next().await.unwrap() {
            Incoming::Publish { topic, .. } if topic == a_info => panic!("B still got A's profile"),
            Incoming::Publish { topic, payload, .. } if topic == b_info => {
                let p: Value = serde_json::from_slice(&payload).unwrap();
                if p["nickname"] == "barrier" {
                    break;
                }
            }
            _ => {}
        }
    }
    assert!(!granted(&b_mqtt.subscribe(&a_info).await.unwrap()));
}

/// The next error report on `errors`, failing if A's profile comes first.
async fn next_report(c: &mut Client, errors: &str, not: &str) -> Value {
    loop {
        if let Incoming::Publish { topic, payload, .. } = c.next().await.unwrap() {
            assert_ne!(topic, not, "got more of {not}");
            if topic == errors {
                return serde_json::from_slice(&payload).unwrap();
            }
        }
    }
}

/// nats-server dies while A blocks B: the news is lost, and B's
/// subscription on the other node holds until NATS is back. Then every
/// node reads who sees whom again, B is cut off, and messages cross again.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn after_nats_comes_back_the_nodes_read_what_they_missed() {
    let phones = ["+48555400011", "+48555400012", "+48555400013"];
    let Watching {
        mut c,
        a,
        b,
        a_info,
        mut b_mqtt,
        mut w_mqtt,
    } = watching(phones).await;

    c.nats.kill();
    for node in &c.nodes {
        node.server.logs_reach("NATS: disconnected", 1).await;
    }
    let (n0, n1) = (&c.nodes[0], &c.nodes[1]);
    let r = n0.api.set_blocked(&a.access, &[&b.id]).await;
    assert_eq!(r.unwrap().status, 200, "stored, though no node hears of it");
    c.nats.restart().await.unwrap();

    let report = next_report(&mut b_mqtt, &b.errors_topic(), &a_info).await;
    assert_eq!(report["code"], "forbidden", "{report}");
    assert_eq!(report["topic"], a_info, "{report}");
    // Messages cross once both nodes are back (a node drops what it would
    // send while NATS is away).
    for node in [n0, n1] {
        node.server.logs_reach("NATS: connected", 2).await;
    }
    let a_mqtt = n0.server.mqtt_as(&a).await;
    let profile = json!({"nickname": "after NATS came back"});
    a_mqtt.publish_json(&a_info, &profile).await.unwrap();
    assert_eq!(
        next_nickname(&mut w_mqtt, &a_info).await,
        "after NATS came back"
    );
    assert!(!granted(&b_mqtt.subscribe(&a_info).await.unwrap()));
}

/// The same client id connects to node 0, then to node 1: the newer
/// connection wins, and node 0 closes the older one, as one node would.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn the_newest_connection_of_a_client_id_wins_across_nodes() {
    let c = Cluster::start(2).await;
    let a = c.user(0, "+48555400021").await;
    let mut older = c.nodes[0].server.mqtt_as(&a).await;
    assert!(granted(&older.subscribe(&a.errors_topic()).await.unwrap()));
    let mut newer = c.nodes[1].server.mqtt_as(&a).await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while older.recv().await.is_some() {}
    });
    closed.await.expect("node 0 closed the older connection");
    assert!(granted(&newer.subscribe(&a.errors_topic()).await.unwrap()));
    let said = "the client connected to another node";
    c.nodes[0].server.logs_reach(said, 1).await;
}

/// The next presence of `user` `c` gets, skipping other messages; fails
/// on an `isConnected` other than `online_only` when it is given.
async fn next_presence(c: &mut Client, user: &str, online_only: Option<bool>) -> Value {
    let (presence, is_connected) = (
        format!("users/{user}/presence"),
        format!("users/{user}/isConnected"),
    );
    loop {
        // Long enough for a dead node's TTL and a takeover's wait.
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), c.recv()).await;
        let got = got
            .expect("presence in time")
            .expect("the connection is open");
        if let Incoming::Publish { topic, payload, .. } = got {
            if let (true, Some(online)) = (topic == is_connected, online_only) {
                assert_eq!(payload, online.to_string().as_bytes(), "a flap");
            }
            if topic == presence {
                let p: Value = serde_json::from_slice(&payload).unwrap();
                if let Some(online) = online_only {
                    assert_eq!(p["online"], online, "a flap: {p}");
                }
                return p;
            }
        }
    }
}

/// A watcher of A on node 1, A shared with it; the cluster, A, the
/// watcher and its connection.
async fn watched(phones: [&str; 2]) -> (Cluster, SignedIn, SignedIn, Client) {
    let c = Cluster::start(2).await;
    let a = c.user(0, phones[0]).await;
    let w = c.user(1, phones[1]).await;
    let r = c.nodes[0].api.set_contacts(&a.access, &[&w.id]).await;
    assert_eq!(r.unwrap().status, 200);
    c.nodes[1].server.metric_reaches(NEWS, 1.0).await;
    let mut w_mqtt = c.nodes[1].server.mqtt_as(&w).await;
    for leaf in ["presence", "isConnected"] {
        let topic = format!("users/{}/{leaf}", a.id);
        assert!(granted(&w_mqtt.subscribe(&topic).await.unwrap()));
    }
    // Never connected: served offline, seq 0, on both topics.
    let mut served = Vec::new();
    while served.len() < 2 {
        if let Incoming::Publish { topic, payload, .. } = w_mqtt.next().await.unwrap() {
            served.push((topic, serde_json::from_slice::<Value>(&payload).unwrap()));
        }
    }
    served.sort_by(|x, y| x.0.cmp(&y.0));
    let offline = json!({"online": false, "devices": [], "lastSeen": null, "seq": 0});
    let want = [
        (format!("users/{}/isConnected", a.id), json!(false)),
        (format!("users/{}/presence", a.id), offline),
    ];
    assert_eq!(served, want);
    (c, a, w, w_mqtt)
}

/// A's phone on node 0 and tablet on node 1 are one presence: the phone
/// leaving keeps A online, one seq counts every change.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn presence_is_one_over_the_nodes_a_user_is_connected_to() {
    let (c, a, _, mut w) = watched(["+48555400031", "+48555400032"]).await;
    let phone = c.nodes[0].server.mqtt_as(&a).await;
    let p = next_presence(&mut w, &a.id, Some(true)).await;
    assert_eq!((&p["devices"], &p["seq"]), (&json!(["phone"]), &json!(1)));
    let tablet = c.nodes[1].api.sign_in(&c.sms, "+48555400031", "tablet");
    let tablet = tablet.await.unwrap();
    let tablet_mqtt = c.nodes[1].server.mqtt_as(&tablet).await;
    let p = next_presence(&mut w, &a.id, Some(true)).await;
    assert_eq!(
        (&p["devices"], &p["seq"]),
        (&json!(["phone", "tablet"]), &json!(2))
    );
    drop(phone);
    let p = next_presence(&mut w, &a.id, Some(true)).await;
    assert_eq!((&p["devices"], &p["seq"]), (&json!(["tablet"]), &json!(3)));
    tablet_mqtt.disconnect().await.unwrap();
    let p = next_presence(&mut w, &a.id, Some(false)).await;
    assert_eq!((&p["devices"], &p["seq"]), (&json!([]), &json!(4)));
}

/// A's phone moves from node 0 to node 1 with the same client id: the
/// older connection is closed, and the watcher never sees A offline, not
/// even once node 0 stops waiting for the phone to come back there.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn a_device_moving_to_another_node_does_not_flap() {
    let (c, a, _, mut w) = watched(["+48555400041", "+48555400042"]).await;
    let mut older = c.nodes[0].server.mqtt_as(&a).await;
    next_presence(&mut w, &a.id, Some(true)).await;
    let _newer = c.nodes[1].server.mqtt_as(&a).await;
    while older.recv().await.is_some() {}
    // Node 1 adds the phone; node 0, once its wait for the phone ends,
    // removes its own: both changes keep A online.
    for seq in [2, 3] {
        let p = next_presence(&mut w, &a.id, Some(true)).await;
        assert_eq!((&p["devices"], &p["seq"]), (&json!(["phone"]), &json!(seq)));
    }
}

/// Node 0 is killed (SIGKILL) with A's phone on it: A goes offline for
/// the watcher on node 1 once node 0's silence passes its TTL, the call A
/// accepted there (node 0 held it) ends `failed` for the caller, and a
/// call node 1 holds goes on.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn a_killed_nodes_users_go_offline_everywhere() {
    let (mut c, a, w, mut watcher) = watched(["+48555400051", "+48555400052"]).await;
    let r = c.nodes[1].api.set_contacts(&w.access, &[&a.id]).await;
    assert_eq!(r.unwrap().status, 200);
    c.nodes[0].server.metric_reaches(NEWS, 1.0).await;
    let mut phone = Device::new(&c.nodes[0].server, &a, "phone").await;
    next_presence(&mut watcher, &a.id, Some(true)).await;
    let mut caller = Device::new(&c.nodes[1].server, &w, "tablet").await;
    let sid = random_id();
    caller.call(&a.id, &sid).await;
    phone.accepts(&sid).await;
    caller.reaches(&sid, "accepted").await;
    // A call between two users of node 1, held there (node 0 holds one
    // call already): it outlives node 0.
    let (x, y) = (
        c.user(1, "+48555400053").await,
        c.user(1, "+48555400054").await,
    );
    c.nodes[1].api.all_contacts(&[&x, &y]).await.unwrap();
    let (other, _x_mqtt, _y_mqtt) = calls::accepted(&c.nodes[1].server, &x, &y).await.unwrap();

    let node = c.nodes.remove(0);
    node.server.crash().unwrap();
    let p = next_presence(&mut watcher, &a.id, Some(false)).await;
    assert_eq!((&p["devices"], &p["seq"]), (&json!([]), &json!(2)));
    c.nodes[0]
        .server
        .logs_reach("a silent node's devices removed", 1)
        .await;
    assert_eq!(caller.ended(&sid).await["reason"], "failed");
    let path = format!("/v1/calls/{other}");
    let survived = c.nodes[0].api.get(&path, &x.access).await.unwrap();
    assert_eq!(survived.body["state"], "accepted", "{survived:?}");
}

/// How many calls `server` ended for `reason`.
async fn ended_for(server: &Server, reason: &str) -> f64 {
    let line = format!("switchboard_calls_ended_total{{reason=\"{reason}\"}} ");
    let metrics = server.metrics().await;
    (metrics.lines())
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or(0.0)
}

/// A, B and D, contacts of each other, each signed in on a node of three
/// (ring timeout 2 s).
async fn three_callers(phones: [&str; 3]) -> (Cluster, [SignedIn; 3]) {
    let c = Cluster::start_with(3, |_, n| n.env("SWITCHBOARD_RING_TIMEOUT_S", "2")).await;
    let mut users = Vec::new();
    for (node, phone) in phones.iter().enumerate() {
        users.push(c.user(node, phone).await);
    }
    let users: [SignedIn; 3] = users.try_into().unwrap();
    let [a, b, d] = &users;
    c.nodes[0].api.all_contacts(&[a, b, d]).await.unwrap();
    for node in &c.nodes[1..] {
        node.server.metric_reaches(NEWS, 3.0).await;
    }
    (c, users)
}

/// A on node 0 calls B, whose phone is on node 1 and tablet on node 2:
/// both ring, the tablet answers, the phone sees it answered elsewhere;
/// D calling B on node 2 meanwhile finds B busy; A hangs up.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn a_call_crosses_nodes_and_rings_every_device_wherever_it_is() {
    let phones = ["+48555400061", "+48555400062", "+48555400063"];
    let (c, [a, b, d]) = three_callers(phones).await;
    let mut a_phone = Device::new(&c.nodes[0].server, &a, "phone").await;
    let mut b_phone = Device::new(&c.nodes[1].server, &b, "phone").await;
    let mut b_tablet = Device::new(&c.nodes[2].server, &b, "tablet").await;
    let sid = random_id();
    a_phone.call(&b.id, &sid).await;
    for device in [&mut b_phone, &mut b_tablet] {
        assert_eq!(device.invited_to(&sid).await["from"], a.id.as_str());
        device.act(&sid, "ringing").await;
    }
    let both = |v: &Value| v["legs"].as_object().is_some_and(|l| l.len() == 2);
    a_phone.state_until(&sid, both).await;
    b_tablet.act(&sid, "accept").await;
    let accepted = a_phone.reaches(&sid, "accepted").await;
    assert_eq!(accepted["acceptedBy"], format!("{}:tablet", b.id));
    let seen = b_phone.reaches(&sid, "accepted").await;
    assert_eq!(
        seen["legs"][format!("{}:phone", b.id)],
        "answered_elsewhere"
    );

    let mut d_phone = Device::new(&c.nodes[2].server, &d, "phone").await;
    d_phone.invite(&b.id, &random_id()).await;
    let busy = d_phone.error().await;
    assert_eq!(busy["code"], "conflict", "{busy}");

    a_phone.act(&sid, "hangup").await;
    for device in [&mut b_tablet, &mut b_phone, &mut a_phone] {
        assert_eq!(device.ended(&sid).await["reason"], "hangup");
    }
    let mut hung_up = 0.0;
    for node in &c.nodes {
        hung_up += ended_for(&node.server, "hangup").await;
    }
    assert_eq!(hung_up, 1.0, "one node decided the end");
}

async fn next_push(pushes: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    let got = tokio::time::timeout(Duration::from_secs(10), pushes.recv());
    got.await.expect("a push").unwrap()
}

/// A on node 0 calls B, who has no device online but a push token: node 0
/// pushes the ring. B's phone, woken, connects to node 1 and answers:
/// node 1, which decided the answer, pushes the stop.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn the_node_that_ends_the_ringing_pushes_the_stop() {
    let (url, mut pushes) = switchboard_e2e::push::webhook().await;
    let c = Cluster::start_with(2, |_, n| {
        n.env("SWITCHBOARD_PUSH_PROVIDER", "webhook")
            .env("SWITCHBOARD_PUSH_WEBHOOK_URL", url.clone())
    })
    .await;
    let a = c.user(0, "+48555400091").await;
    let b = c.user(1, "+48555400092").await;
    c.nodes[0].api.all_contacts(&[&a, &b]).await.unwrap();
    c.nodes[1].server.metric_reaches(NEWS, 2.0).await;
    let token = json!({"platform": "android", "token": "fcm:b-phone"});
    let r = c.nodes[1]
        .api
        .post("/v1/me/push-tokens", Some(&b.access), token);
    assert_eq!(r.await.unwrap().status, 204);
    let mut a_phone = Device::new(&c.nodes[0].server, &a, "phone").await;
    let sid = random_id();
    a_phone.call(&b.id, &sid).await;
    let ring = next_push(&mut pushes).await;
    assert_eq!(
        (&ring["event"], &ring["sid"]),
        (&json!("ring"), &json!(sid))
    );
    let mut b_phone = Device::new(&c.nodes[1].server, &b, "phone").await;
    b_phone.accepts(&sid).await;
    let stop = next_push(&mut pushes).await;
    assert_eq!(
        (&stop["event"], &stop["reason"], &stop["sid"]),
        (&json!("stop"), &json!("answered"), &json!(sid))
    );
    let sent = "switchboard_push_total{provider=\"webhook\",result=\"sent\"}";
    for node in &c.nodes {
        node.server.counter_reaches(sent, 1.0).await;
    }
}

/// A calls D, who is offline: D's laptop connecting later to another
/// node is shown the invite; unanswered, the call ends `missed` once over
/// the three nodes. Then A and D call each other at once: the call with
/// the smaller id survives, the other ends `busy`.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn deadlines_fire_once_and_glare_resolves_across_nodes() {
    let phones = ["+48555400071", "+48555400072", "+48555400073"];
    let (c, [a, _, d]) = three_callers(phones).await;
    let mut a_phone = Device::new(&c.nodes[0].server, &a, "phone").await;
    let sid = random_id();
    a_phone.call(&d.id, &sid).await;
    let mut laptop = Device::new(&c.nodes[1].server, &d, "laptop").await;
    assert_eq!(laptop.invited_to(&sid).await["sid"], sid.as_str());
    assert_eq!(a_phone.ended(&sid).await["reason"], "missed");
    assert_eq!(laptop.ended(&sid).await["reason"], "missed");
    let mut missed = 0.0;
    for node in &c.nodes {
        missed += ended_for(&node.server, "missed").await;
    }
    assert_eq!(missed, 1.0, "the deadline fired once");

    let mut ids = [random_id(), random_id()];
    ids.sort();
    let [small, big] = ids;
    tokio::join!(a_phone.call(&d.id, &big), laptop.call(&a.id, &small));
    assert_eq!(a_phone.ended(&big).await["reason"], "busy");
    let path = format!("/v1/calls/{small}");
    let survivor = c.nodes[2].api.get(&path, &d.access).await.unwrap();
    assert_eq!(survivor.body["state"], "inviting", "{survivor:?}");
}

/// Media between A's phone on node 0 and B's on node 1 flows through a
/// relay on node 2: nodes 0 and 1 each hold a call already, so the node
/// that commits B's accept (node 1) places the room on node 2, the least
/// loaded, and names it in the state. The devices' signalling travels to
/// node 2 and its answers back; the packets go through node 2's relay
/// (bound to 127.0.0.3).
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn media_flows_through_a_relay_on_a_third_node() {
    let c = Cluster::start_with(3, |i, n| {
        n.env("SWITCHBOARD_RELAY_BIND_IP", format!("127.0.0.{}", i + 1))
    })
    .await;
    let phones = (1..=6).map(|i| format!("+4855540008{i}"));
    let mut users = Vec::new();
    for (i, phone) in phones.enumerate() {
        users.push(c.user(i % 2, &phone).await);
    }
    let [a, b, x0, y0, x1, y1] = &users[..] else {
        unreachable!()
    };
    for pair in [[a, b], [x0, y0], [x1, y1]] {
        c.nodes[0].api.all_contacts(&pair).await.unwrap();
    }
    for node in &c.nodes[1..] {
        node.server.metric_reaches(NEWS, 6.0).await;
    }
    let rooms = "switchboard_relay_rooms";
    let _held0 = calls::accepted(&c.nodes[0].server, x0, y0).await.unwrap();
    c.nodes[0].server.metric_reaches(rooms, 1.0).await;
    let _held1 = calls::accepted(&c.nodes[1].server, x1, y1).await.unwrap();
    c.nodes[1].server.metric_reaches(rooms, 1.0).await;

    let mut a_phone = Device::new(&c.nodes[0].server, a, "phone").await;
    let mut b_phone = Device::new(&c.nodes[1].server, b, "phone").await;
    let sid = random_id();
    a_phone.call(&b.id, &sid).await;
    b_phone.accepts(&sid).await;
    let state = a_phone.reaches(&sid, "accepted").await;
    let relay = state["relay"].as_str().unwrap_or_default().to_string();
    assert!(
        !relay.is_empty(),
        "the state names the relay's node: {state}"
    );
    c.nodes[2].server.metric_reaches(rooms, 1.0).await;
    for node in &c.nodes[..2] {
        assert_eq!(node.server.metric(rooms).await, 1.0, "their own call only");
    }

    let mut peers = Vec::new();
    for device in [a_phone, b_phone] {
        let client_id = device.who.client_id.clone();
        let mut peer = MediaPeer::join(device.mqtt, &sid, &client_id, Default::default())
            .await
            .unwrap();
        peer.connected().await.unwrap();
        peers.push(peer);
    }
    let gap = Duration::from_millis(2);
    peers[0].send_numbered(0..250, gap).await.unwrap();
    peers[1].received_any().await.unwrap();
    peers[1].send_numbered(0..250, gap).await.unwrap();
    peers[0].received_any().await.unwrap();
    assert_eq!((peers[0].errors(), peers[1].errors()), (vec![], vec![]));
    let forwarded = "switchboard_relay_forwarded_packets_total";
    assert!(c.nodes[2].server.metric(forwarded).await > 0.0);
    for node in &c.nodes[..2] {
        assert_eq!(node.server.metric(forwarded).await, 0.0, "no media here");
    }
    for peer in peers {
        peer.close().await;
    }
}

/// A robot on node 2 offers a code it got from node 2's API; its owner on
/// node 0 looks it up (served the robot's id from the store) and claims
/// it, and both hear it paired. The owner calls the robot, which accepts
/// on node 2, so node 2 holds the call: the owner's requests go there to
/// be checked and published; the robot answers, a request id still open
/// is refused to the owner, and a request left unanswered is answered
/// `timed_out`.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn a_robot_on_another_node_is_paired_and_commanded_with_answers_and_timeouts() {
    let c = Cluster::start_with(3, |_, n| n.env("SWITCHBOARD_COMMAND_TIMEOUT_S", "2")).await;
    let (n0, n2) = (&c.nodes[0], &c.nodes[2]);
    let owner = c.user(0, "+48555400091").await;
    let bot = robots::robot(&n2.api).await;
    let mut bot_mqtt = n2.server.mqtt_as(&bot).await;
    let mut owner_mqtt = n0.server.mqtt_as(&owner).await;
    let code = robots::offer(&n2.api, &bot, &mut bot_mqtt).await;
    assert_eq!(robots::pair(&owner, &mut owner_mqtt, &code).await, bot.id);
    let status = format!("pairing/{code}/status");
    for client in [&mut owner_mqtt, &mut bot_mqtt] {
        assert_eq!(robots::next_json(client, &status).await["status"], "paired");
    }
    n2.server.metric_reaches(NEWS, 1.0).await;
    let mut paired = robots::Paired {
        owner: owner.clone(),
        owner_mqtt,
        bot,
        bot_mqtt,
    };
    let errors = owner.errors_topic();
    assert!(granted(
        &paired.owner_mqtt.subscribe(&errors).await.unwrap()
    ));
    let sid = paired.call().await;
    let robots::Paired {
        mut owner_mqtt,
        mut bot_mqtt,
        ..
    } = paired;
    let (request, response) = robots::follow_commands(&mut owner_mqtt, &mut bot_mqtt, &sid).await;
    let ask = |id: &str| json!({"requestId": id, "destination": "kitchen"});

    owner_mqtt.publish_json(&request, &ask("r1")).await.unwrap();
    assert_eq!(robots::next_json(&mut bot_mqtt, &request).await, ask("r1"));
    let done = json!({"requestId": "r1", "status": "arrived"});
    bot_mqtt.publish_json(&response, &done).await.unwrap();
    assert_eq!(robots::next_json(&mut owner_mqtt, &response).await, done);

    owner_mqtt.publish_json(&request, &ask("r2")).await.unwrap();
    robots::next_json(&mut bot_mqtt, &request).await;
    owner_mqtt.publish_json(&request, &ask("r2")).await.unwrap();
    let refused = robots::next_json(&mut owner_mqtt, &errors).await;
    assert_eq!(refused["code"], "conflict", "{refused}");
    assert_eq!(
        robots::next_json(&mut owner_mqtt, &response).await,
        json!({"requestId": "r2", "status": "timed_out"})
    );
}

/// A user's budgets are the same with three nodes as with one: 30 profile
/// changes a minute spread over the nodes leave none for a 31st on any
/// node, and five wrong pairing codes typed on different nodes leave no
/// sixth look-up.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn a_users_limits_are_counted_over_every_node() {
    let c = Cluster::start(3).await;
    let a = c.user(0, "+48555400101").await;
    for n in 0..30 {
        let node = &c.nodes[n % 3];
        let r = node
            .api
            .set_profile(&a.access, json!({"nickname": format!("a{n}")}));
        assert_eq!(r.await.unwrap().status, 200, "change {n}");
    }
    for node in &c.nodes {
        let r = node.api.set_profile(&a.access, json!({"nickname": "more"}));
        assert_eq!(r.await.unwrap().status, 429);
    }

    for n in 0..5 {
        let mut mqtt = c.nodes[n % 3].server.mqtt_as(&a).await;
        let wrong = format!("{:06}", 900_000 + n);
        assert_eq!(
            robots::look_up(&mut mqtt, &wrong).await,
            REFUSED,
            "miss {n}"
        );
    }
    let bot = robots::robot(&c.nodes[2].api).await;
    let mut bot_mqtt = c.nodes[2].server.mqtt_as(&bot).await;
    let code = robots::offer(&c.nodes[2].api, &bot, &mut bot_mqtt).await;
    let mut mqtt = c.nodes[1].server.mqtt_as(&a).await;
    assert_eq!(
        robots::look_up(&mut mqtt, &code).await,
        REFUSED,
        "out of tries, even for a live code"
    );
}

//! Several nodes as one service: a real nats-server, one PostgreSQL
//! database, nodes started from the real binary. What each test shows
//! crossing nodes is named in its name; docs/scaling.md says what does not
//! cross yet.

use serde_json::{json, Value};
use switchboard_e2e::cluster::Cluster;
use switchboard_e2e::mqtt::{granted, Client, Incoming};

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

/// A on node 0 is watched by B and C on node 1. A's profile, changed over
/// HTTP (the server publishes it) and over MQTT (a client's message),
/// reaches them; A's block of B, made on node 0, cuts B's subscription
/// held on node 1, B is told, and nothing more of A's reaches B.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and nats-server; scripts/test runs it"]
async fn profiles_and_who_sees_whom_cross_nodes() {
    let c = Cluster::start(2).await;
    let (n0, n1) = (&c.nodes[0], &c.nodes[1]);
    let a = c.user(0, "+48555400001").await;
    let b = c.user(1, "+48555400002").await;
    let watcher = c.user(1, "+48555400003").await;
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
    let mut c = Cluster::start(2).await;
    let a = c.user(0, "+48555400011").await;
    let b = c.user(1, "+48555400012").await;
    let watcher = c.user(1, "+48555400013").await;
    let (n0, n1) = (&c.nodes[0], &c.nodes[1]);
    let r = n0.api.set_contacts(&a.access, &[&b.id, &watcher.id]).await;
    assert_eq!(r.unwrap().status, 200);
    n1.server.metric_reaches(NEWS, 1.0).await;
    let a_info = format!("users/{}/info", a.id);
    let mut b_mqtt = n1.server.mqtt_as(&b).await;
    let mut w_mqtt = n1.server.mqtt_as(&watcher).await;
    assert!(granted(&b_mqtt.subscribe(&b.errors_topic()).await.unwrap()));
    assert!(granted(&b_mqtt.subscribe(&a_info).await.unwrap()));
    assert!(granted(&w_mqtt.subscribe(&a_info).await.unwrap()));

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

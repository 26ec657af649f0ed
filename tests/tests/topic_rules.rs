//! The denial matrix from outside: real MQTT clients (rumqttc 3.1.1 and 5,
//! mosquitto_sub) against the real binary. Every refused case is refused
//! with the right code and reported; every allowed case works.

use rumqttc::ConnectReturnCode;
use serde_json::{json, Value};
use switchboard_e2e::api::{Api, SignedIn};
use switchboard_e2e::mqtt::{
    connect_with_will, granted, Client, Incoming, PubAckReason, Refused, V5Client, V5SubCode, Via,
    REFUSED,
};
use switchboard_e2e::{Backend, Database, Server};

struct World {
    server: Server,
    api: Api,
    me: SignedIn,
    friend: SignedIn,
    stranger: SignedIn,
}

/// Three users: `friend` lists `me` as a contact (so `me` may see the
/// friend); `stranger` shares nothing.
async fn world() -> World {
    let backend = Backend::start().await;
    let me = backend.user("+48555100001").await;
    let friend = backend.user("+48555100002").await;
    let stranger = backend.user("+48555100003").await;
    let r = backend
        .api
        .set_contacts(&friend.access, &[&me.id])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let Backend { server, api, .. } = backend;
    World {
        server,
        api,
        me,
        friend,
        stranger,
    }
}

fn refused_filters(w: &World) -> Vec<String> {
    let (me, friend, stranger) = (&w.me.id, &w.friend.id, &w.stranger.id);
    vec![
        "#".into(),
        "+/+/+".into(),
        "$SYS/#".into(),
        "users/+/info".into(),
        "users/+/isConnected".into(),
        "users/#".into(),
        "invite/+/+".into(),
        "invite/#".into(),
        "pairing/+/robotID".into(),
        "pairing/#".into(),
        "session/+/state".into(),
        "session/#".into(),
        "clients/+/errors".into(),
        format!("users/{stranger}/info"),
        format!("users/{stranger}/isConnected"),
        format!("users/{stranger}/#"),
        format!("invite/{friend}/+"),
        format!("clients/{}/errors", w.friend.client_id),
        format!("clients/{me}/errors"),
        "no/such/topic".into(),
    ]
}

fn allowed_filters(w: &World) -> Vec<String> {
    let (me, friend) = (&w.me.id, &w.friend.id);
    vec![
        format!("users/{me}/info"),
        format!("users/{me}/#"),
        format!("users/{friend}/info"),
        format!("users/{friend}/isConnected"),
        format!("users/{friend}/presence"),
        format!("users/{friend}/+"),
        format!("invite/{me}/+"),
        format!("clients/{}/errors", w.me.client_id),
    ]
}

#[tokio::test]
async fn subscriptions_follow_the_rule_table() {
    let w = world().await;
    let mut mine = w.server.mqtt_as(&w.me).await;
    for filter in refused_filters(&w) {
        assert_eq!(
            mine.subscribe(&filter).await.unwrap(),
            REFUSED,
            "3.1.1 {filter}"
        );
    }
    for filter in allowed_filters(&w) {
        let got = mine.subscribe(&filter).await.unwrap();
        assert!(granted(&got), "3.1.1 {filter}: {got:?}");
    }

    let login = w.me.login();
    let mut v5 = V5Client::connect(w.server.mqtt, login).await.unwrap();
    for filter in refused_filters(&w) {
        assert_eq!(
            v5.subscribe(&filter).await.unwrap(),
            vec![V5SubCode::NotAuthorized],
            "5 {filter}"
        );
    }
    for filter in allowed_filters(&w) {
        let got = v5.subscribe(&filter).await.unwrap();
        assert!(
            matches!(got[..], [V5SubCode::Success(_)]),
            "5 {filter}: {got:?}"
        );
    }
}

#[tokio::test]
async fn visibility_changes_apply_to_new_subscriptions() {
    let w = world().await;
    let mut mine = w.server.mqtt_as(&w.me).await;
    let filter = format!("users/{}/info", w.stranger.id);
    assert_eq!(mine.subscribe(&filter).await.unwrap(), REFUSED);
    let r = w
        .api
        .set_visibility(&w.stranger.access, "everyone")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(granted(&mine.subscribe(&filter).await.unwrap()));
    // A block beats everything.
    let r = w
        .api
        .set_blocked(&w.stranger.access, &[&w.me.id])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(mine.subscribe(&filter).await.unwrap(), REFUSED);
}

/// The next error report on the client's own errors topic.
async fn next_error(c: &mut Client) -> Value {
    match c.next().await.unwrap() {
        Incoming::Publish { topic, payload, .. } if topic.starts_with("clients/") => {
            serde_json::from_slice(&payload).unwrap()
        }
        other => panic!("expected an error report, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_publishes_are_dropped_and_reported() {
    let w = world().await;
    let (me, friend) = (&w.me.id, &w.friend.id);
    // The friend watches its own profile topic.
    let mut watcher = w.server.mqtt_as(&w.friend).await;
    watcher
        .subscribe(&format!("users/{friend}/info"))
        .await
        .unwrap();

    let mut mine = w.server.mqtt_as(&w.me).await;
    mine.subscribe(&format!("clients/{}/errors", w.me.client_id))
        .await
        .unwrap();
    let forged = json!({"nickname": "forged"}).to_string();
    let cases: Vec<(String, &str)> = vec![
        (format!("users/{friend}/info"), "forbidden"),
        (format!("users/{friend}/isConnected"), "forbidden"),
        (format!("users/{me}/presence"), "forbidden"),
        (
            format!("clients/{}/errors", w.friend.client_id),
            "forbidden",
        ),
        (
            format!("invite/{}/0123456789abcdef0123456789abcdef", w.stranger.id),
            "forbidden",
        ),
        ("no/such/topic".to_string(), "bad_request"),
        (format!("users/{me}/info"), "bad_request"),
    ];
    for (topic, code) in &cases {
        let payload = if topic.ends_with(&format!("{me}/info")) {
            b"not json".to_vec()
        } else {
            forged.clone().into_bytes()
        };
        mine.publish(topic, &payload, false).await.unwrap();
        let report = next_error(&mut mine).await;
        assert_eq!(report["topic"], topic.as_str(), "{report}");
        assert_eq!(report["code"], *code, "{topic}: {report}");
        assert!(!report["message"].as_str().unwrap().is_empty());
    }

    // Nothing forged reached the watcher: the next thing it gets is the
    // friend's own change.
    let r = w
        .api
        .set_profile(&w.friend.access, json!({"nickname": "real"}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    match watcher.next().await.unwrap() {
        Incoming::Publish { payload, .. } => {
            let p: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(p["nickname"], "real");
        }
        other => panic!("{other:?}"),
    }

    // MQTT 5 clients also get the reason in the PUBACK.
    let mut v5 = V5Client::connect(w.server.mqtt, w.me.login())
        .await
        .unwrap();
    assert_eq!(
        v5.publish(&format!("users/{friend}/info"), forged.as_bytes())
            .await
            .unwrap(),
        PubAckReason::NotAuthorized
    );
    assert_eq!(
        v5.publish(&format!("users/{me}/info"), b"{\"nickname\": 5}")
            .await
            .unwrap(),
        PubAckReason::NotAuthorized
    );
    let ok = json!({"nickname": "five"}).to_string();
    assert_eq!(
        v5.publish(&format!("users/{me}/info"), ok.as_bytes())
            .await
            .unwrap(),
        PubAckReason::Success
    );
}

#[tokio::test]
async fn the_will_topic_is_checked_at_connect() {
    let w = world().await;
    let login = w.me.login();
    let own = format!("users/{}/isConnected", w.me.id);
    assert!(
        connect_with_will(w.server.mqtt, Via::Tcp, login, Some(&own))
            .await
            .is_ok()
    );
    for will in [
        format!("users/{}/isConnected", w.friend.id),
        format!("users/{}/info", w.me.id),
        "foo".to_string(),
    ] {
        let got = connect_with_will(w.server.mqtt, Via::Tcp, login, Some(&will)).await;
        assert_eq!(
            got.err(),
            Some(Refused::Code(ConnectReturnCode::NotAuthorized)),
            "{will}"
        );
    }
}

#[tokio::test]
async fn mosquitto_sub_is_refused_everything_and_reads_what_it_may() {
    let w = world().await;
    let r = w
        .api
        .set_profile(&w.friend.access, json!({"nickname": "Fre"}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let port = w.server.mqtt.port().to_string();
    let run = |filter: String| {
        std::process::Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                "mqttv311",
                "-i",
                &w.me.client_id,
                "-u",
                &w.me.id,
            ])
            .args(["-P", &w.me.access, "-t", &filter, "-C", "1", "-W", "10"])
            .output()
            .expect("mosquitto_sub is installed (scripts/test installs mosquitto-clients)")
    };
    let everything = run("#".into());
    let said = String::from_utf8_lossy(&everything.stderr).to_string()
        + &String::from_utf8_lossy(&everything.stdout);
    assert!(said.contains("denied"), "{said}");
    assert!(everything.stdout.is_empty(), "nothing may be delivered");

    let profile = run(format!("users/{}/info", w.friend.id));
    assert!(
        profile.status.success(),
        "{}",
        String::from_utf8_lossy(&profile.stderr)
    );
    let p: Value = serde_json::from_slice(&profile.stdout).unwrap();
    assert_eq!(p["nickname"], "Fre");
}

#[tokio::test]
async fn a_shared_subscription_takes_turns_under_the_same_rules() {
    use switchboard_e2e::mqtt::{V5Client, V5SubCode};
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let me = switchboard_e2e::random_id();
    let my = |device: &str| server.minted_for(&me, "user", Some(device), 600).unwrap();
    let mut members = Vec::new();
    for device in ["phone", "tablet"] {
        let mut member = V5Client::connect(server.mqtt, my(device).login())
            .await
            .unwrap();
        let codes = member
            .subscribe(&format!("$share/mine/users/{me}/info"))
            .await
            .unwrap();
        assert!(matches!(codes[..], [V5SubCode::Success(_)]), "{codes:?}");
        members.push(member);
    }
    // The filter inside is checked as a plain one: not someone else's.
    let stranger = server.minted("user", Some("phone"), 600).unwrap();
    let mut outsider = V5Client::connect(server.mqtt, stranger.login())
        .await
        .unwrap();
    let codes = outsider
        .subscribe(&format!("$share/mine/users/{me}/info"))
        .await
        .unwrap();
    assert_eq!(codes, vec![V5SubCode::NotAuthorized]);
    // Two messages: one to each member, in turn.
    let publisher = server.mqtt_as(&my("laptop")).await;
    let topic = format!("users/{me}/info");
    for nickname in ["A", "B"] {
        let profile = serde_json::json!({ "nickname": nickname });
        publisher.publish_json(&topic, &profile).await.unwrap();
    }
    for member in &mut members {
        assert_eq!(member.next_publish().await.unwrap().0, topic);
    }
}

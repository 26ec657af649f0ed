//! MQTT login against the real binary: tokens over TCP and WebSocket, and
//! every refusal with its CONNACK code.

use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as V5;
use rumqttc::ConnectReturnCode as V3;
use switchboard_e2e::api::SignedIn;
use switchboard_e2e::mqtt::{connack_v5, connect, granted, Incoming, Login, Refused, Via};
use switchboard_e2e::{random_id, Database, Server, JWT_SECRET};

/// A token signed with `secret` whose expiry is `exp_offset_s` from now.
fn jwt(secret: &str, sub: &str, exp_offset_s: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({"sub": sub, "kind": "user", "iat": now - 600, "exp": now + exp_offset_s});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// One new user's phone and tablet, each with a token of its own.
fn phone_and_tablet(server: &Server) -> (SignedIn, SignedIn) {
    let phone = server.minted("user", Some("phone"), 600).unwrap();
    let tablet = server
        .minted_for(&phone.id, "user", Some("tablet"), 600)
        .unwrap();
    (phone, tablet)
}

#[tokio::test]
async fn minted_tokens_log_in_over_tcp_and_websocket() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let id = random_id();
    let token = server.token(&id, Some("phone"), "user", 600).unwrap();
    let mut live = Vec::new();
    for via in [Via::Tcp, Via::WebSocket] {
        let addr = match via {
            Via::WebSocket => server.mqtt_ws,
            _ => server.mqtt,
        };
        for cid in [id.clone(), format!("{id}:phone")] {
            let r = connect(addr, via.clone(), Login::token(&cid, &id, &token)).await;
            assert!(r.is_ok(), "{via:?} {cid}: {:?}", r.as_ref().err());
            // Kept open: the next login with this client id takes the
            // session over instead of racing its close.
            live.push(r);
        }
    }
    assert_eq!(
        connack_v5(server.mqtt, Login::token(&id, &id, &token))
            .await
            .unwrap(),
        V5::Success
    );
}

#[tokio::test]
async fn refused_logins_get_the_right_connack() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let id = random_id();
    let other = random_id();
    let good = server.token(&id, Some("phone"), "user", 600).unwrap();
    let forged = jwt("not-the-server-secret-0123456789abcdef", &id, 600);
    let expired = jwt(JWT_SECRET, &id, -60);
    let tablet = format!("{id}:tablet");

    let cases: Vec<(&str, Login, V3, V5)> = vec![
        (
            "no token",
            Login {
                client_id: &id,
                username: None,
                password: None,
            },
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "username without password",
            Login {
                client_id: &id,
                username: Some(&id),
                password: None,
            },
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "wrong signature",
            Login::token(&id, &id, &forged),
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "expired token",
            Login::token(&id, &id, &expired),
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "garbage token",
            Login::token(&id, &id, "garbage"),
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "username not the subject",
            Login::token(&id, &other, &good),
            V3::BadUserNamePassword,
            V5::BadUserNamePassword,
        ),
        (
            "client id of another user",
            Login::token(&other, &id, &good),
            V3::NotAuthorized,
            V5::NotAuthorized,
        ),
        (
            "device not the token's",
            Login::token(&tablet, &id, &good),
            V3::NotAuthorized,
            V5::NotAuthorized,
        ),
        (
            "client id not an id",
            Login::token("robot-1", &id, &good),
            V3::NotAuthorized,
            V5::NotAuthorized,
        ),
    ];
    for (what, login, v3, v5) in cases {
        let got = connect(server.mqtt, Via::Tcp, login).await;
        assert_eq!(got.err(), Some(Refused::Code(v3)), "MQTT 3.1.1, {what}");
        let got = connack_v5(server.mqtt, login).await.unwrap();
        assert_eq!(got, v5, "MQTT 5, {what}");
    }
    // The refusals are counted by reason.
    let metrics = server.metrics().await;
    for reason in [
        "no_token",
        "bad_token",
        "expired_token",
        "wrong_username",
        "wrong_client_id",
    ] {
        assert!(
            metrics.contains(&format!(
                "switchboard_mqtt_logins_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason} missing from metrics"
        );
    }
}

#[tokio::test]
async fn retained_messages_reach_later_subscribers() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let (phone, tablet) = phone_and_tablet(&server);
    let topic = format!("users/{}/info", phone.id);
    let payload = serde_json::json!({"nickname": "Ala"}).to_string();

    let mut publisher = server.mqtt_as(&phone).await;
    publisher
        .publish(&topic, payload.as_bytes(), true)
        .await
        .unwrap();
    // The publisher's own subscription proves the broker has the message
    // before the later subscriber arrives.
    publisher.subscribe(&topic).await.unwrap();
    let echoed = publisher.next().await.unwrap();
    assert!(matches!(echoed, Incoming::Publish { .. }), "{echoed:?}");

    // Another device of the same user, later, over WebSocket.
    let mut later = connect(server.mqtt_ws, Via::WebSocket, tablet.login())
        .await
        .unwrap();
    later.subscribe(&topic).await.unwrap();
    match later.next().await.unwrap() {
        Incoming::Publish {
            topic: t,
            payload: p,
            retain,
        } => {
            assert_eq!(t, topic);
            let p: serde_json::Value = serde_json::from_slice(&p).unwrap();
            assert_eq!(p["nickname"], "Ala");
            assert!(retain, "a late subscriber gets it as a retained message");
        }
        other => panic!("expected the retained message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_closed_connection_leaves_nothing_waiting_for_its_token() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    // A day-long token: each login used to keep a timer (and its memory)
    // until the token expired, long after the connection closed.
    let phone = server.minted("user", Some("phone"), 86_400).unwrap();
    for _ in 0..20 {
        // Dropped at once, as an app that is killed.
        server.mqtt_as(&phone).await;
        server
            .metric_reaches("switchboard_mqtt_connections", 0.0)
            .await;
    }
    assert_eq!(server.metric("switchboard_mqtt_token_timers").await, 0.0);

    let live = server.mqtt_as(&phone).await;
    server
        .metric_reaches("switchboard_mqtt_token_timers", 1.0)
        .await;
    drop(live);
    server
        .metric_reaches("switchboard_mqtt_token_timers", 0.0)
        .await;
}

#[tokio::test]
async fn a_client_reconnects_at_once_after_disconnect() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let phone = server.minted("user", Some("phone"), 600).unwrap();
    // rmqtt, the broker before ours, refused 5-8% of these (CONNACK 0x03)
    // while it tore the last session down.
    for i in 0..200 {
        let client = connect(server.mqtt, Via::Tcp, phone.login())
            .await
            .unwrap_or_else(|e| panic!("login {i}: {e:?}"));
        client.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn forwarded_messages_carry_only_the_publishers_expiry() {
    use switchboard_e2e::mqtt::V5Client;
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let (phone, tablet) = phone_and_tablet(&server);
    let topic = format!("users/{}/info", phone.id);
    let mut watcher = V5Client::connect(server.mqtt, tablet.login())
        .await
        .unwrap();
    watcher.subscribe(&topic).await.unwrap();
    let mut publisher = V5Client::connect(server.mqtt, phone.login()).await.unwrap();
    // rmqtt, the broker before ours, stamped a 300 s expiry on every
    // message whose publisher set none.
    publisher
        .publish(&topic, br#"{"nickname": "A"}"#)
        .await
        .unwrap();
    assert_eq!(watcher.next_publish().await.unwrap(), (topic.clone(), None));
    publisher
        .publish_expiring(&topic, br#"{"nickname": "B"}"#, 60)
        .await
        .unwrap();
    let (t, expiry) = watcher.next_publish().await.unwrap();
    assert_eq!(t, topic);
    assert!(matches!(expiry, Some(59..=60)), "{expiry:?}");
}

#[tokio::test]
async fn topic_aliases_toward_mqtt5_clients_keep_every_topic() {
    use switchboard_e2e::mqtt::V5Client;
    let db = Database::for_test().await.unwrap();
    let server = Server::builder(&db)
        .env("SWITCHBOARD_MQTT_MAX_TOPIC_ALIASES", "8")
        .start()
        .await
        .unwrap();
    let (phone, tablet) = phone_and_tablet(&server);
    let topic = format!("users/{}/info", phone.id);
    let mut watcher = V5Client::connect_taking_aliases(server.mqtt, tablet.login(), 8)
        .await
        .unwrap();
    watcher.subscribe(&topic).await.unwrap();
    // An MQTT 3.1.1 publisher: its messages carry no properties, which
    // rmqtt, the broker before ours, sent under an alias with an empty
    // topic.
    let publisher = server.mqtt_as(&phone).await;
    for nickname in ["A", "B", "C"] {
        let profile = serde_json::json!({ "nickname": nickname });
        publisher.publish_json(&topic, &profile).await.unwrap();
        assert_eq!(watcher.next_publish().await.unwrap().0, topic, "{nickname}");
    }
}

#[tokio::test]
async fn a_token_for_ten_years_logs_in() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    // Past the timer wheel's two years, which used to panic the hook.
    let me = server.minted("user", None, 10 * 365 * 86_400).unwrap();
    let client = server.mqtt_as(&me).await;
    server
        .metric_reaches("switchboard_mqtt_token_timers", 1.0)
        .await;
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_client_holds_a_bounded_number_of_subscriptions() {
    let db = Database::for_test().await.unwrap();
    let server = Server::builder(&db)
        .env("SWITCHBOARD_MQTT_MAX_SUBSCRIPTIONS", "5")
        .start()
        .await
        .unwrap();
    let me = server.minted("user", None, 600).unwrap();
    let mut client = server.mqtt_as(&me).await;
    // Each call's inbox topic is a subscription the rules allow.
    for i in 0..6 {
        let codes = client
            .subscribe(&format!("invite/{}/{}", me.id, random_id()))
            .await
            .unwrap();
        assert_eq!(granted(&codes), i < 5, "subscription {i}: {codes:?}");
    }
}

//! The binary's HTTP operations endpoints, configuration errors, database
//! handling and shutdown.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;

use serde_json::Value;
use switchboard_e2e::mqtt::{connect, Via};
use switchboard_e2e::{Database, Server};

async fn get(url: String) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn health_ready_metrics_and_openapi_answer() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();

    let (status, body) = get(format!("{}/healthz", server.http)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    let (status, body) = get(format!("{}/readyz", server.http)).await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["database"], true);
    assert_eq!(ready["broker"], true);

    let (status, body) = get(format!("{}/openapi.json", server.http)).await;
    assert_eq!(status, 200);
    let api: Value = serde_json::from_str(&body).unwrap();
    assert!(api["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            api["paths"][path]["get"].is_object(),
            "{path} missing from OpenAPI"
        );
    }

    let (status, body) = get(format!("{}/no/such/route", server.http)).await;
    assert_eq!(status, 404);
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], "not_found");

    // An MQTT client with a message, so the broker counters move.
    let me = server.minted("user", None, 600).unwrap();
    let mut client = server.mqtt_as(&me).await;
    let topic = format!("users/{}/info", me.id);
    client.subscribe(&topic).await.unwrap();
    client.publish(&topic, b"{}", false).await.unwrap();
    client.next().await.unwrap();

    let (status, metrics) = get(format!("{}/metrics", server.http)).await;
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
    };
    assert_eq!(value("switchboard_mqtt_connections "), 1.0);
    assert!(value("switchboard_mqtt_messages_received_total ") >= 1.0);
    assert!(value("switchboard_mqtt_messages_delivered_total ") >= 1.0);
    assert!(metrics.contains(
        r#"switchboard_http_requests_total{route="/healthz",method="GET",status="200"} 1"#
    ));
    assert!(metrics.contains(
        r#"switchboard_http_requests_total{route="unmatched",method="GET",status="404"} 1"#
    ));
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let db = Database::for_test().await.unwrap();
    let server = Server::start(&db).await.unwrap();
    let _client = server
        .mqtt_as(&server.minted("user", None, 600).unwrap())
        .await;
    let logs = server.logs.clone();
    let (status, _) = server.terminate().unwrap();
    assert!(
        status.success(),
        "exit status {status:?} (signal {:?})",
        status.signal()
    );
    let stopped = logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l["fields"]["message"] == "stopped");
    assert!(stopped, "no 'stopped' log line");
}

#[tokio::test]
async fn generated_jwt_key_is_private_and_kept_across_restarts() {
    let db = Database::for_test().await.unwrap();
    let server = Server::builder(&db)
        .unset("SWITCHBOARD_JWT_SECRET")
        .start()
        .await
        .unwrap();
    let key = server.dir.path().join("jwt.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "jwt.key must be owner-only");
    let before = std::fs::read(&key).unwrap();

    let me = server.minted("user", None, 600).unwrap();
    assert!(connect(server.mqtt, Via::Tcp, me.login()).await.is_ok());

    let (_, dir) = server.terminate().unwrap();
    let server = Server::builder(&db)
        .unset("SWITCHBOARD_JWT_SECRET")
        .dir(dir)
        .start()
        .await
        .unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), before, "the key is made once");
    let again = connect(server.mqtt, Via::Tcp, me.login()).await;
    assert!(
        again.is_ok(),
        "a token from before the restart still logs in"
    );
}

/// A subscriber that stops reading keeps what is in flight to it and its
/// queue; once the publisher waited `mqtt_stuck_after_ms` for room, the
/// broker drops the rest, and /metrics counts each drop.
#[tokio::test]
async fn a_stuck_subscribers_overflow_is_dropped_and_counted() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let db = Database::for_test().await.unwrap();
    let server = Server::builder(&db)
        .env("SWITCHBOARD_OPEN_BROKER", "true")
        .env("SWITCHBOARD_MQTT_MAX_INFLIGHT", "1")
        .env("SWITCHBOARD_MQTT_MAX_QUEUE", "10")
        .env("SWITCHBOARD_MQTT_STUCK_AFTER_MS", "200")
        .start()
        .await
        .unwrap();
    let publisher = connect(
        server.mqtt,
        Via::Tcp,
        switchboard_e2e::mqtt::Login {
            client_id: "feeder",
            username: None,
            password: None,
        },
    )
    .await
    .unwrap();
    // Retained, so the subscriber reads it as soon as it has subscribed.
    publisher.publish("feed", b"ready", true).await.unwrap();
    let port = server.mqtt.port().to_string();
    // Line-buffered, so the first message shows at once.
    let mut stuck = Stuck(
        Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", "feed"])
            .args(["-i", "stuck", "-V", "mqttv311"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub is installed (scripts/test installs mosquitto-clients)"),
    );
    let mut lines = BufReader::new(stuck.0.stdout.take().unwrap()).lines();
    let first = tokio::task::spawn_blocking(move || lines.next());
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), first)
        .await
        .expect("the subscriber's first message");
    assert_eq!(first.unwrap().unwrap().unwrap(), "ready");
    let dropped = r#"switchboard_mqtt_messages_dropped_total{reason="queue_full"}"#;
    assert_eq!(server.metric(dropped).await, 0.0);
    assert!(Command::new("kill")
        .args(["-STOP", &stuck.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    for n in 0..100 {
        let payload = n.to_string();
        publisher
            .publish("feed", payload.as_bytes(), false)
            .await
            .unwrap();
    }
    // One in flight, ten queued, the other 89 dropped.
    server.metric_reaches(dropped, 89.0).await;
}

/// A child process killed when the test ends, however it ends.
struct Stuck(std::process::Child);

impl Drop for Stuck {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! TLS on every listener, with a CA and certificates made here (rcgen):
//! HTTPS with an HTTP client, MQTT over TLS with mosquitto_sub and
//! paho-mqtt, MQTT over secure WebSocket with paho-mqtt; a client
//! trusting another CA is refused; sign-in hands out the secure URLs; a
//! renewed certificate, read again on SIGHUP, is what new connections
//! get; and the plain listeners can be turned off.

use std::process::Command;

use switchboard_e2e::api::{Api, SmsInbox};
use switchboard_e2e::tls::{
    ca, mosquitto_sub, served_certificate, server_cert, tls_builder, tls_only, tls_server, write,
};

fn https_client(ca_pem: &str) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(root)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_listener_speaks_tls_and_new_connections_get_a_renewed_certificate() {
    let files = tempfile::tempdir().unwrap();
    let (ours, theirs) = (ca("switchboard test CA"), ca("another CA"));
    let sms = SmsInbox::start().await.unwrap();
    let server = tls_server(&ours, files.path(), &sms).await;
    let ours_file = write(files.path(), "ca.pem", &ours.pem);
    let theirs_file = write(files.path(), "other-ca.pem", &theirs.pem);

    // HTTPS, trusted and not.
    let https = format!("https://127.0.0.1:{}", server.https.unwrap().port());
    let ready = https_client(&ours.pem)
        .get(format!("{https}/readyz"))
        .send()
        .await;
    assert_eq!(ready.unwrap().status(), 200);
    let refused = https_client(&theirs.pem)
        .get(format!("{https}/readyz"))
        .send()
        .await;
    assert!(refused.is_err(), "a client trusting another CA is refused");

    // MQTT over TLS: mosquitto_sub gets the user's presence, served at
    // once; not when it trusts another CA.
    let user = server.minted("user", None, 600).unwrap();
    let presence = mosquitto_sub(&server, "127.0.0.1", &ours_file, &user).unwrap();
    assert!(presence.contains("\"online\""), "{presence}");
    let refused = mosquitto_sub(&server, "127.0.0.1", &theirs_file, &user);
    assert!(refused.is_err(), "{refused:?}");

    // paho-mqtt over TLS and over secure WebSocket.
    let python = std::env::var("E2E_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import sys, paho.mqtt.client as mqtt
transport, port, ca, uid, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uid, transport=transport)
if transport == "websockets":
    c.ws_set_options(path="/mqtt")
c.tls_set(ca_certs=ca)
c.username_pw_set(uid, token)
got = []
c.on_connect = lambda c, u, f, rc, p: c.subscribe(f"users/{uid}/presence")
c.on_message = lambda c, u, m: (got.append(m.payload), c.disconnect())
c.connect("127.0.0.1", port)
c.loop_forever(timeout=10)
sys.exit(0 if got else 1)
"#;
    let (mqtts, wss) = (server.mqtts.unwrap(), server.mqtt_wss.unwrap());
    for (transport, addr) in [("tcp", mqtts), ("websockets", wss)] {
        let port = addr.port().to_string();
        let paho = Command::new(&python)
            .args([
                "-c",
                script,
                transport,
                &port,
                &ours_file,
                &user.id,
                &user.access,
            ])
            .output()
            .expect("the Python with paho-mqtt: E2E_PYTHON (scripts/test sets it)");
        let stderr = String::from_utf8_lossy(&paho.stderr);
        assert!(
            paho.status.success(),
            "paho over TLS ({transport}): {stderr}"
        );
    }

    // Sign-in hands out the TLS listeners.
    let api = Api::new(&server);
    let signed = api.sign_in(&sms, "+48555420001", "phone").await.unwrap();
    let mqtt = &signed.body["mqtt"];
    let (mqtts, wss) = (
        server.mqtts.unwrap().port(),
        server.mqtt_wss.unwrap().port(),
    );
    assert_eq!(mqtt["tcp"], format!("mqtts://127.0.0.1:{mqtts}"), "{mqtt}");
    assert_eq!(mqtt["ws"], format!("wss://127.0.0.1:{wss}/mqtt"), "{mqtt}");

    // A renewed certificate, read again on SIGHUP, reaches new connections.
    let before = served_certificate(server.https.unwrap(), "127.0.0.1", &ours.pem).await;
    let (cert, key) = server_cert(&ours);
    write(files.path(), "cert.pem", &cert);
    write(files.path(), "key.pem", &key);
    let renewed = rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer| c.to_vec())
        .unwrap();
    assert_ne!(before, renewed);
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    server.logs_reach("certificate files read again", 1).await;
    for addr in [
        server.https.unwrap(),
        server.mqtts.unwrap(),
        server.mqtt_wss.unwrap(),
    ] {
        assert_eq!(
            served_certificate(addr, "127.0.0.1", &ours.pem).await,
            renewed,
            "{addr}"
        );
    }
}

/// With the plain listeners off, the server listens over TLS only: it is
/// ready (its MQTT probe reaches the TLS listener), and MQTT over TLS
/// works; a plain server's settings without TLS are refused (config).
#[tokio::test]
async fn the_plain_listeners_can_be_turned_off() {
    let files = tempfile::tempdir().unwrap();
    let ours = ca("switchboard test CA");
    let sms = SmsInbox::start().await.unwrap();
    let server = tls_only(tls_builder(&ours, files.path(), &sms))
        .start()
        .await
        .unwrap();
    let ready = server
        .logs
        .lock()
        .unwrap()
        .iter()
        .find(|l| l["fields"]["message"] == "switchboard ready")
        .cloned()
        .unwrap();
    for plain in ["http_addr", "mqtt", "mqtt_ws"] {
        assert!(ready["fields"][plain].is_null(), "{plain} is off: {ready}");
    }
    let https = format!("https://127.0.0.1:{}", server.https.unwrap().port());
    let answer = https_client(&ours.pem)
        .get(format!("{https}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let ca_file = write(files.path(), "ca.pem", &ours.pem);
    let user = server.minted("user", None, 600).unwrap();
    let presence = mosquitto_sub(&server, "127.0.0.1", &ca_file, &user).unwrap();
    assert!(presence.contains("\"online\""), "{presence}");
}

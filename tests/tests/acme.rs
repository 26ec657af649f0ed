//! Certificates from a real ACME server on loopback (Debian's pebble):
//! the server gets one for `localhost` by TLS-ALPN-01 on its HTTPS port,
//! caches it (readable by the server's user only), serves it on every
//! TLS listener, and renews it before it expires (pebble issues them for
//! 20 s here) without a restart.

use switchboard_e2e::tls::{ca, handshake, mosquitto_sub, served_once, write, Pebble};
use switchboard_e2e::{Database, Server};

#[tokio::test]
async fn a_certificate_from_an_acme_server_is_served_on_every_tls_listener() {
    let files = tempfile::tempdir().unwrap();
    let ours = ca("switchboard test CA");
    let https_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Certificates of 20 s: renewed after about 13.
    let pebble = Pebble::start(&ours, https_port, 20).await.unwrap();
    let server = Server::builder(&Database::Sqlite)
        .env("SWITCHBOARD_ACME_DOMAINS", r#"["localhost"]"#)
        .env("SWITCHBOARD_ACME_EMAIL", "ops@example.org")
        .env("SWITCHBOARD_ACME_DIRECTORY_URL", pebble.directory.clone())
        .env(
            "SWITCHBOARD_ACME_CA_FILE",
            write(files.path(), "ca.pem", &ours.pem),
        )
        .env("SWITCHBOARD_HTTPS_ADDR", format!("127.0.0.1:{https_port}"))
        .env("SWITCHBOARD_MQTTS_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_MQTT_WSS_ADDR", "127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let root = pebble.root(&ours).await.unwrap();
    let https = std::net::SocketAddr::from(([127, 0, 0, 1], https_port));
    let first = served_once(https, "localhost", &root, |_| true).await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let ready = client
        .get(format!("https://localhost:{https_port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let root_file = write(files.path(), "pebble-root.pem", &root);
    let user = server.minted("user", None, 600).unwrap();
    let presence = mosquitto_sub(&server, "localhost", &root_file, &user);
    assert!(presence.is_ok(), "{presence:?}");
    // A browser offers http/1.1 on wss: the MQTT listeners take it (only
    // HTTPS takes the challenge's protocol too).
    let wss = server.mqtt_wss.unwrap();
    let browser = handshake(wss, "localhost", &root, &[b"http/1.1"]).await;
    assert_eq!(
        browser.unwrap(),
        first,
        "wss serves the certificate to a browser"
    );
    let cache = server.dir.path().join("acme");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o700,
        "the cache holds private keys: this user's only"
    );

    // Renewed before it expires, and served to new connections.
    served_once(https, "localhost", &root, |served| served != first).await;
}

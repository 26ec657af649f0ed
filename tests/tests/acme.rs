//! Certificates from a real ACME server on loopback (Debian's pebble):
//! the server gets one for `localhost` by TLS-ALPN-01 on its HTTPS port,
//! caches it, serves it on every TLS listener, and renews it before it
//! expires (pebble issues them for 6 s here) without a restart.

use switchboard_e2e::tls::{ca, mosquitto_sub, served_certificate, write, Pebble};
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
    let pebble = Pebble::start(&ours, https_port, 6).await.unwrap();
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
    server
        .logs_reach("a certificate from the ACME server", 1)
        .await;

    let root = pebble.root(&ours).await.unwrap();
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
    assert!(
        server.dir.path().join("acme").is_dir(),
        "cached in the data directory"
    );
    // Renewed at two thirds of its life, and served to new connections.
    let https = std::net::SocketAddr::from(([127, 0, 0, 1], https_port));
    let served = "a certificate from the ACME server is served";
    let so_far = server.times_logged(served);
    let first = served_certificate(https, "localhost", &root).await;
    server.logs_reach(served, so_far + 1).await;
    let renewed = served_certificate(https, "localhost", &root).await;
    assert_ne!(first, renewed, "a new certificate");
}

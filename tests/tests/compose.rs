//! No Docker engine runs where the suite runs, so docker-compose.yml is
//! checked by starting the real binary with exactly the environment the
//! compose file gives the server, against a real PostgreSQL. Only what
//! cannot be the same outside a container is replaced: the database host
//! (`db` is the compose service), the data directory (`/data` is a volume)
//! and the port numbers (fixed ports may be taken; addresses stay
//! `0.0.0.0`).

use serde_yaml::Value;
use switchboard_e2e::mqtt::{connect, Login, Via};
use switchboard_e2e::{fresh_postgres_database, postgres_admin_url, random_id, Database, Server};

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docker-compose.yml"
    ))
    .unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

#[test]
fn compose_file_is_consistent() {
    let c = compose();
    let server = &c["services"]["switchboard"];
    let env = server["environment"].as_mapping().unwrap();
    let var = |k: &str| env[&Value::from(k)].as_str().unwrap().to_string();
    let published: Vec<String> = server["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap()
                .split(':')
                .next_back()
                .unwrap()
                .to_string()
        })
        .collect();
    for key in [
        "SWITCHBOARD_HTTP_ADDR",
        "SWITCHBOARD_MQTT_ADDR",
        "SWITCHBOARD_MQTT_WS_ADDR",
    ] {
        let addr = var(key);
        assert!(
            addr.starts_with("0.0.0.0:"),
            "{key} must listen on all interfaces in a container"
        );
        assert!(
            published.contains(&port_of(&addr).to_string()),
            "{key} port is not published"
        );
    }
    // The relay's UDP range is published as it is configured.
    let range = format!(
        "{}-{}/udp",
        var("SWITCHBOARD_RELAY_PORT_MIN"),
        var("SWITCHBOARD_RELAY_PORT_MAX")
    );
    assert!(
        published.contains(&range),
        "relay ports {range} not published"
    );
    assert!(!var("SWITCHBOARD_RELAY_NAT_1TO1_IP").is_empty());
    let health = server["healthcheck"]["test"].as_sequence().unwrap();
    let url = health.last().unwrap().as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "http://127.0.0.1:{}/readyz",
            port_of(&var("SWITCHBOARD_HTTP_ADDR"))
        )
    );
    assert!(var("SWITCHBOARD_DATABASE_URL").starts_with("postgres://"));
    assert_eq!(
        server["depends_on"]["db"]["condition"].as_str(),
        Some("service_healthy")
    );
    // coturn checks TURN credentials with the secret the server signs them with.
    let coturn_args: Vec<&str> = c["services"]["coturn"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(coturn_args.contains(&"--use-auth-secret"));
    let secret = format!("--static-auth-secret={}", var("SWITCHBOARD_TURN_SECRET"));
    assert!(
        coturn_args.contains(&secret.as_str()),
        "coturn and the server share the TURN secret"
    );
    for volume in ["data", "pgdata"] {
        assert!(
            c["volumes"].as_mapping().unwrap().contains_key(volume),
            "named volume {volume}"
        );
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL; scripts/test runs it"]
async fn server_starts_with_the_compose_environment() {
    let admin = postgres_admin_url().expect("E2E_POSTGRES_URL must name a PostgreSQL server");
    let url = fresh_postgres_database(&admin).await.unwrap();
    let db = Database::Postgres { url: url.clone() };

    let c = compose();
    let env = c["services"]["switchboard"]["environment"]
        .as_mapping()
        .unwrap()
        .clone();
    let mut builder = Server::builder(&db).unset("SWITCHBOARD_JWT_SECRET");
    for (k, v) in env {
        let (k, v) = (
            k.as_str().unwrap().to_string(),
            v.as_str().unwrap().to_string(),
        );
        let v = match k.as_str() {
            // The harness gives the data directory; the compose one is a volume.
            "SWITCHBOARD_DATA_DIR" => continue,
            "SWITCHBOARD_DATABASE_URL" => url.clone(),
            k if k.ends_with("_ADDR") => format!("{}:0", v.rsplit_once(':').unwrap().0),
            _ => v,
        };
        builder = builder.env(&k, v);
    }
    let server = builder.start().await.unwrap();

    let ready = reqwest::get(format!("{}/readyz", server.http))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let id = random_id();
    let token = server.token(&id, None, "user", 600).unwrap();
    let mut live = Vec::new();
    for (addr, via) in [(server.mqtt, Via::Tcp), (server.mqtt_ws, Via::WebSocket)] {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()));
        let r = connect(addr, via, Login::token(&id, &id, &token)).await;
        assert!(r.is_ok(), "{via:?}: {:?}", r.as_ref().err());
        // Kept open: the WebSocket login takes the TCP session over
        // instead of racing its close.
        live.push(r);
    }
    // The compose ICE settings are served: STUN, and TURN with credentials.
    let ice = switchboard_e2e::api::Api::new(&server)
        .get("/v1/ice-servers", &token)
        .await
        .unwrap();
    assert_eq!(
        ice.body["iceServers"].as_array().map(Vec::len),
        Some(2),
        "{ice:?}"
    );
    assert!(
        server.dir.path().join("jwt.key").exists(),
        "the key is kept on the data volume"
    );
}

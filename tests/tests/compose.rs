//! No Docker engine runs where the suite runs, so the compose files are
//! checked by starting the real binaries with exactly the environment and
//! configuration they give: docker-compose.yml's server against a real
//! PostgreSQL, and cluster/docker-compose.yml's nodes against a real
//! PostgreSQL and nats-server behind a real HAProxy running
//! cluster/haproxy.cfg. Only what cannot be the same outside containers
//! is replaced: the database and NATS hosts (compose services), the data
//! directories (volumes) and the port numbers (fixed ports may be taken;
//! the nodes' addresses stay `0.0.0.0`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use serde_yaml::Value;
use switchboard_e2e::cluster::{HaProxy, Nats};
use switchboard_e2e::mqtt::{connect, granted, Incoming, Login, Via};
use switchboard_e2e::tls::{
    ca, client_config, mosquitto_sub, served_once, server_cert, write, Pebble,
};
use switchboard_e2e::{
    fresh_postgres_database, postgres_admin_url, random_id, Database, Server, ServerBuilder,
};

/// A file of the repository, read.
fn read(path: &str) -> String {
    let path = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    serde_yaml::from_str(&read("docker-compose.yml")).unwrap()
}

fn cluster_compose() -> Value {
    serde_yaml::from_str(&read("cluster/docker-compose.yml")).unwrap()
}

/// A service's environment, as strings.
fn environment(service: &Value) -> BTreeMap<String, String> {
    let env = service["environment"].as_mapping().unwrap();
    env.iter()
        .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
        .collect()
}

/// A server with a compose service's environment, but for what cannot be
/// the same outside a container: `replaced` values, the data directory
/// (the harness gives it), and listener ports (0, addresses kept).
fn server_as(service: &Value, db: &Database, replaced: &[(&str, &str)]) -> ServerBuilder {
    let mut builder = Server::builder(db).unset("SWITCHBOARD_JWT_SECRET");
    for (k, v) in environment(service) {
        let v = match replaced.iter().find(|(key, _)| *key == k) {
            Some((_, value)) => value.to_string(),
            None if k == "SWITCHBOARD_DATA_DIR" => continue,
            None if k.ends_with("_ADDR") && !v.is_empty() => {
                format!("{}:0", v.rsplit_once(':').unwrap().0)
            }
            None => v,
        };
        builder = builder.env(&k, v);
    }
    builder
}

/// A YAML list of strings.
fn strings(list: &Value) -> Vec<&str> {
    (list.as_sequence().unwrap().iter())
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// The services that run a Switchboard node.
fn nodes(c: &Value) -> Vec<(String, &Value)> {
    let services = c["services"].as_mapping().unwrap();
    (services.iter())
        .filter(|(_, s)| s["image"].as_str() == Some("switchboard:latest"))
        .map(|(name, s)| (name.as_str().unwrap().to_string(), s))
        .collect()
}

/// What an HAProxy configuration routes: each frontend's port, and the
/// servers (name, address, options) of its backend.
fn routes(config: &str) -> BTreeMap<String, Route> {
    let (mut section, mut binds, mut defaults) = (String::new(), BTreeMap::new(), BTreeMap::new());
    let mut servers: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for line in config.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["frontend" | "backend", name] => section = name.to_string(),
            ["bind", addr, options @ ..] => {
                let port = addr.trim_start_matches(':').to_string();
                binds.insert(section.clone(), (port, options.join(" ")));
            }
            ["default_backend", backend] => {
                defaults.insert(section.clone(), backend.to_string());
            }
            ["server", name, addr, options @ ..] => servers
                .entry(section.clone())
                .or_default()
                .push((name.to_string(), addr.to_string(), options.join(" "))),
            _ => {}
        }
    }
    (binds.into_iter())
        .map(|(frontend, (port, bind))| {
            let servers = servers[&defaults[&frontend]].clone();
            (port, Route { bind, servers })
        })
        .collect()
}

/// Where one of HAProxy's ports goes.
struct Route {
    /// The `bind` line's options (`ssl crt ...`).
    bind: String,
    /// Each server's name, address and options.
    servers: Vec<(String, String, String)>,
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

/// The variables a compose file names (`${NAME}`, `${NAME:?why}`,
/// `${NAME:-default}`), in order of first use.
fn variables(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for part in text.split("${").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// `value` with the compose variables in it replaced from `vars`, as
/// `docker compose` does with `.env`.
fn interpolate(value: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("a closing brace");
        let name: String = rest[start + 2..end]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.push_str(&vars[name.as_str()]);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every use of each of `secrets` in the compose file `file` is required
/// from `.env` (`${NAME:?...}`), and its `.env` example names every
/// variable the file uses, with no value for a secret or the admin token.
fn secrets_from_env(file: &str, example: &str, secrets: &[&str]) {
    let text = read(file);
    for secret in secrets {
        let uses = text.matches(&format!("${{{secret}")).count();
        let required = text.matches(&format!("${{{secret}:?")).count();
        assert!(
            uses > 0 && uses == required,
            "{file}: every use of {secret} required from .env"
        );
    }
    let example = read(example);
    let given: BTreeMap<&str, &str> = (example.lines())
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .collect();
    for name in variables(&text) {
        assert!(given.contains_key(name.as_str()), "{example} lacks {name}");
    }
    for secret in secrets.iter().chain(&["ADMIN_TOKEN"]) {
        assert_eq!(given[secret], "", "{secret}: no usable default committed");
    }
}

/// A service's environment with the compose variables in it replaced from
/// `vars`, as `docker compose` does with `.env`.
fn interpolated(service: &Value, vars: &BTreeMap<&str, String>) -> Value {
    let mut service = service.clone();
    for (_, v) in service["environment"].as_mapping_mut().unwrap().iter_mut() {
        *v = interpolate(v.as_str().unwrap(), vars).into();
    }
    service
}

/// `.env` as a test's operator fills it in.
fn dot_env(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Every listener the internet reaches is TLS and published; plain HTTP
/// listens on the container's loopback for the health check; every
/// secret comes from `.env` (required, no default), and `.env.example`
/// names every variable the file uses.
#[test]
fn compose_file_is_consistent() {
    let c = compose();
    let server = &c["services"]["switchboard"];
    let env = environment(server);
    let var = |k: &str| env[k].clone();
    let published: Vec<String> = (strings(&server["ports"]).iter())
        .map(|p| p.split(':').next_back().unwrap().to_string())
        .collect();
    for key in [
        "SWITCHBOARD_HTTPS_ADDR",
        "SWITCHBOARD_MQTTS_ADDR",
        "SWITCHBOARD_MQTT_WSS_ADDR",
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
    assert!(
        server["ports"]
            .as_sequence()
            .unwrap()
            .contains(&format!("443:{}", port_of(&var("SWITCHBOARD_HTTPS_ADDR"))).into()),
        "HTTPS on 443, where TLS-ALPN-01 is checked"
    );
    for key in ["SWITCHBOARD_MQTT_ADDR", "SWITCHBOARD_MQTT_WS_ADDR"] {
        assert_eq!(var(key), "", "{key}: no plain MQTT");
    }
    assert!(
        var("SWITCHBOARD_HTTP_ADDR").starts_with("127.0.0.1:"),
        "plain HTTP on loopback only"
    );
    assert!(!published.contains(&port_of(&var("SWITCHBOARD_HTTP_ADDR")).to_string()));
    let health = server["healthcheck"]["test"].as_sequence().unwrap();
    let url = health.last().unwrap().as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "http://127.0.0.1:{}/readyz",
            port_of(&var("SWITCHBOARD_HTTP_ADDR"))
        )
    );
    assert!(var("SWITCHBOARD_ACME_DOMAINS").contains("${SWITCHBOARD_DOMAIN:?"));
    assert!(var("SWITCHBOARD_MQTT_PUBLIC_URL").starts_with("mqtts://${SWITCHBOARD_DOMAIN}:"));
    assert!(var("SWITCHBOARD_MQTT_WS_PUBLIC_URL").starts_with("wss://${SWITCHBOARD_DOMAIN}:"));
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
    assert!(
        var("SWITCHBOARD_DATABASE_URL").starts_with("postgres://switchboard:${POSTGRES_PASSWORD:?")
    );
    assert_eq!(
        server["depends_on"]["db"]["condition"].as_str(),
        Some("service_healthy")
    );
    secrets_from_env(
        "docker-compose.yml",
        ".env.example",
        &["POSTGRES_PASSWORD", "TURN_SECRET"],
    );
    // coturn checks TURN credentials with the secret the server signs them with.
    let coturn_args = strings(&c["services"]["coturn"]["command"]);
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

/// The server with the compose file's environment, its variables set as
/// an operator's `.env` would, against a real PostgreSQL, and pebble
/// standing in for Let's Encrypt (no internet here): ready on its
/// loopback HTTP, a certificate for the domain served over HTTPS and MQTT
/// over TLS, the ICE servers the file names handed out.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL and pebble; scripts/test runs it"]
async fn server_starts_with_the_compose_environment() {
    let admin = postgres_admin_url().expect("E2E_POSTGRES_URL must name a PostgreSQL server");
    let url = fresh_postgres_database(&admin).await.unwrap();
    let db = Database::Postgres { url: url.clone() };
    let files = tempfile::tempdir().unwrap();
    let ours = ca("switchboard test CA");
    let https_port = free_port();
    let pebble = Pebble::start(&ours, https_port, 3600).await.unwrap();

    let vars = dot_env(&[
        ("SWITCHBOARD_DOMAIN", "localhost"),
        ("ACME_EMAIL", "ops@example.org"),
        ("PUBLIC_IP", "127.0.0.1"),
        ("POSTGRES_PASSWORD", "unused-here"),
        ("TURN_SECRET", "a-turn-secret-for-the-test"),
        ("ADMIN_TOKEN", ""),
    ]);
    let service = interpolated(&compose()["services"]["switchboard"], &vars);
    let https = format!("0.0.0.0:{https_port}");
    let ca_file = write(files.path(), "ca.pem", &ours.pem);
    let replaced = [
        ("SWITCHBOARD_DATABASE_URL", url.as_str()),
        ("SWITCHBOARD_HTTPS_ADDR", https.as_str()),
    ];
    let server = server_as(&service, &db, &replaced)
        .env("SWITCHBOARD_ACME_DIRECTORY_URL", pebble.directory.clone())
        .env("SWITCHBOARD_ACME_CA_FILE", ca_file)
        .start()
        .await
        .unwrap();

    let ready = reqwest::get(format!("{}/readyz", server.http))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let root = pebble.root(&ours).await.unwrap();
    let https_addr = SocketAddr::from(([127, 0, 0, 1], https_port));
    served_once(https_addr, "localhost", &root, |_| true).await;
    let root_file = write(files.path(), "pebble-root.pem", &root);
    let user = server.minted("user", None, 600).unwrap();
    let presence = mosquitto_sub(&server, "localhost", &root_file, &user);
    assert!(presence.is_ok(), "{presence:?}");
    // The compose ICE settings are served: STUN, and TURN with credentials.
    let ice = switchboard_e2e::api::Api::new(&server)
        .get("/v1/ice-servers", &user.access)
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

/// The cluster's nodes are one configuration but for their relay ports
/// and volumes; they share the database, NATS and the secrets (from
/// `.env`, required), and take PROXY headers from HAProxy, which alone
/// publishes HTTP and MQTT, over TLS only, and sends each of its ports to
/// the matching plain listener on every node.
#[test]
fn cluster_compose_file_is_consistent() {
    let c = cluster_compose();
    let nodes = nodes(&c);
    assert!(
        nodes.len() >= 2,
        "several nodes: {:?}",
        nodes.iter().map(|n| &n.0).collect::<Vec<_>>()
    );
    let envs: Vec<BTreeMap<String, String>> = nodes.iter().map(|(_, s)| environment(s)).collect();
    let differing: BTreeSet<&String> = (envs[0].keys().chain(envs[1].keys()))
        .filter(|k| envs.iter().any(|e| e.get(*k) != envs[0].get(*k)))
        .collect();
    let relay_ports = ["SWITCHBOARD_RELAY_PORT_MAX", "SWITCHBOARD_RELAY_PORT_MIN"];
    assert_eq!(differing.into_iter().collect::<Vec<_>>(), relay_ports);
    let env = &envs[0];
    assert_eq!(env["SWITCHBOARD_NATS_URL"], "nats://nats:4222");
    assert!(c["services"]["nats"]["command"]
        .as_sequence()
        .unwrap()
        .contains(&"4222".into()));
    assert!(
        env["SWITCHBOARD_DATABASE_URL"].starts_with("postgres://switchboard:${POSTGRES_PASSWORD:?")
    );
    assert!(env["SWITCHBOARD_DATABASE_URL"].contains("@db:5432/"));
    secrets_from_env(
        "cluster/docker-compose.yml",
        "cluster/.env.example",
        &[
            "POSTGRES_PASSWORD",
            "JWT_SECRET",
            "ID_SECRET",
            "TURN_SECRET",
        ],
    );
    assert_eq!(env["SWITCHBOARD_PROXY_PROTOCOL"], "true");
    let mut relay_ranges = Vec::new();
    let mut volumes = BTreeSet::new();
    for ((name, service), env) in nodes.iter().zip(&envs) {
        let range = format!(
            "{}-{}",
            env["SWITCHBOARD_RELAY_PORT_MIN"], env["SWITCHBOARD_RELAY_PORT_MAX"]
        );
        let ports = strings(&service["ports"]);
        assert_eq!(
            ports,
            [format!("{range}:{range}/udp")],
            "{name}: only its relay's ports"
        );
        relay_ranges.push(range);
        let volume = service["volumes"][0]
            .as_str()
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        assert!(
            volumes.insert(volume.to_string()),
            "{name}: a data volume of its own"
        );
        assert!(c["volumes"].as_mapping().unwrap().contains_key(volume));
    }
    let mut bounds: Vec<(u32, u32)> = (relay_ranges.iter())
        .map(|r| r.split_once('-').unwrap())
        .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
        .collect();
    bounds.sort();
    assert!(
        bounds.windows(2).all(|w| w[0].1 < w[1].0),
        "relay ranges overlap: {relay_ranges:?}"
    );

    // HAProxy's TLS ports, each to one plain listener of every node; the
    // URLs the nodes hand out name them.
    let routes = routes(&read("cluster/haproxy.cfg"));
    let haproxy = &c["services"]["haproxy"];
    let certs = strings(&haproxy["volumes"])
        .into_iter()
        .find_map(|v| v.strip_prefix("./certs:")?.strip_suffix(":ro"))
        .expect("the certificates' directory, read-only")
        .to_string();
    let fronts = [
        ("443", "SWITCHBOARD_HTTP_ADDR"),
        ("8883", "SWITCHBOARD_MQTT_ADDR"),
        ("8084", "SWITCHBOARD_MQTT_WS_ADDR"),
    ];
    let published = strings(&haproxy["ports"]);
    let want: Vec<String> = fronts.iter().map(|(p, _)| format!("{p}:{p}")).collect();
    assert_eq!(published, want, "HAProxy's TLS ports alone are published");
    assert_eq!(routes.len(), fronts.len(), "no other frontend");
    for (front, key) in fronts {
        let route = &routes[front];
        assert!(
            route.bind.starts_with(&format!("ssl crt {certs}/")),
            "{front}: TLS with a certificate from the certs volume: {}",
            route.bind
        );
        let port = port_of(&env[key]);
        let addresses: Vec<String> = route.servers.iter().map(|s| s.1.clone()).collect();
        let want: Vec<String> = nodes.iter().map(|(n, _)| format!("{n}:{port}")).collect();
        assert_eq!(addresses, want, "port {front} goes to every node's {key}");
        assert!(
            route.servers.iter().all(|s| s.2.contains("send-proxy-v2")),
            "{:?}",
            route.servers
        );
    }
    assert_eq!(
        env["SWITCHBOARD_MQTT_PUBLIC_URL"],
        "mqtts://${SWITCHBOARD_DOMAIN:?set SWITCHBOARD_DOMAIN in .env}:8883"
    );
    assert_eq!(
        env["SWITCHBOARD_MQTT_WS_PUBLIC_URL"],
        "wss://${SWITCHBOARD_DOMAIN}:8084/mqtt"
    );
    let turn = format!("--static-auth-secret={}", env["SWITCHBOARD_TURN_SECRET"]);
    assert!(c["services"]["coturn"]["command"]
        .as_sequence()
        .unwrap()
        .contains(&turn.into()));
}

/// An unlabelled metric of the node whose HTTP listener is at `addr` and
/// takes PROXY headers only: asked with a LOCAL header (as the balancer's
/// health checks are), over HTTP/1.0.
async fn metric_behind_proxy(addr: SocketAddr, name: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let addr = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(LOCAL).await.unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    (answer.lines())
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {answer}"))
}

/// A loopback port free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The cluster compose file's nodes, with its environment filled in as an
/// operator's `.env` would, on a real PostgreSQL and nats-server, behind a
/// real HAProxy running cluster/haproxy.cfg with a certificate from the
/// test's CA: HTTPS answers through it, the nodes see each client's own
/// address (a client spending its code requests leaves another's
/// untouched), two MQTT over TLS connections spread over the nodes still
/// reach each other, and MQTT over secure WebSocket works.
#[tokio::test]
#[ignore = "needs PostgreSQL in E2E_POSTGRES_URL, nats-server and haproxy; scripts/test runs it"]
async fn the_cluster_compose_nodes_serve_behind_haproxy() {
    let admin = postgres_admin_url().expect("E2E_POSTGRES_URL must name a PostgreSQL server");
    let url = fresh_postgres_database(&admin).await.unwrap();
    let db = Database::Postgres { url: url.clone() };
    let nats = Nats::start().await.unwrap();
    let vars = dot_env(&[
        ("SWITCHBOARD_DOMAIN", "localhost"),
        ("PUBLIC_IP", "127.0.0.1"),
        ("POSTGRES_PASSWORD", "unused-here"),
        ("JWT_SECRET", "a-jwt-secret-of-the-test-of-32-chars"),
        ("ID_SECRET", "an-id-secret-of-the-test-of-32-chars"),
        ("TURN_SECRET", "a-turn-secret-of-the-test"),
        ("ADMIN_TOKEN", ""),
    ]);
    let c = cluster_compose();
    let mut config = read("cluster/haproxy.cfg");
    let mut servers = Vec::new();
    for (name, service) in nodes(&c) {
        let replaced = [
            ("SWITCHBOARD_DATABASE_URL", url.as_str()),
            ("SWITCHBOARD_NATS_URL", nats.url.as_str()),
        ];
        let service = interpolated(service, &vars);
        let server = server_as(&service, &db, &replaced).start().await.unwrap();
        let http: SocketAddr = server.http.trim_start_matches("http://").parse().unwrap();
        for (port, actual) in [(8080, http), (1883, server.mqtt), (8083, server.mqtt_ws)] {
            let to = format!("127.0.0.1:{}", actual.port());
            config = config.replace(&format!(" {name}:{port} "), &format!(" {to} "));
        }
        servers.push(server);
    }
    // HAProxy's certificate: the chain, then the key, in one file.
    let files = tempfile::tempdir().unwrap();
    let ours = ca("switchboard test CA");
    let (cert, key) = server_cert(&ours);
    let pem = write(files.path(), "switchboard.pem", &format!("{cert}{key}"));
    config = config.replace("/usr/local/etc/haproxy/certs/switchboard.pem", &pem);
    let mut fronts = BTreeMap::new();
    for port in [443, 8883, 8084] {
        let free = free_port();
        config = config.replace(
            &format!("bind :{port} "),
            &format!("bind 127.0.0.1:{free} "),
        );
        fronts.insert(port, SocketAddr::from(([127, 0, 0, 1], free)));
    }
    let _haproxy = HaProxy::start(&config).unwrap();
    let https = format!("https://localhost:{}", fronts[&443].port());
    let from = |ip: [u8; 4]| {
        let root = reqwest::Certificate::from_pem(ours.pem.as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .local_address(IpAddr::from(ip))
            .build();
        client.unwrap()
    };
    let mut ready = false;
    for _ in 0..100 {
        let answer = from([127, 0, 0, 1])
            .get(format!("{https}/readyz"))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "HTTPS through HAProxy");

    // Code requests are limited per client address, on each node: from
    // 127.0.0.2 until both nodes refuse, then 127.0.0.3 is still served.
    let ask = |client: &reqwest::Client, n: u32| {
        let body = json!({"phone": format!("+4855541{n:04}")});
        client
            .post(format!("{https}/v1/auth/otp"))
            .json(&body)
            .send()
    };
    let (spender, other) = (from([127, 0, 0, 2]), from([127, 0, 0, 3]));
    let mut refused_in_a_row = 0;
    for n in 0..40 {
        let status = ask(&spender, n).await.unwrap().status();
        refused_in_a_row = if status == 429 {
            refused_in_a_row + 1
        } else {
            0
        };
        if refused_in_a_row == 2 {
            break;
        }
    }
    assert_eq!(refused_in_a_row, 2, "both nodes refuse the spender");
    for n in 100..102 {
        let status = ask(&other, n).await.unwrap().status();
        assert!(status.is_success(), "another address is its own: {status}");
    }

    // One user's two devices, over TLS through HAProxy, land on both nodes
    // and still reach each other.
    let trust = client_config(&ours.pem).unwrap();
    let id = random_id();
    let mut devices = Vec::new();
    for device in ["phone", "tablet"] {
        let token = servers[0].token(&id, Some(device), "user", 600).unwrap();
        let client_id = format!("{id}:{device}");
        let login = Login::token(&client_id, &id, &token);
        let via = Via::Tls(trust.clone());
        devices.push(connect(fronts[&8883], via, login).await.unwrap());
    }
    for server in &servers {
        let http: SocketAddr = server.http.trim_start_matches("http://").parse().unwrap();
        let mut connections = 0.0;
        for _ in 0..100 {
            connections = metric_behind_proxy(http, "switchboard_mqtt_connections").await;
            if connections == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(connections, 1.0, "one device on each node");
    }
    let info = format!("users/{id}/info");
    assert!(granted(&devices[0].subscribe(&info).await.unwrap()));
    devices[1]
        .publish_json(&info, &json!({"nickname": "across"}))
        .await
        .unwrap();
    loop {
        if let Incoming::Publish { topic, payload, .. } = devices[0].next().await.unwrap() {
            let profile: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            if topic == info && profile["nickname"] == "across" {
                break;
            }
        }
    }
    let token = servers[1].token(&id, Some("laptop"), "user", 600).unwrap();
    let client_id = format!("{id}:laptop");
    let login = Login::token(&client_id, &id, &token);
    let wss = connect(fronts[&8084], Via::Wss(trust), login).await;
    assert!(
        wss.is_ok(),
        "MQTT over secure WebSocket through HAProxy: {:?}",
        wss.err()
    );
}

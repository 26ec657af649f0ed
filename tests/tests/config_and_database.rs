//! Startup refuses bad configuration and unreachable databases with a clear
//! message; migrations apply on SQLite and PostgreSQL; the open broker mode
//! is explicit and loud.

use sqlx::Connection;
use switchboard_e2e::mqtt::{connect, granted, Login, Refused, Via, REFUSED};
use switchboard_e2e::{random_id, run_switchboard, Database, Server};

#[test]
fn bad_values_stop_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    for (key, value) in [
        ("SWITCHBOARD_HTTP_ADDR", "not-an-address"),
        ("SWITCHBOARD_MQTT_ADDR", "127.0.0.1:99999"),
        ("SWITCHBOARD_ID_SCHEME", "sha1"),
        ("SWITCHBOARD_RING_TIMEOUT_S", "soon"),
        ("SWITCHBOARD_OPEN_BROKER", "maybe"),
        ("SWITCHBOARD_DATABASE_URL", "mysql://db/x"),
        ("SWITCHBOARD_DEFAULT_REGION", "Atlantis"),
        ("SWITCHBOARD_JWT_SECRET", "short"),
        ("SWITCHBOARD_MQTT_MAX_KEEPALIVE_S", "0"),
        (
            "SWITCHBOARD_OPEN_BROKER_REFUSED_FILTERS",
            "[\"test/nosubscribe\"]",
        ),
        ("SWITCHBOARD_NO_SUCH_SETTING", "1"),
    ] {
        let (status, stderr) =
            run_switchboard(&["serve"], &[("SWITCHBOARD_DATA_DIR", &data), (key, value)]).unwrap();
        assert_eq!(status.code(), Some(2), "{key}={value}: {stderr}");
        let name = key.trim_start_matches("SWITCHBOARD_").to_lowercase();
        assert!(
            stderr.contains(&name),
            "{key}={value}: message does not name {name}: {stderr}"
        );
    }
    // Settings that are only wrong together name the one to change.
    let turn = [
        ("SWITCHBOARD_TURN_LISTEN_ADDR", "0.0.0.0:0"),
        ("SWITCHBOARD_TURN_SECRET", "turn-secret-0123456789"),
    ];
    for (env, name) in [
        (
            &[
                ("SWITCHBOARD_RELAY_PORT_MIN", "50010"),
                ("SWITCHBOARD_RELAY_PORT_MAX", "50000"),
            ][..],
            "relay_port_min",
        ),
        (
            &[("SWITCHBOARD_RELAY_PORT_MIN", "50000")][..],
            "relay_port_max",
        ),
        (
            &[("SWITCHBOARD_RELAY_NAT_1TO1_IP", "0.0.0.0")][..],
            "relay_nat_1to1_ip",
        ),
        (&turn[..1], "turn_secret"),
        (&turn[..], "turn_relay_ip"),
    ] {
        let mut all = vec![("SWITCHBOARD_DATA_DIR", data.as_str())];
        all.extend_from_slice(env);
        let (status, stderr) = run_switchboard(&["serve"], &all).unwrap();
        assert_eq!(status.code(), Some(2), "{env:?}: {stderr}");
        assert!(
            stderr.contains(name),
            "{env:?}: does not name {name}: {stderr}"
        );
    }
    // Nothing was started or written for a refused configuration.
    assert!(!dir.path().join("switchboard.db").exists());
}

#[test]
fn bad_config_file_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(
        &file,
        "http_addr = \"127.0.0.1:0\"\nmqtt_max_queue = \"lots\"\n",
    )
    .unwrap();
    let (status, stderr) =
        run_switchboard(&["--config", file.to_str().unwrap(), "serve"], &[]).unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("mqtt_max_queue"), "{stderr}");

    let (status, stderr) = run_switchboard(&["--config", "/nonexistent.toml"], &[]).unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("does not exist"), "{stderr}");

    std::fs::write(&file, "this is = not toml [").unwrap();
    let (status, _) = run_switchboard(&["--config", file.to_str().unwrap()], &[]).unwrap();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn unreachable_database_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://switchboard:secret-password@127.0.0.1:1/switchboard";
    let (status, stderr) = run_switchboard(
        &["serve"],
        &[
            ("SWITCHBOARD_DATA_DIR", &data),
            ("SWITCHBOARD_DATABASE_URL", url),
        ],
    )
    .unwrap();
    assert!(!status.success());
    assert!(
        stderr
            .contains("connecting to database postgres://switchboard:***@127.0.0.1:1/switchboard"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret-password"),
        "the password leaked: {stderr}"
    );
}

/// The number a `SELECT count(*)` answers, on either database.
async fn count<'c, E>(c: E, sql: &'static str) -> i64
where
    E: sqlx::Executor<'c>,
    (i64,): for<'r> sqlx::FromRow<'r, <E::Database as sqlx::Database>::Row>,
    for<'q> <E::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, E::Database>,
{
    sqlx::query_scalar(sql).fetch_one(c).await.unwrap()
}

#[tokio::test]
async fn migrate_applies_on_the_test_database() {
    let db = Database::for_test().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let url = match &db {
        Database::Postgres { url } => url.clone(),
        Database::Sqlite => format!("sqlite://{}/switchboard.db", data),
    };
    let env = [
        ("SWITCHBOARD_DATA_DIR", data.as_str()),
        ("SWITCHBOARD_DATABASE_URL", url.as_str()),
    ];
    for _ in 0..2 {
        // Twice: applying again is a no-op, as at every restart.
        let (status, stderr) = run_switchboard(&["migrate"], &env).unwrap();
        assert!(status.success(), "{stderr}");
    }
    const MIGRATIONS: &str = "SELECT count(*) FROM _sqlx_migrations WHERE success";
    const USERS: &str = "SELECT count(*) FROM users";
    let (migrations, users) = match &db {
        Database::Postgres { url } => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            (count(&mut c, MIGRATIONS).await, count(&mut c, USERS).await)
        }
        Database::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            (count(&mut c, MIGRATIONS).await, count(&mut c, USERS).await)
        }
    };
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .count() as i64;
    assert_eq!(
        migrations, shipped,
        "every migration in migrations/ applied"
    );
    assert_eq!(users, 0);
}

#[tokio::test]
async fn open_broker_is_explicit_and_loud() {
    let db = Database::for_test().await.unwrap();
    let closed = Server::start(&db).await.unwrap();
    let anon = Login {
        client_id: "any-client",
        username: None,
        password: None,
    };
    assert!(
        connect(closed.mqtt, Via::Tcp, anon).await.is_err(),
        "closed by default"
    );

    let open = Server::builder(&db)
        .env("SWITCHBOARD_OPEN_BROKER", "true")
        // The Paho suite's subscribe_failure case (docs/configuration.md).
        .env(
            "SWITCHBOARD_OPEN_BROKER_REFUSED_FILTERS",
            "[\"test/nosubscribe\"]",
        )
        .start()
        .await
        .unwrap();
    let mut anyone = connect(open.mqtt, Via::Tcp, anon).await.unwrap();
    assert_eq!(anyone.subscribe("test/nosubscribe").await.unwrap(), REFUSED);
    assert!(granted(&anyone.subscribe("test/anything").await.unwrap()));
    let someone = random_id();
    let forged = Login {
        client_id: &someone,
        username: Some(&someone),
        password: Some("not-a-token"),
    };
    assert!(connect(open.mqtt, Via::Tcp, forged).await.is_ok());
    assert!(open.logged("OPEN_BROKER is on"));
    // A keep-alive (the harness asks 30 s) above mqtt_max_keepalive_s:
    // an MQTT 3.1.1 client, which cannot be told a shorter one, is refused.
    let short = Server::builder(&db)
        .env("SWITCHBOARD_OPEN_BROKER", "true")
        .env("SWITCHBOARD_MQTT_MAX_KEEPALIVE_S", "20")
        .start()
        .await
        .unwrap();
    assert_eq!(
        connect(short.mqtt, Via::Tcp, anon).await.err(),
        Some(Refused::Code(
            rumqttc::ConnectReturnCode::ServiceUnavailable
        ))
    );
}

/// Two servers on one data directory would be one node to the store,
/// each clearing the other's devices: the second refuses to start.
#[tokio::test]
async fn a_second_server_on_a_data_directory_refuses_to_start() {
    let db = Database::for_test().await.unwrap();
    let first = Server::start(&db).await.unwrap();
    let data = first.dir.path().display().to_string();
    let mut env = vec![
        ("SWITCHBOARD_DATA_DIR", data.as_str()),
        ("SWITCHBOARD_HTTP_ADDR", "127.0.0.1:0"),
        ("SWITCHBOARD_MQTT_ADDR", "127.0.0.1:0"),
        ("SWITCHBOARD_MQTT_WS_ADDR", "127.0.0.1:0"),
    ];
    let url;
    if let Database::Postgres { url: u } = &db {
        url = u.clone();
        env.push(("SWITCHBOARD_DATABASE_URL", &url));
    }
    let (status, stderr) = run_switchboard(&["serve"], &env).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("another switchboard runs on the data directory"),
        "{stderr}"
    );
}

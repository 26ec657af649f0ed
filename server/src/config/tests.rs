//! Loading: defaults, files, and the checks that name their key.

use super::*;

fn load_toml(text: &str) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!("sb-config-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switchboard.toml");
    std::fs::write(&file, text).unwrap();
    let r = Config::load(Some(&file));
    std::fs::remove_dir_all(&dir).unwrap();
    r
}

#[test]
fn defaults_are_the_embedded_setup() {
    let c = load_toml("").unwrap();
    assert_eq!(c.http.addr, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(c.mqtt.addr, Some("127.0.0.1:1883".parse().unwrap()));
    assert_eq!(c.mqtt.ws_addr, Some("127.0.0.1:8083".parse().unwrap()));
    assert_eq!(c.database_url, "sqlite://./data/switchboard.db?mode=rwc");
    assert_eq!(c.accounts.id_scheme, IdScheme::HmacSha256);
    assert!(c.mqtt.open.is_none());
    assert!(c.relay.is_some() && c.ice.turn.is_none());
    assert_eq!((c.push, c.sms), (Push::default(), Sms::Log));
}

#[test]
fn toml_values_are_read() {
    let c = load_toml("http_addr = \"127.0.0.1:9999\"\nid_scheme = \"md5\"\nring_timeout_s = 5\n")
        .unwrap();
    assert_eq!(c.http.addr.map(|a| a.port()), Some(9999));
    assert_eq!(c.accounts.id_scheme, IdScheme::Md5);
    assert_eq!(c.calls.ring_timeout, Duration::from_secs(5));
}

#[test]
fn bad_values_name_their_key() {
    for (text, key) in [
        ("http_addr = \"not an address\"", "http_addr"),
        ("ring_timeout_s = -1", "ring_timeout_s"),
        ("ring_timeout_s = 0", "ring_timeout_s"),
        ("id_scheme = \"sha1\"", "id_scheme"),
        ("default_region = \"XX\"", "default_region"),
        ("database_url = \"mysql://x\"", "database_url"),
        ("nats_url = \"nats://127.0.0.1:4222\"", "nats_url"),
        (
            "database_url = \"postgres://db/sb\"\nnats_url = \"nats://x:4222\"",
            "jwt_secret",
        ),
        (
            "database_url = \"postgres://db/sb\"\nnats_url = \"nats://x:4222\"\njwt_secret = \"0123456789abcdef0123456789abcdef\"",
            "id_secret",
        ),
        (
            "nats_url = \"http://x\"\njwt_secret = \"0123456789abcdef0123456789abcdef\"\nid_secret = \"0123456789abcdef0123456789abcdef\"",
            "nats_url",
        ),
        (
            "nats_url = \"nats://x:4222\"\njwt_secret = \"0123456789abcdef0123456789abcdef\"\nid_secret = \"0123456789abcdef0123456789abcdef\"",
            "nats_url",
        ),
        ("jwt_secret = \"short\"", "jwt_secret"),
        ("tls_cert_file = \"cert.pem\"", "tls_cert_file"),
        ("tls_key_file = \"key.pem\"", "tls_cert_file"),
        ("http_addr = \"\"", "http_addr"),
        (
            "acme_domains = [\"sb.example.org\"]\ntls_cert_file = \"c\"\ntls_key_file = \"k\"",
            "acme_domains",
        ),
        ("acme_domains = [\"not a name\"]", "acme_domains"),
        ("acme_domains = [\"-x.example.org\"]", "acme_domains"),
        (
            "acme_domains = [\"sb.example.org\"]\nacme_directory_url = \"http://acme\"",
            "acme_directory_url",
        ),
        ("mqtt_addr = \"\"", "mqtt_addr"),
        ("http_addr = \"nowhere\"", "http_addr"),
        ("sms_provider = \"webhook\"", "sms_webhook_url"),
        ("sms_provider = \"carrier-pigeon\"", "sms_provider"),
        ("no_such_key = 1", "no_such_key"),
        ("push_provider = \"webhook\"", "push_webhook_url"),
        ("push_provider = \"pigeon\"", "push_provider"),
        ("push_provider = [\"apns\", \"pigeon\"]", "push_provider"),
        ("apns_key_file = \"k.p8\"", "apns_key_file"),
        (
            "push_provider = \"webhook\"\npush_webhook_url = \"https://p\"\nfcm_service_account_file = \"sa.json\"",
            "fcm_service_account_file",
        ),
        ("push_ca_file = \"ca.pem\"", "push_ca_file"),
        ("push_provider = \"none, fcm\"", "push_provider"),
        ("push_provider = \"apns\"", "apns_key_file"),
        (
            "push_provider = \"apns\"\napns_key_file = \"k.p8\"",
            "apns_key_id",
        ),
        ("push_provider = [\"fcm\"]", "fcm_service_account_file"),
        (
            "push_provider = \"fcm\"\nfcm_service_account_file = \"sa.json\"\nfcm_url = \"http://fcm\"",
            "fcm_url",
        ),
        (
            "push_provider = \"webhook\"\npush_webhook_url = \"ftp://x\"",
            "push_webhook_url",
        ),
        ("relay_port_min = 40000", "relay_port_max"),
        ("relay_port_min = 5\nrelay_port_max = 4", "relay_port_min"),
        ("ice_turn_urls = [\"turn:x\"]", "turn_secret"),
        (
            "turn_listen_addr = \"0.0.0.0:3478\"\nturn_secret = \"0123456789abcdef\"",
            "turn_relay_ip",
        ),
        (
            "open_broker_refused_filters = [\"a\"]",
            "open_broker_refused_filters",
        ),
        ("mqtt_public_url = \"http://x\"", "mqtt_public_url"),
        ("mqtt_max_packet_bytes = 100", "mqtt_max_packet_bytes"),
    ] {
        let err = load_toml(text).expect_err(text).to_string();
        assert!(err.contains(key), "{text}: {err}");
    }
}

/// APNs settings with every required key.
const APNS: &str = "push_provider = \"apns\"
apns_key_file = \"AuthKey_ABC123DEFG.p8\"
apns_key_id = \"ABC123DEFG\"
apns_team_id = \"TEAM123456\"
apns_topic = \"com.example.app\"";

#[test]
fn push_providers_are_checked_and_combined() {
    for (change, key) in [
        ("apns_key_id = \"ABC\"", "apns_key_id"),
        ("apns_team_id = \"TEAM-12345\"", "apns_team_id"),
        ("apns_topic = \"com.example.app.voip\"", "apns_topic"),
        ("apns_topic = \"com example\"", "apns_topic"),
        ("apns_url = \"http://apns\"", "apns_url"),
        ("apns_environment = \"staging\"", "apns_environment"),
    ] {
        // A later line of a TOML table may not repeat a key: replace it.
        let name = change.split(' ').next().unwrap();
        let text: Vec<&str> = (APNS.lines())
            .filter(|l| !l.starts_with(&format!("{name} ")))
            .chain([change])
            .collect();
        let err = load_toml(&text.join("\n")).expect_err(change).to_string();
        assert!(err.contains(key), "{change}: {err}");
    }
    let apns = load_toml(APNS).unwrap().push.apns.unwrap();
    assert_eq!(apns.url, "https://api.push.apple.com");
    assert_eq!(
        (apns.key_id.as_str(), apns.topic.as_str()),
        ("ABC123DEFG", "com.example.app")
    );
    let sandbox = load_toml(&format!("{APNS}\napns_environment = \"sandbox\""));
    assert_eq!(
        sandbox.unwrap().push.apns.unwrap().url,
        "https://api.sandbox.push.apple.com"
    );
    let all = format!(
        "{}\npush_provider = \"apns, fcm,webhook\"\nfcm_service_account_file = \"sa.json\"
push_webhook_url = \"https://push.example\"\nfcm_url = \"https://fcm.test/\"",
        APNS.replace("push_provider = \"apns\"", "")
    );
    let push = load_toml(&all).unwrap().push;
    assert!(push.apns.is_some() && push.webhook.is_some());
    assert_eq!(push.fcm.unwrap().url, "https://fcm.test");
    let listed = load_toml("push_provider = [\"none\"]").unwrap().push;
    assert_eq!(listed, Push::default());
}

#[test]
fn a_missing_file_is_an_error() {
    let err = Config::load(Some(Path::new("/nonexistent/switchboard.toml"))).unwrap_err();
    assert!(err.to_string().contains("does not exist"));
}

/// What each section holds for settings that combine.
#[test]
fn combined_settings_become_one_value() {
    let secret = "turn_secret = \"0123456789abcdef\"";
    let c = load_toml(&format!(
        "{secret}\nturn_listen_addr = \"0.0.0.0:3478\"\nturn_relay_ip = \"192.0.2.1\""
    ))
    .unwrap();
    let turn = c.ice.turn.expect("embedded TURN");
    assert!(turn.urls.is_empty());
    let server = turn.server.expect("the server");
    assert_eq!(server.relay_ip, Some("192.0.2.1".parse().unwrap()));
    let unused = load_toml(secret).unwrap();
    assert!(
        unused.ice.turn.is_none(),
        "a secret alone hands out no TURN"
    );
    let c = load_toml("relay_enabled = false\npush_provider = \"webhook\"\npush_webhook_url = \"https://push.example\"").unwrap();
    assert!(c.relay.is_none());
    assert_eq!(c.push.webhook.as_deref(), Some("https://push.example"));
    assert!(c.push.apns.is_none() && c.push.fcm.is_none());
    let c = load_toml("relay_port_min = 40000\nrelay_port_max = 40100").unwrap();
    assert_eq!(c.relay.unwrap().ports, Some((40000, 40100)));
    let c = load_toml("open_broker = true\nopen_broker_refused_filters = [\"a/b\"]").unwrap();
    assert_eq!(c.mqtt.open.unwrap().refused_filters, ["a/b"]);
}

#[test]
fn an_empty_admin_token_is_none() {
    let c = load_toml("admin_token = \"\"").unwrap();
    assert_eq!(c.accounts.admin_token, None);
}

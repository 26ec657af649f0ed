//! Settings: embedded defaults, then a TOML file (`--config`), then
//! `SWITCHBOARD_*` environment variables, each overriding the one before.
//! Every key is named the same in all three (`http_addr` in TOML is
//! `SWITCHBOARD_HTTP_ADDR` in the environment). A bad value or an unknown key
//! stops startup with a message that names the key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use switchboard_protocol::{IdScheme, Region};

pub const ENV_PREFIX: &str = "SWITCHBOARD_";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database and generated keys live.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; SQLite under `data_dir` when unset.
    pub database_url: Option<String>,
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub mqtt_ws_addr: SocketAddr,
    /// Token signing key; generated and kept in `data_dir` when unset.
    pub jwt_secret: Option<String>,
    /// Key of the `hmac-sha256` id scheme; generated and kept in `data_dir`
    /// when unset. It is separate from the JWT key so that rotating the JWT
    /// key never changes anyone's user id.
    pub id_secret: Option<String>,
    pub id_scheme: IdScheme,
    /// Region for phone numbers typed without a country code (e.g. `PL`);
    /// when unset such numbers are refused.
    pub default_region: Option<String>,
    pub sms_provider: SmsProvider,
    pub sms_webhook_url: Option<String>,
    pub admin_token: Option<String>,
    pub ring_timeout_s: u64,
    /// How long a robot pairing code lives.
    pub pairing_code_ttl_s: u64,
    /// How long a robot has to answer a command before the server answers
    /// `timed_out` for it.
    pub command_timeout_s: u64,
    /// STUN servers handed to clients by `GET /v1/ice-servers`.
    pub ice_stun_urls: Vec<String>,
    /// TURN servers handed out with time-limited credentials made with
    /// `turn_secret` (coturn's `use-auth-secret` scheme).
    pub ice_turn_urls: Vec<String>,
    pub turn_secret: Option<String>,
    /// How long TURN credentials stay valid.
    pub turn_credential_ttl_s: u64,
    /// Where the embedded TURN server listens (UDP); off when unset. It
    /// checks credentials made with `turn_secret`, as coturn does.
    pub turn_listen_addr: Option<SocketAddr>,
    /// The address the embedded TURN server's relayed candidates carry
    /// (the public address); defaults to `turn_listen_addr`'s address.
    pub turn_relay_ip: Option<IpAddr>,
    /// Whether calls get a media relay room (`session/<sid>/webrtc/...`).
    pub relay_enabled: bool,
    /// The address the relay's UDP sockets bind, one per device in a call.
    /// A wildcard binds every interface but loopback.
    pub relay_bind_ip: IpAddr,
    /// The relay's UDP ports, `relay_port_min..=relay_port_max`; the system
    /// picks when both are unset.
    pub relay_port_min: Option<u16>,
    pub relay_port_max: Option<u16>,
    /// The public address the relay advertises instead of `relay_bind_ip`,
    /// for a relay in a container or behind a 1:1 NAT.
    pub relay_nat_1to1_ip: Option<IpAddr>,
    /// Wake-up pushes for callees with no device online: `none` or
    /// `webhook`.
    pub push_provider: PushProvider,
    pub push_webhook_url: Option<String>,
    /// Lifetime of access tokens minted by the server.
    pub access_token_ttl_s: u64,
    /// Lifetime of refresh tokens (each use makes a new one).
    pub refresh_token_ttl_s: u64,
    /// How long an MQTT connection may outlive its access token.
    pub token_grace_s: u64,
    /// Phone numbers one user may look up through discovery per day.
    pub discovery_daily_quota: u64,
    /// MQTT URLs handed to clients at sign-in; derived from the listen
    /// addresses when unset (set them behind NAT or a proxy).
    pub mqtt_public_url: Option<String>,
    pub mqtt_ws_public_url: Option<String>,
    /// Most messages queued for one MQTT session (offline or slow); past it
    /// the oldest are dropped, so a stuck client cannot exhaust memory.
    pub mqtt_max_queue: usize,
    /// Most QoS 1/2 messages in flight to one client before it acknowledges.
    pub mqtt_max_inflight: u16,
    /// Most subscriptions one client (session) holds; past it a SUBSCRIBE
    /// is refused, so no client grows the router without bound.
    pub mqtt_max_subscriptions: usize,
    /// How long an undelivered message is kept for a persistent session.
    pub mqtt_message_expiry_s: u64,
    /// Largest MQTT packet accepted.
    pub mqtt_max_packet_bytes: u32,
    /// `true` only for conformance testing: no login, no topic rules.
    pub open_broker: bool,
    /// With `open_broker`, filters whose SUBSCRIBE is refused (`0x80`),
    /// for conformance suites that test a refusal.
    pub open_broker_refused_filters: Vec<String>,
    /// Longest keep-alive a client may ask for: MQTT 5 clients asking more
    /// are told this one (Server Keep Alive); rmqtt refuses MQTT 3.1.1
    /// clients asking more (`0x03`).
    pub mqtt_max_keepalive_s: u16,
    /// Topic aliases the server may use toward an MQTT 5 client (the client
    /// caps it too); 0 sends every topic in full.
    pub mqtt_max_topic_aliases: u16,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    Log,
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushProvider {
    None,
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            http_addr: ([127, 0, 0, 1], 8080).into(),
            mqtt_addr: ([127, 0, 0, 1], 1883).into(),
            mqtt_ws_addr: ([127, 0, 0, 1], 8083).into(),
            jwt_secret: None,
            id_secret: None,
            id_scheme: IdScheme::HmacSha256,
            default_region: None,
            sms_provider: SmsProvider::Log,
            sms_webhook_url: None,
            admin_token: None,
            ring_timeout_s: 30,
            pairing_code_ttl_s: 120,
            command_timeout_s: 10,
            ice_stun_urls: Vec::new(),
            ice_turn_urls: Vec::new(),
            turn_secret: None,
            turn_credential_ttl_s: 24 * 60 * 60,
            turn_listen_addr: None,
            turn_relay_ip: None,
            relay_enabled: true,
            relay_bind_ip: [127, 0, 0, 1].into(),
            relay_port_min: None,
            relay_port_max: None,
            relay_nat_1to1_ip: None,
            push_provider: PushProvider::None,
            push_webhook_url: None,
            access_token_ttl_s: 15 * 60,
            refresh_token_ttl_s: 30 * 24 * 60 * 60,
            token_grace_s: 30,
            discovery_daily_quota: 2000,
            mqtt_public_url: None,
            mqtt_ws_public_url: None,
            mqtt_max_queue: 1000,
            mqtt_max_inflight: 64,
            mqtt_max_subscriptions: 2000,
            // Long enough for a phone woken by a push to collect its queued
            // invite and commands; a call that old has ended anyway.
            mqtt_message_expiry_s: 300,
            mqtt_max_packet_bytes: 64 * 1024,
            open_broker: false,
            open_broker_refused_filters: Vec::new(),
            mqtt_max_keepalive_s: u16::MAX,
            mqtt_max_topic_aliases: 0,
            log_format: LogFormat::Text,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError(e.into_iter().map(describe).collect::<Vec<_>>().join("; ")))?;
        config.check()?;
        Ok(config)
    }

    /// Checks that need more than a type: forms, ranges and combinations.
    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError(format!("{key}: {why}")));
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return bad(
                    "database_url",
                    format!("must start with sqlite: or postgres://, got {url:?}"),
                );
            }
        }
        if let Some(region) = &self.default_region {
            if let Err(e) = region.parse::<Region>() {
                return bad("default_region", e.to_string());
            }
        }
        for (key, secret) in [
            ("jwt_secret", &self.jwt_secret),
            ("id_secret", &self.id_secret),
        ] {
            if secret.as_ref().is_some_and(|s| s.len() < 32) {
                return bad(key, "must be at least 32 characters".into());
            }
        }
        for (key, url, schemes) in [
            (
                "mqtt_public_url",
                &self.mqtt_public_url,
                ["mqtt://", "mqtts://"],
            ),
            (
                "mqtt_ws_public_url",
                &self.mqtt_ws_public_url,
                ["ws://", "wss://"],
            ),
        ] {
            if let Some(u) = url {
                if !schemes.iter().any(|s| u.starts_with(s)) {
                    return bad(
                        key,
                        format!(
                            "must start with {} or {}, got {u:?}",
                            schemes[0], schemes[1]
                        ),
                    );
                }
            }
        }
        if self.admin_token.as_ref().is_some_and(|s| s.len() < 16) {
            return bad("admin_token", "must be at least 16 characters".into());
        }
        for url in &self.ice_stun_urls {
            if !url.starts_with("stun:") && !url.starts_with("stuns:") {
                return bad(
                    "ice_stun_urls",
                    format!("must be stun: or stuns: URLs, got {url:?}"),
                );
            }
        }
        for url in &self.ice_turn_urls {
            if !url.starts_with("turn:") && !url.starts_with("turns:") {
                return bad(
                    "ice_turn_urls",
                    format!("must be turn: or turns: URLs, got {url:?}"),
                );
            }
        }
        let turn_in_use = !self.ice_turn_urls.is_empty() || self.turn_listen_addr.is_some();
        if turn_in_use && self.turn_secret.as_ref().is_none_or(|s| s.len() < 16) {
            return bad(
                "turn_secret",
                "is required (at least 16 characters) when ice_turn_urls or turn_listen_addr are set"
                    .into(),
            );
        }
        if self
            .turn_listen_addr
            .is_some_and(|a| a.ip().is_unspecified())
            && self.turn_relay_ip.is_none()
        {
            return bad(
                "turn_relay_ip",
                "is required when turn_listen_addr is a wildcard: relayed candidates need the address clients reach".into(),
            );
        }
        if self.relay_nat_1to1_ip.is_some_and(|ip| ip.is_unspecified()) {
            return bad(
                "relay_nat_1to1_ip",
                "must be the address clients reach, not a wildcard".into(),
            );
        }
        if self.turn_relay_ip.is_some_and(|ip| ip.is_unspecified()) {
            return bad(
                "turn_relay_ip",
                "must be the address clients reach, not a wildcard".into(),
            );
        }
        match (self.relay_port_min, self.relay_port_max) {
            (None, None) => {}
            (Some(min), Some(max)) if min > 0 && min <= max => {}
            (Some(_), Some(_)) => {
                return bad(
                    "relay_port_min",
                    "must be above 0 and not above relay_port_max".into(),
                )
            }
            (Some(_), None) => {
                return bad("relay_port_max", "is required with relay_port_min".into())
            }
            (None, Some(_)) => {
                return bad("relay_port_min", "is required with relay_port_max".into())
            }
        }
        if self.push_provider == PushProvider::Webhook {
            match &self.push_webhook_url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                Some(u) => {
                    return bad(
                        "push_webhook_url",
                        format!("must be an http(s) URL, got {u:?}"),
                    )
                }
                None => {
                    return bad(
                        "push_webhook_url",
                        "is required when push_provider = \"webhook\"".into(),
                    )
                }
            }
        }
        if self.sms_provider == SmsProvider::Webhook {
            match &self.sms_webhook_url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                Some(u) => {
                    return bad(
                        "sms_webhook_url",
                        format!("must be an http(s) URL, got {u:?}"),
                    )
                }
                None => {
                    return bad(
                        "sms_webhook_url",
                        "is required when sms_provider = \"webhook\"".into(),
                    )
                }
            }
        }
        for (key, value) in [
            ("ring_timeout_s", self.ring_timeout_s),
            ("pairing_code_ttl_s", self.pairing_code_ttl_s),
            ("command_timeout_s", self.command_timeout_s),
            ("turn_credential_ttl_s", self.turn_credential_ttl_s),
            ("access_token_ttl_s", self.access_token_ttl_s),
            ("refresh_token_ttl_s", self.refresh_token_ttl_s),
            ("discovery_daily_quota", self.discovery_daily_quota),
            ("mqtt_message_expiry_s", self.mqtt_message_expiry_s),
            ("mqtt_max_queue", self.mqtt_max_queue as u64),
            ("mqtt_max_inflight", u64::from(self.mqtt_max_inflight)),
            ("mqtt_max_subscriptions", self.mqtt_max_subscriptions as u64),
        ] {
            if value == 0 {
                return bad(key, "must be greater than 0".into());
            }
        }
        if self.mqtt_max_packet_bytes < 1024 {
            return bad("mqtt_max_packet_bytes", "must be at least 1024".into());
        }
        if self.mqtt_max_keepalive_s == 0 {
            return bad("mqtt_max_keepalive_s", "must be greater than 0".into());
        }
        if !self.open_broker && !self.open_broker_refused_filters.is_empty() {
            return bad(
                "open_broker_refused_filters",
                "applies only with open_broker = true".into(),
            );
        }
        Ok(())
    }

    /// The region for numbers typed without a country code (checked at
    /// load, so parsing cannot fail here).
    pub fn region(&self) -> Option<Region> {
        self.default_region.as_ref().and_then(|r| r.parse().ok())
    }

    /// The database to use: the configured URL, or SQLite in `data_dir`.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("switchboard.db").display()
            ),
        }
    }
}

/// One problem per line of the log: `<key>: <what is wrong>`, naming the
/// variable when the value came from the environment and the file when it
/// came from TOML.
fn describe(e: figment::Error) -> String {
    // figment prefixes keys with its profile name ("default.").
    let path: Vec<&str> = e
        .path
        .iter()
        .map(String::as_str)
        .filter(|p| *p != "default")
        .collect();
    let key = path.join(".").to_lowercase();
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let source = e.metadata.as_ref().map(|m| match &m.source {
        Some(file) => file.to_string(),
        None => m.name.to_string(),
    });
    match (key.is_empty(), from_env, source) {
        (true, _, _) => e.kind.to_string(),
        (false, true, _) => format!("{ENV_PREFIX}{} (key {key}): {}", key.to_uppercase(), e.kind),
        (false, false, Some(source)) => format!("{key} (in {source}): {}", e.kind),
        (false, false, None) => format!("{key}: {}", e.kind),
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.mqtt_addr.to_string(), "127.0.0.1:1883");
        assert_eq!(c.mqtt_ws_addr.to_string(), "127.0.0.1:8083");
        assert_eq!(c.database_url(), "sqlite://./data/switchboard.db?mode=rwc");
        assert_eq!(c.id_scheme, IdScheme::HmacSha256);
        assert!(!c.open_broker);
    }

    #[test]
    fn toml_values_are_read() {
        let c =
            load_toml("http_addr = \"127.0.0.1:9999\"\nid_scheme = \"md5\"\nring_timeout_s = 5\n")
                .unwrap();
        assert_eq!(c.http_addr.port(), 9999);
        assert_eq!(c.id_scheme, IdScheme::Md5);
        assert_eq!(c.ring_timeout_s, 5);
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
            ("jwt_secret = \"short\"", "jwt_secret"),
            ("sms_provider = \"webhook\"", "sms_webhook_url"),
            ("sms_provider = \"carrier-pigeon\"", "sms_provider"),
            ("no_such_key = 1", "no_such_key"),
        ] {
            let err = load_toml(text).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/switchboard.toml"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}

//! The configuration, checked and grouped by concern. Operators write flat
//! keys (`settings.rs`: TOML, `SWITCHBOARD_*`); `Config::load` turns them
//! into sections whose types cannot hold an invalid combination (a webhook
//! without its URL, TURN without its secret, half a port range). A bad value
//! stops startup with a message that names the key.

mod settings;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard_protocol::{IdScheme, Region};
use switchboard_relay::RelayConfig;

pub use settings::LogFormat;
use settings::Settings;
use settings::{ApnsEnvironment, PushProvider, SmsProvider};

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the SQLite database and generated keys live.
    pub data_dir: PathBuf,
    /// The database: the configured URL, or SQLite in `data_dir`.
    pub database_url: String,
    /// The NATS server shared with the other nodes; `None`: one node.
    pub nats_url: Option<String>,
    pub log_format: LogFormat,
    pub accounts: Accounts,
    pub http: Http,
    pub mqtt: Mqtt,
    pub calls: Calls,
    pub ice: Ice,
    /// The media relay, when calls get one.
    pub relay: Option<RelayConfig>,
    /// TLS listeners, when a certificate is configured.
    pub tls: Option<Tls>,
    pub push: Push,
    pub sms: Sms,
}

/// Sign-in, ids and tokens.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub id_scheme: IdScheme,
    /// Generated and kept in `data_dir` when unset.
    pub id_secret: Option<String>,
    pub jwt_secret: Option<String>,
    /// For phone numbers typed without a country code.
    pub default_region: Option<Region>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long an MQTT connection may outlive its access token.
    pub token_grace: Duration,
    pub discovery_daily_quota: u64,
    pub admin_token: Option<String>,
}

/// Where the TLS listeners' certificate comes from.
#[derive(Debug, Clone)]
pub enum Certificates {
    Files { cert: PathBuf, key: PathBuf },
    Acme(Acme),
}

/// Certificates from an ACME server, cached in `<data_dir>/acme`.
#[derive(Debug, Clone)]
pub struct Acme {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory_url: String,
    pub ca_file: Option<PathBuf>,
}

/// The TLS listeners and where their certificate comes from.
#[derive(Debug, Clone)]
pub struct Tls {
    pub certificates: Certificates,
    pub mqtts_addr: SocketAddr,
    pub mqtt_wss_addr: SocketAddr,
    pub https_addr: SocketAddr,
}

fn tls(s: &Settings) -> Result<Option<Tls>, ConfigError> {
    let files = match (&s.tls_cert_file, &s.tls_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => {
            return bad(
                "tls_cert_file",
                "and tls_key_file are set together, or neither",
            )
        }
    };
    let certificates = match (files, s.acme_domains.is_empty()) {
        (Some(_), false) => {
            return bad(
                "acme_domains",
                "and tls_cert_file are two ways to one certificate: set one",
            )
        }
        (Some((cert, key)), true) => Certificates::Files { cert, key },
        (None, false) => {
            if !s.acme_directory_url.starts_with("https://") {
                return bad("acme_directory_url", "must be an https:// URL");
            }
            if let Some(bad_name) = s.acme_domains.iter().find(|d| !is_domain(d)) {
                return bad("acme_domains", format!("{bad_name:?} is not a domain name"));
            }
            Certificates::Acme(Acme {
                domains: s.acme_domains.clone(),
                email: s.acme_email.clone(),
                directory_url: s.acme_directory_url.clone(),
                ca_file: s.acme_ca_file.clone(),
            })
        }
        (None, true) => {
            let plain = [
                ("http_addr", s.http_addr),
                ("mqtt_addr", s.mqtt_addr),
                ("mqtt_ws_addr", s.mqtt_ws_addr),
            ];
            if let Some((key, _)) = plain.iter().find(|(_, addr)| addr.0.is_none()) {
                return bad(
                    key,
                    "is empty (off), and without a certificate nothing takes its place",
                );
            }
            return Ok(None);
        }
    };
    Ok(Some(Tls {
        certificates,
        mqtts_addr: s.mqtts_addr,
        mqtt_wss_addr: s.mqtt_wss_addr,
        https_addr: s.https_addr,
    }))
}

/// A name a certificate can be issued for: dot-separated labels of
/// letters, digits and hyphens.
fn is_domain(name: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    name.len() <= 253 && name.split('.').all(label)
}

#[derive(Debug, Clone)]
pub struct Http {
    /// Plain HTTP; off when unset.
    pub addr: Option<SocketAddr>,
    /// Connections begin with a PROXY protocol v2 header.
    pub proxy_protocol: bool,
}

#[derive(Debug, Clone)]
pub struct Mqtt {
    /// Plain MQTT and MQTT over WebSocket; each off when unset.
    pub addr: Option<SocketAddr>,
    pub ws_addr: Option<SocketAddr>,
    /// Handed to clients at sign-in; derived from the listeners when unset.
    pub public_url: Option<String>,
    pub ws_public_url: Option<String>,
    pub max_queue: usize,
    pub max_inflight: NonZeroU16,
    pub max_subscriptions: usize,
    pub message_expiry: Duration,
    pub stuck_after: Duration,
    pub max_packet_bytes: u32,
    pub max_keepalive_s: u16,
    pub max_topic_aliases: u16,
    /// Connections begin with a PROXY protocol v2 header.
    pub proxy_protocol: bool,
    /// Conformance testing only: no login, no topic rules.
    pub open: Option<OpenBroker>,
}

#[derive(Debug, Clone)]
pub struct OpenBroker {
    /// Filters whose SUBSCRIBE is refused anyway.
    pub refused_filters: Vec<String>,
}

/// Calls and robots' deadlines.
#[derive(Debug, Clone)]
pub struct Calls {
    pub ring_timeout: Duration,
    pub pairing_code_ttl: Duration,
    pub command_timeout: Duration,
}

/// What `GET /v1/ice-servers` hands out.
#[derive(Debug, Clone)]
pub struct Ice {
    pub stun_urls: Vec<String>,
    pub turn_credential_ttl: Duration,
    /// When TURN servers are handed out or embedded.
    pub turn: Option<Turn>,
}

#[derive(Debug, Clone)]
pub struct Turn {
    /// Signs the time-limited credentials (coturn's `use-auth-secret`).
    pub secret: String,
    /// External TURN servers; the embedded one's when empty.
    pub urls: Vec<String>,
    pub server: Option<TurnServer>,
}

/// The embedded TURN server.
#[derive(Debug, Clone)]
pub struct TurnServer {
    pub listen: SocketAddr,
    /// The address its relayed candidates carry; the listen address's when
    /// unset.
    pub relay_ip: Option<IpAddr>,
}

/// Wake-up pushes, to any of a webhook, APNs and FCM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Push {
    pub webhook: Option<String>,
    pub apns: Option<Apns>,
    pub fcm: Option<Fcm>,
    /// Roots the push services' HTTPS is checked against; the web's when
    /// unset.
    pub ca_file: Option<PathBuf>,
}

/// APNs with token authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apns {
    /// The `.p8` key (PKCS#8, P-256) that signs the provider tokens.
    pub key_file: PathBuf,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id; VoIP pushes go to `<topic>.voip`.
    pub topic: String,
    /// `https://api.push.apple.com` or the sandbox's, unless replaced.
    pub url: String,
}

/// FCM HTTP v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fcm {
    /// The service account's key (JSON): project, OAuth token URL, key.
    pub service_account_file: PathBuf,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sms {
    Log,
    Webhook { url: String },
}

fn bad<T>(key: &str, why: impl std::fmt::Display) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{key}: {why}")))
}

impl Config {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::try_from(Settings::load(file)?)
    }
}

impl TryFrom<Settings> for Config {
    type Error = ConfigError;

    fn try_from(s: Settings) -> Result<Config, ConfigError> {
        positive(&s)?;
        let database_url = match s.database_url.clone() {
            Some(url) if is_database_url(&url) => url,
            Some(url) => {
                return bad(
                    "database_url",
                    format!("must start with sqlite: or postgres://, got {url:?}"),
                )
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                s.data_dir.join("switchboard.db").display()
            ),
        };
        let nats_url = nats_url(&s, &database_url)?;
        Ok(Config {
            database_url,
            nats_url,
            log_format: s.log_format,
            accounts: accounts(&s)?,
            http: Http {
                addr: s.http_addr.0,
                proxy_protocol: s.proxy_protocol,
            },
            mqtt: mqtt(&s)?,
            calls: Calls {
                ring_timeout: Duration::from_secs(s.ring_timeout_s),
                pairing_code_ttl: Duration::from_secs(s.pairing_code_ttl_s),
                command_timeout: Duration::from_secs(s.command_timeout_s),
            },
            ice: ice(&s)?,
            relay: relay(&s)?,
            tls: tls(&s)?,
            push: push(&s)?,
            sms: match s.sms_provider {
                SmsProvider::Log => Sms::Log,
                SmsProvider::Webhook => Sms::Webhook {
                    url: webhook("sms_provider", "sms_webhook_url", &s.sms_webhook_url)?,
                },
            },
            data_dir: s.data_dir,
        })
    }
}

/// Nodes share their record, so several need PostgreSQL (SQLite is one
/// process's file), and the same keys: a key made in each node's data
/// directory would give a phone number a different id, and a token
/// another node refuses, on each node.
fn nats_url(s: &Settings, database_url: &str) -> Result<Option<String>, ConfigError> {
    let Some(url) = &s.nats_url else {
        return Ok(None);
    };
    if !url.starts_with("nats://") {
        return bad("nats_url", format!("must start with nats://, got {url:?}"));
    }
    if database_url.starts_with("sqlite:") {
        return bad(
            "nats_url",
            "needs a PostgreSQL database_url: the nodes share one record",
        );
    }
    for (key, secret) in [("jwt_secret", &s.jwt_secret), ("id_secret", &s.id_secret)] {
        if secret.is_none() {
            return bad(key, "must be set, the same on every node, with nats_url");
        }
    }
    Ok(Some(url.clone()))
}

fn is_database_url(url: &str) -> bool {
    ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

/// Counts and durations that must not be 0.
fn positive(s: &Settings) -> Result<(), ConfigError> {
    for (key, value) in [
        ("ring_timeout_s", s.ring_timeout_s),
        ("pairing_code_ttl_s", s.pairing_code_ttl_s),
        ("command_timeout_s", s.command_timeout_s),
        ("turn_credential_ttl_s", s.turn_credential_ttl_s),
        ("access_token_ttl_s", s.access_token_ttl_s),
        ("refresh_token_ttl_s", s.refresh_token_ttl_s),
        ("discovery_daily_quota", s.discovery_daily_quota),
        ("mqtt_message_expiry_s", s.mqtt_message_expiry_s),
        ("mqtt_stuck_after_ms", s.mqtt_stuck_after_ms),
        ("mqtt_max_queue", s.mqtt_max_queue as u64),
        ("mqtt_max_inflight", u64::from(s.mqtt_max_inflight)),
        ("mqtt_max_subscriptions", s.mqtt_max_subscriptions as u64),
        ("mqtt_max_keepalive_s", u64::from(s.mqtt_max_keepalive_s)),
    ] {
        if value == 0 {
            return bad(key, "must be greater than 0");
        }
    }
    Ok(())
}

fn accounts(s: &Settings) -> Result<Accounts, ConfigError> {
    let default_region = match &s.default_region {
        Some(region) => match region.parse::<Region>() {
            Ok(region) => Some(region),
            Err(e) => return bad("default_region", e),
        },
        None => None,
    };
    for (key, secret) in [("jwt_secret", &s.jwt_secret), ("id_secret", &s.id_secret)] {
        if secret.as_ref().is_some_and(|s| s.len() < 32) {
            return bad(key, "must be at least 32 characters");
        }
    }
    // Empty is unset (a compose file's `${ADMIN_TOKEN:-}`): no admin routes.
    let admin_token = s.admin_token.clone().filter(|t| !t.is_empty());
    if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        return bad("admin_token", "must be at least 16 characters");
    }
    Ok(Accounts {
        id_scheme: s.id_scheme,
        id_secret: s.id_secret.clone(),
        jwt_secret: s.jwt_secret.clone(),
        default_region,
        access_token_ttl: Duration::from_secs(s.access_token_ttl_s),
        refresh_token_ttl: Duration::from_secs(s.refresh_token_ttl_s),
        token_grace: Duration::from_secs(s.token_grace_s),
        discovery_daily_quota: s.discovery_daily_quota,
        admin_token,
    })
}

fn mqtt(s: &Settings) -> Result<Mqtt, ConfigError> {
    for (key, url, schemes) in [
        (
            "mqtt_public_url",
            &s.mqtt_public_url,
            ["mqtt://", "mqtts://"],
        ),
        (
            "mqtt_ws_public_url",
            &s.mqtt_ws_public_url,
            ["ws://", "wss://"],
        ),
    ] {
        if let Some(u) = url
            .as_ref()
            .filter(|u| !schemes.iter().any(|s| u.starts_with(s)))
        {
            let [a, b] = schemes;
            return bad(key, format!("must start with {a} or {b}, got {u:?}"));
        }
    }
    if s.mqtt_max_packet_bytes < 1024 {
        return bad("mqtt_max_packet_bytes", "must be at least 1024");
    }
    let open = match (s.open_broker, s.open_broker_refused_filters.is_empty()) {
        (true, _) => Some(OpenBroker {
            refused_filters: s.open_broker_refused_filters.clone(),
        }),
        (false, true) => None,
        (false, false) => {
            return bad(
                "open_broker_refused_filters",
                "applies only with open_broker = true",
            )
        }
    };
    Ok(Mqtt {
        addr: s.mqtt_addr.0,
        ws_addr: s.mqtt_ws_addr.0,
        public_url: s.mqtt_public_url.clone(),
        ws_public_url: s.mqtt_ws_public_url.clone(),
        max_queue: s.mqtt_max_queue,
        max_inflight: NonZeroU16::new(s.mqtt_max_inflight).expect("checked positive"),
        max_subscriptions: s.mqtt_max_subscriptions,
        message_expiry: Duration::from_secs(s.mqtt_message_expiry_s),
        stuck_after: Duration::from_millis(s.mqtt_stuck_after_ms),
        max_packet_bytes: s.mqtt_max_packet_bytes,
        max_keepalive_s: s.mqtt_max_keepalive_s,
        max_topic_aliases: s.mqtt_max_topic_aliases,
        proxy_protocol: s.proxy_protocol,
        open,
    })
}

fn ice(s: &Settings) -> Result<Ice, ConfigError> {
    for (key, urls, schemes) in [
        ("ice_stun_urls", &s.ice_stun_urls, ["stun:", "stuns:"]),
        ("ice_turn_urls", &s.ice_turn_urls, ["turn:", "turns:"]),
    ] {
        if let Some(u) = urls
            .iter()
            .find(|u| !schemes.iter().any(|s| u.starts_with(s)))
        {
            let [a, b] = schemes;
            return bad(key, format!("must be {a} or {b} URLs, got {u:?}"));
        }
    }
    if s.turn_relay_ip.is_some_and(|ip| ip.is_unspecified()) {
        return bad(
            "turn_relay_ip",
            "must be the address clients reach, not a wildcard",
        );
    }
    let server = s.turn_listen_addr.map(|listen| TurnServer {
        listen,
        relay_ip: s.turn_relay_ip,
    });
    let turn = match (
        &s.turn_secret,
        s.ice_turn_urls.is_empty() && server.is_none(),
    ) {
        (_, true) => None,
        (Some(secret), false) if secret.len() >= 16 => Some(Turn {
            secret: secret.clone(),
            urls: s.ice_turn_urls.clone(),
            server,
        }),
        (_, false) => return bad(
            "turn_secret",
            "is required (at least 16 characters) when ice_turn_urls or turn_listen_addr are set",
        ),
    };
    let server = turn.as_ref().and_then(|t| t.server.as_ref());
    if server.is_some_and(|t| t.listen.ip().is_unspecified() && t.relay_ip.is_none()) {
        return bad(
            "turn_relay_ip",
            "is required when turn_listen_addr is a wildcard: relayed candidates need the address clients reach",
        );
    }
    Ok(Ice {
        stun_urls: s.ice_stun_urls.clone(),
        turn_credential_ttl: Duration::from_secs(s.turn_credential_ttl_s),
        turn,
    })
}

fn relay(s: &Settings) -> Result<Option<RelayConfig>, ConfigError> {
    if s.relay_nat_1to1_ip.is_some_and(|ip| ip.is_unspecified()) {
        return bad(
            "relay_nat_1to1_ip",
            "must be the address clients reach, not a wildcard",
        );
    }
    let ports = match (s.relay_port_min, s.relay_port_max) {
        (None, None) => None,
        (Some(min), Some(max)) if min > 0 && min <= max => Some((min, max)),
        (Some(_), Some(_)) => {
            return bad(
                "relay_port_min",
                "must be above 0 and not above relay_port_max",
            )
        }
        (Some(_), None) => return bad("relay_port_max", "is required with relay_port_min"),
        (None, Some(_)) => return bad("relay_port_min", "is required with relay_port_max"),
    };
    Ok(s.relay_enabled.then_some(RelayConfig {
        bind_ip: s.relay_bind_ip,
        ports,
        nat_1to1_ip: s.relay_nat_1to1_ip,
    }))
}

/// The URL a webhook `provider` needs: set, and http(s).
fn push(s: &Settings) -> Result<Push, ConfigError> {
    let named = &s.push_provider.0;
    let on = |p: PushProvider| named.contains(&p);
    if on(PushProvider::None) && named.len() > 1 {
        return bad("push_provider", "\"none\" goes alone");
    }
    let webhook = match on(PushProvider::Webhook) {
        true => Some(webhook(
            "push_provider",
            "push_webhook_url",
            &s.push_webhook_url,
        )?),
        false => None,
    };
    let apns = match on(PushProvider::Apns) {
        true => Some(Apns {
            key_file: required("apns_key_file", "apns", &s.apns_key_file)?,
            key_id: apple_id("apns_key_id", &s.apns_key_id)?,
            team_id: apple_id("apns_team_id", &s.apns_team_id)?,
            topic: bundle_id(&s.apns_topic)?,
            url: match &s.apns_url {
                Some(url) => https("apns_url", url)?,
                None => match s.apns_environment {
                    ApnsEnvironment::Production => "https://api.push.apple.com".into(),
                    ApnsEnvironment::Sandbox => "https://api.sandbox.push.apple.com".into(),
                },
            },
        }),
        false => None,
    };
    let fcm = match on(PushProvider::Fcm) {
        true => Some(Fcm {
            service_account_file: required(
                "fcm_service_account_file",
                "fcm",
                &s.fcm_service_account_file,
            )?,
            url: https("fcm_url", &s.fcm_url)?,
        }),
        false => None,
    };
    // Settings of a provider that is off would be ignored: say so.
    let apns_keys = [
        ("apns_key_file", s.apns_key_file.is_some()),
        ("apns_key_id", s.apns_key_id.is_some()),
        ("apns_team_id", s.apns_team_id.is_some()),
        ("apns_topic", s.apns_topic.is_some()),
        ("apns_url", s.apns_url.is_some()),
    ];
    let fcm_keys = [(
        "fcm_service_account_file",
        s.fcm_service_account_file.is_some(),
    )];
    let ca_keys = [("push_ca_file", s.push_ca_file.is_some())];
    let none_on = webhook.is_none() && apns.is_none() && fcm.is_none();
    let unused = [
        (&apns_keys[..], apns.is_none(), "apns"),
        (&fcm_keys[..], fcm.is_none(), "fcm"),
        (&ca_keys[..], none_on, "a provider"),
    ];
    for (keys, off, provider) in unused {
        if let Some((key, _)) = keys.iter().find(|(_, set)| *set && off) {
            return bad(
                key,
                format!("is set, but push_provider does not name {provider}"),
            );
        }
    }
    Ok(Push {
        webhook,
        apns,
        fcm,
        ca_file: s.push_ca_file.clone(),
    })
}

fn required<T: Clone>(key: &str, provider: &str, value: &Option<T>) -> Result<T, ConfigError> {
    match value {
        Some(v) => Ok(v.clone()),
        None => bad(
            key,
            format!("is required when push_provider names {provider:?}"),
        ),
    }
}

/// An Apple key or team id: 10 letters and digits.
fn apple_id(key: &str, value: &Option<String>) -> Result<String, ConfigError> {
    let id = required(key, "apns", value)?;
    match id.len() == 10 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        true => Ok(id),
        false => bad(key, format!("must be 10 letters and digits, got {id:?}")),
    }
}

/// The app's bundle id, without `.voip` (added for VoIP pushes).
fn bundle_id(value: &Option<String>) -> Result<String, ConfigError> {
    let key = "apns_topic";
    let id = required(key, "apns", value)?;
    let chars_ok = (id.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if id.is_empty() || !chars_ok || id.starts_with('.') || id.ends_with('.') {
        return bad(
            key,
            format!("must be a bundle id such as com.example.app, got {id:?}"),
        );
    }
    if id.ends_with(".voip") {
        return bad(
            key,
            "is the app's bundle id; .voip is added for VoIP pushes",
        );
    }
    Ok(id)
}

fn https(key: &str, url: &str) -> Result<String, ConfigError> {
    match url.starts_with("https://") {
        true => Ok(url.trim_end_matches('/').to_owned()),
        false => bad(key, format!("must be an https:// URL, got {url:?}")),
    }
}

fn webhook(provider: &str, key: &str, url: &Option<String>) -> Result<String, ConfigError> {
    match url {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(u.clone()),
        Some(u) => bad(key, format!("must be an http(s) URL, got {u:?}")),
        None => bad(key, format!("is required when {provider} = \"webhook\"")),
    }
}

#[cfg(test)]
mod tests;

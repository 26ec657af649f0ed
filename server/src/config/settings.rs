//! The settings as an operator writes them: embedded defaults, then a TOML
//! file (`--config`), then `SWITCHBOARD_*` environment variables, each
//! overriding the one before. Every key is named the same in all three
//! (`http_addr` in TOML is `SWITCHBOARD_HTTP_ADDR` in the environment), so
//! they stay flat here; `Config` (the parent module) holds them checked
//! and grouped by concern.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use switchboard_protocol::IdScheme;

use super::ConfigError;

const ENV_PREFIX: &str = "SWITCHBOARD_";
/// Let's Encrypt's production directory.
const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the SQLite database and generated keys live.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; SQLite under `data_dir` when unset.
    pub database_url: Option<String>,
    /// `nats://host:port` of the NATS server the nodes of one service
    /// share; unset: one node alone, with no bus.
    pub nats_url: Option<String>,
    /// Every listener (HTTP, MQTT, MQTT over WebSocket) expects a PROXY
    /// protocol v2 header first, from a load balancer in front.
    pub proxy_protocol: bool,
    /// The plain listeners; `""` turns one off (with TLS, say).
    pub http_addr: Listen,
    pub mqtt_addr: Listen,
    pub mqtt_ws_addr: Listen,
    /// The certificate chain and its key (PEM): with both, the TLS
    /// listeners below run too.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Certificates from an ACME server (Let's Encrypt by default) for
    /// these names, instead of files: TLS-ALPN-01 on the HTTPS listener.
    pub acme_domains: Vec<String>,
    pub acme_email: Option<String>,
    pub acme_directory_url: String,
    /// Roots the ACME server's own HTTPS is checked against (a private
    /// ACME server); the web's roots when unset.
    pub acme_ca_file: Option<PathBuf>,
    /// MQTT over TLS.
    pub mqtts_addr: SocketAddr,
    /// MQTT over secure WebSocket.
    pub mqtt_wss_addr: SocketAddr,
    pub https_addr: SocketAddr,
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
    /// Wake-up pushes for callees with no device online: `none`, or any
    /// of `webhook`, `apns` and `fcm` (a list, or one string with commas).
    pub push_provider: PushProviders,
    pub push_webhook_url: Option<String>,
    /// APNs with token authentication: the `.p8` key, its id, the team's
    /// id, the app's bundle id (VoIP pushes go to `<topic>.voip`), and
    /// `production` or `sandbox`; `apns_url` replaces the environment's
    /// address.
    pub apns_key_file: Option<PathBuf>,
    pub apns_key_id: Option<String>,
    pub apns_team_id: Option<String>,
    pub apns_topic: Option<String>,
    pub apns_environment: ApnsEnvironment,
    pub apns_url: Option<String>,
    /// FCM HTTP v1: the service account's key file (JSON), which names the
    /// project and the OAuth token URL; `fcm_url` replaces FCM's address.
    pub fcm_service_account_file: Option<PathBuf>,
    pub fcm_url: String,
    /// Roots (PEM) the push services' HTTPS is checked against instead of
    /// the web's, for a private gateway.
    pub push_ca_file: Option<PathBuf>,
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
    /// How long a publisher waits for room in a reading subscriber's full
    /// queue before that subscriber counts as stuck.
    pub mqtt_stuck_after_ms: u64,
    /// Largest MQTT packet accepted.
    pub mqtt_max_packet_bytes: u32,
    /// `true` only for conformance testing: no login, no topic rules.
    pub open_broker: bool,
    /// With `open_broker`, filters whose SUBSCRIBE is refused (`0x80`),
    /// for conformance suites that test a refusal.
    pub open_broker_refused_filters: Vec<String>,
    /// Longest keep-alive a client may ask for: MQTT 5 clients asking more
    /// are told this one (Server Keep Alive); MQTT 3.1.1 clients asking
    /// more are refused (`0x03`), as they cannot be told.
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
    Apns,
    Fcm,
}

/// `push_provider`: one name, names joined by commas, or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushProviders(pub Vec<PushProvider>);

impl<'de> Deserialize<'de> for PushProviders {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        fn named<E: serde::de::Error>(name: &str) -> Result<PushProvider, E> {
            match name.trim() {
                "none" => Ok(PushProvider::None),
                "webhook" => Ok(PushProvider::Webhook),
                "apns" => Ok(PushProvider::Apns),
                "fcm" => Ok(PushProvider::Fcm),
                other => Err(E::custom(format!(
                    "unknown push provider {other:?}; expected none, webhook, apns or fcm"
                ))),
            }
        }
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = PushProviders;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("provider names, as a list or joined by commas")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PushProviders, E> {
                text.split(',')
                    .map(named)
                    .collect::<Result<_, _>>()
                    .map(PushProviders)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PushProviders, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(named(&name)?);
                }
                Ok(PushProviders(names))
            }
        }
        d.deserialize_any(Names)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironment {
    Production,
    Sandbox,
}

/// A listener's address, or none: written `""`, that listener is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

impl Serialize for Listen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(addr) => s.serialize_str(&addr.to_string()),
            None => s.serialize_str(""),
        }
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "" => Ok(Listen(None)),
            addr => addr
                .parse()
                .map(|a| Listen(Some(a)))
                .map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            nats_url: None,
            proxy_protocol: false,
            http_addr: Listen(Some(([127, 0, 0, 1], 8080).into())),
            mqtt_addr: Listen(Some(([127, 0, 0, 1], 1883).into())),
            mqtt_ws_addr: Listen(Some(([127, 0, 0, 1], 8083).into())),
            tls_cert_file: None,
            tls_key_file: None,
            acme_domains: Vec::new(),
            acme_email: None,
            acme_directory_url: LETS_ENCRYPT.into(),
            acme_ca_file: None,
            mqtts_addr: ([127, 0, 0, 1], 8883).into(),
            mqtt_wss_addr: ([127, 0, 0, 1], 8084).into(),
            https_addr: ([127, 0, 0, 1], 8443).into(),
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
            push_provider: PushProviders(vec![PushProvider::None]),
            push_webhook_url: None,
            apns_key_file: None,
            apns_key_id: None,
            apns_team_id: None,
            apns_topic: None,
            apns_environment: ApnsEnvironment::Production,
            apns_url: None,
            fcm_service_account_file: None,
            fcm_url: "https://fcm.googleapis.com".into(),
            push_ca_file: None,
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
            mqtt_stuck_after_ms: 10_000,
            mqtt_max_packet_bytes: 64 * 1024,
            open_broker: false,
            open_broker_refused_filters: Vec::new(),
            mqtt_max_keepalive_s: u16::MAX,
            mqtt_max_topic_aliases: 0,
            log_format: LogFormat::Text,
        }
    }
}

impl Settings {
    /// Defaults, then `file` if given, then the environment; a value of
    /// the wrong type or an unknown key is an error naming it.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
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
        figment
            .extract()
            .map_err(|e| ConfigError(e.into_iter().map(describe).collect::<Vec<_>>().join("; ")))
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

//! Prometheus metrics, served as text on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route pattern (not the raw path, so ids do not explode
    /// the label set).
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    /// `webhook`, `apns` or `fcm`.
    pub provider: &'static str,
    /// How each push ended: `sent`, `dead_token` (forgotten), `failed`
    /// or `gave_up` (out of time, no longer wanted, or the server
    /// stopped).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub reason: String,
}

/// Why the broker dropped a message meant for a subscriber, as
/// `switchboard_mqtt_messages_dropped_total` counts it.
pub const DROP_REASONS: [&str; 3] = ["queue_full", "expired", "other"];

pub struct Metrics {
    registry: Registry,
    pub mqtt_connections: Gauge,
    pub mqtt_token_timers: Gauge,
    pub robot_commands: Gauge,
    pub mqtt_messages_in: Counter,
    pub mqtt_messages_out: Counter,
    pub mqtt_logins_refused: Family<RefusalLabels, Counter>,
    pub mqtt_refused: Family<ActionLabels, Counter>,
    pub mqtt_dropped: Family<RefusalLabels, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub users_online: Gauge,
    pub devices_online: Gauge,
    pub presence_changes: Counter,
    pub graph_news: Counter,
    pub bus_unsent: Counter,
    pub calls_ended: Family<OutcomeLabels, Counter>,
    pub pushes: Family<PushLabels, Counter>,
    pub push_retries: Family<ProviderLabels, Counter>,
    pub invite_to_accept: Histogram,
    pub relay: switchboard_relay::RelayMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let mqtt_connections = Gauge::default();
        let mqtt_token_timers = Gauge::default();
        let robot_commands = Gauge::default();
        let mqtt_messages_in = Counter::default();
        let mqtt_messages_out = Counter::default();
        let mqtt_logins_refused = Family::default();
        let mqtt_refused: Family<ActionLabels, Counter> = Family::default();
        // Shown at 0 from the start, so a rate over them needs no first
        // refusal.
        for action in ["subscribe", "publish"] {
            drop(mqtt_refused.get_or_create(&ActionLabels { action }));
        }
        let mqtt_dropped: Family<RefusalLabels, Counter> = Family::default();
        for reason in DROP_REASONS {
            drop(mqtt_dropped.get_or_create(&RefusalLabels { reason }));
        }
        let http_requests = Family::default();
        let users_online = Gauge::default();
        let devices_online = Gauge::default();
        let presence_changes = Counter::default();
        let graph_news = Counter::default();
        let bus_unsent = Counter::default();
        let calls_ended = Family::default();
        // Seconds from invite to accept: people answer in 1 to 30 s.
        let invite_to_accept = Histogram::new([0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0]);
        registry.register("calls_ended", "Calls ended, by reason", calls_ended.clone());
        let pushes = Family::default();
        registry.register(
            "push",
            "Pushes to callees (per token; per note to the webhook), by service and how each ended",
            pushes.clone(),
        );
        let push_retries = Family::default();
        registry.register(
            "push_retries",
            "Pushes sent again: after a busy or failing answer, or with renewed credentials",
            push_retries.clone(),
        );
        registry.register(
            "invite_to_accept_seconds",
            "Time from an invite to its accept",
            invite_to_accept.clone(),
        );
        registry.register(
            "users_online",
            "Users with at least one device online",
            users_online.clone(),
        );
        registry.register(
            "devices_online",
            "Devices (MQTT client ids) online",
            devices_online.clone(),
        );
        registry.register(
            "presence_changes",
            "Presence publications (a device came or went)",
            presence_changes.clone(),
        );
        registry.register(
            "graph_news",
            "Who-sees-whom changes made on other nodes, read again from the database and applied here",
            graph_news.clone(),
        );
        registry.register(
            "bus_unsent",
            "Messages for other nodes not sent: NATS away, or its queue full",
            bus_unsent.clone(),
        );
        registry.register(
            "mqtt_connections",
            "MQTT clients connected now",
            mqtt_connections.clone(),
        );
        registry.register(
            "mqtt_token_timers",
            "MQTT connections waiting to be closed when their token expires",
            mqtt_token_timers.clone(),
        );
        registry.register(
            "robot_commands",
            "Robot command requests the server keeps (unanswered, or answered without a final status)",
            robot_commands.clone(),
        );
        registry.register(
            "mqtt_messages_received",
            "Messages received from MQTT clients: their PUBLISH packets and their Wills",
            mqtt_messages_in.clone(),
        );
        registry.register(
            "mqtt_messages_delivered",
            "Messages delivered to MQTT subscribers",
            mqtt_messages_out.clone(),
        );
        registry.register(
            "mqtt_logins_refused",
            "MQTT CONNECTs refused, by reason",
            mqtt_logins_refused.clone(),
        );
        registry.register(
            "mqtt_refused",
            "SUBSCRIBEs and PUBLISHes refused by the topic rules or payload checks",
            mqtt_refused.clone(),
        );
        registry.register(
            "mqtt_messages_dropped",
            "Messages the broker dropped for a subscriber, by reason: its queue was full (offline, or not reading), or the message expired waiting",
            mqtt_dropped.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            http_requests.clone(),
        );
        let relay = switchboard_relay::RelayMetrics::default();
        relay.register(&mut registry);
        Metrics {
            registry,
            mqtt_connections,
            mqtt_token_timers,
            robot_commands,
            mqtt_messages_in,
            mqtt_messages_out,
            mqtt_logins_refused,
            mqtt_refused,
            mqtt_dropped,
            http_requests,
            users_online,
            devices_online,
            presence_changes,
            graph_news,
            bus_unsent,
            calls_ended,
            pushes,
            push_retries,
            invite_to_accept,
            relay,
        }
    }

    pub fn count_push(&self, provider: &'static str, result: &'static str) {
        let labels = PushLabels { provider, result };
        self.pushes.get_or_create(&labels).inc();
    }

    pub fn count_push_retry(&self, provider: &'static str) {
        let labels = ProviderLabels { provider };
        self.push_retries.get_or_create(&labels).inc();
    }

    pub fn count_call_end(&self, reason: String) {
        self.calls_ended
            .get_or_create(&OutcomeLabels { reason })
            .inc();
    }

    /// Counts a refused `subscribe` or `publish`.
    pub fn count_refusal(&self, action: &'static str) {
        self.mqtt_refused
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

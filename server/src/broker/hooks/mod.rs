//! Our rules on the broker core: its events and types translated into
//! logins (`login`), the topic rules and the services (`subscribe`,
//! `publish`), presence, the values the services serve at SUBSCRIBE, and
//! the broker's counters.

mod login;
mod publish;
mod subscribe;

use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use switchboard_broker::{ConnectRefusal, Dropped, Ended, Granted, Login, Message, PubRefusal};
use switchboard_presence::Cause;
use switchboard_protocol::acl::{PairingRole, Principal};
use switchboard_protocol::topic::PairingField;
use switchboard_protocol::{Filter, Id, PairingCode, Sid, Topic};

use super::expiry::Expiry;
use super::facts::Facts;
use super::publisher::{self, Publisher};
use super::watchers::may_receive;
use super::Deps;
use crate::config::Config;
use crate::metrics::{Metrics, RefusalLabels};
use crate::services::Services;
use crate::social::Graph;

pub struct Hooks {
    logins: login::Logins,
    services: Services,
    graph: Arc<Graph>,
    metrics: Arc<Metrics>,
    /// Refusals reported to their clients.
    publisher: Publisher,
    mode: Mode,
}

/// How the hooks were configured.
struct Mode {
    /// Conformance-testing mode: everyone may log in and use any topic.
    open: bool,
    /// In that mode, filters whose SUBSCRIBE is refused anyway.
    refused_in_open: HashSet<String>,
    /// How long a message may wait for a subscriber (publishers may ask
    /// for less).
    message_expiry: Duration,
}

/// A connected client, as the hooks know it.
pub struct Client {
    /// Who logged in, and until when; `None` in open-broker mode.
    login: Option<login::Allowed>,
    address: IpAddr,
}

impl Client {
    fn principal(&self) -> Option<&Principal> {
        self.login.as_ref().map(|l| &l.principal)
    }
}

/// The label of a drop.
fn drop_reason(why: Dropped) -> &'static str {
    match why {
        Dropped::QueueFull => "queue_full",
        Dropped::Expired => "expired",
        Dropped::TooLarge => "other",
    }
}

/// The call a `session/<sid>/…` topic or filter names, and whether its
/// rules ask for the call accepted (media, commands), so the call is read
/// from the store first when this node does not know it so yet.
fn session_of(topic_or_filter: &str) -> Option<(Sid, bool)> {
    let rest = topic_or_filter.strip_prefix("session/")?;
    let (sid, tail) = rest.split_once('/')?;
    let sid = sid.parse().ok()?;
    Some((sid, !matches!(tail, "call" | "state")))
}

/// The pairing code a `pairing/<code>/…` topic or filter names.
fn code_of(topic_or_filter: &str) -> Option<PairingCode> {
    let rest = topic_or_filter.strip_prefix("pairing/")?;
    rest.split_once('/')?.0.parse().ok()
}

/// Why a connection ended, in presence's terms.
fn cause(ended: Ended) -> Cause {
    match ended {
        Ended::Graceful => Cause::Graceful,
        Ended::TakenOver => Cause::TakenOver,
        Ended::Lost => Cause::Lost,
    }
}

impl Hooks {
    pub fn new(deps: Deps, config: &Config, publisher: Publisher, expiry: Arc<Expiry>) -> Self {
        let logins = login::Logins::new(
            deps.tokens,
            deps.graph.clone(),
            deps.metrics.clone(),
            expiry,
            config.accounts.token_grace,
        );
        Hooks {
            logins,
            services: deps.services,
            graph: deps.graph,
            metrics: deps.metrics,
            publisher,
            mode: Mode {
                open: config.mqtt.open.is_some(),
                refused_in_open: (config.mqtt.open.iter())
                    .flat_map(|o| o.refused_filters.iter().cloned())
                    .collect(),
                message_expiry: config.mqtt.message_expiry,
            },
        }
    }

    pub fn graph(&self) -> Arc<Graph> {
        self.graph.clone()
    }

    /// What the rules need to know; `pairing`, where the user stands with
    /// the code the topic names (`pairing_role`).
    fn facts(&self, pairing: PairingRole) -> Facts<'_> {
        Facts {
            graph: &self.graph,
            calls: &self.services.calls,
            pairing,
            relay: self.services.relay.is_some(),
        }
    }

    /// Where `principal` stands with the pairing code a `pairing/<code>/…`
    /// topic or filter names, read from the store (nowhere for others).
    async fn pairing_role(&self, principal: &Principal, topic_or_filter: &str) -> PairingRole {
        match code_of(topic_or_filter) {
            Some(code) => self.services.robots.role(principal.id(), &code).await,
            None => PairingRole::None,
        }
    }

    /// For a subscription to one's own invites: the invites of the calls
    /// ringing for this device, so one that connects while it is called
    /// sees the call whatever its session held, on whichever node. (A
    /// persistent session may hold the same invite too: clients tell
    /// invites apart by `sid`.)
    async fn ringing_invites(&self, client: &Client, filter: &str) -> Option<Vec<Message>> {
        let device = &client.principal()?.client;
        let only = match Filter::from_str(filter).ok()? {
            Filter::Invites(callee, _) if callee == device.id => None,
            Filter::Topic(Topic::Invite { callee, sid }) if callee == device.id => Some(sid),
            _ => return None,
        };
        let invites = match self.services.calls.ringing_for(device, only.as_ref()).await {
            Ok(invites) => invites,
            Err(e) => {
                tracing::warn!(
                    filter,
                    "reading the invites a subscription is served: {e:#}"
                );
                Vec::new()
            }
        };
        let message = |(topic, payload)| publisher::message(&topic, payload, true);
        Some(invites.into_iter().map(message).collect())
    }

    /// For a subscription to a call's state: the state as stored, while
    /// the call lives and a while after it ended.
    async fn call_state(&self, filter: &str) -> Option<Vec<Message>> {
        let Ok(Filter::Topic(Topic::CallState(sid))) = Filter::from_str(filter) else {
            return None;
        };
        let state = match self.services.calls.current(&sid).await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(
                    filter,
                    "reading the call state a subscription is served: {e:#}"
                );
                None
            }
        };
        let topic = Topic::CallState(sid);
        let message = |payload| publisher::message(&topic, payload, true);
        Some(state.into_iter().map(message).collect())
    }

    /// For a subscription to a pairing code's `robotID`: the robot's id,
    /// while the code lives.
    async fn code_robot(&self, filter: &str) -> Option<Vec<Message>> {
        let field = PairingField::RobotId;
        let Ok(Filter::Topic(Topic::Pairing {
            code,
            field: PairingField::RobotId,
        })) = Filter::from_str(filter)
        else {
            return None;
        };
        let robot = match self.services.robots.robot_of(&code).await {
            Ok(robot) => robot,
            Err(e) => {
                tracing::warn!(filter, "reading the robot a subscription is served: {e:#}");
                None
            }
        };
        let topic = Topic::Pairing { code, field };
        let message = |robot: Id| publisher::message(&topic, robot.as_str().into(), true);
        Some(robot.into_iter().map(message).collect())
    }

    /// The user topics `filter` names, when the services serve them.
    fn served_topics(&self, filter: &str) -> Option<Vec<Topic>> {
        if self.mode.open {
            return None;
        }
        Filter::from_str(filter).ok()?.user_topics()
    }
}

impl switchboard_broker::Hooks for Hooks {
    type Client = Client;

    async fn authenticate(&self, login: &Login<'_>) -> Result<Client, ConnectRefusal> {
        let address = login.address.ip();
        if self.mode.open {
            return Ok(Client {
                login: None,
                address,
            });
        }
        let allowed = self.logins.authenticate(login).await?;
        Ok(Client {
            login: Some(allowed),
            address,
        })
    }

    async fn connected(&self, client: &Client, connection: u64) {
        self.metrics.mqtt_connections.inc();
        if let Some(login) = &client.login {
            let id = &login.principal.client;
            self.services
                .presence
                .connected(id.clone(), connection as i64)
                .await;
            let client_id = id.to_string();
            self.logins.connected(&client_id, connection, login.exp);
            // The newest connection of a client id wins on every node.
            let now = std::time::SystemTime::now();
            self.publisher.bus().logged_in(&client_id, now);
        }
    }

    fn disconnected(&self, client: &Client, connection: u64, ended: Ended) {
        self.metrics.mqtt_connections.dec();
        let Some(principal) = client.principal() else {
            return;
        };
        let id = &principal.client;
        // A takeover is the same device on a new connection: its media may
        // well still flow.
        if let (Some(relay), false) = (&self.services.relay, ended == Ended::TakenOver) {
            relay.leave(id);
        }
        self.services
            .presence
            .disconnected(id.clone(), connection as i64, cause(ended));
        self.logins.disconnected(&id.to_string(), connection);
    }

    async fn subscribe(&self, client: &Client, filter: &str) -> Result<(), Granted> {
        match client.principal() {
            Some(principal) => {
                if let Some((sid, until_accepted)) = session_of(filter) {
                    self.services.calls.recall(&sid, until_accepted).await;
                }
                Hooks::subscribe(self, principal, client.address, filter).await
            }
            None if self.mode.refused_in_open.contains(filter) => Err(Granted::Failed),
            None => Ok(()),
        }
    }

    async fn publish(&self, client: &Client, message: &mut Message) -> Result<(), PubRefusal> {
        self.metrics.mqtt_messages_in.inc();
        if let Some(principal) = client.principal() {
            if let Some((sid, until_accepted)) = session_of(&message.topic) {
                self.services.calls.recall(&sid, until_accepted).await;
            }
            Hooks::publish(self, principal, message).await?;
        }
        // Other nodes' subscribers get what this node's get.
        let to_others = || publisher::carried(message, Instant::now());
        self.publisher.bus().send(&message.topic, to_others);
        Ok(())
    }

    /// Whether a message may still reach `to`: not if it waited longer than
    /// `message_expiry` (unless its publisher set an expiry, or it is a
    /// retained state), nor if the graph no longer lets `to` see the
    /// topic's user.
    fn deliver(&self, to: &Client, message: &Message) -> bool {
        let waited = message.received.elapsed();
        if !message.retain && message.expires.is_none() && waited > self.mode.message_expiry {
            self.dropped(Dropped::Expired);
            return false;
        }
        if let Some(viewer) = to.principal() {
            if !may_receive(&self.graph, viewer.id(), &message.topic) {
                return false;
            }
        }
        self.metrics.mqtt_messages_out.inc();
        true
    }

    async fn served(&self, client: &Client, filter: &str) -> Option<Vec<Message>> {
        if self.mode.open {
            return None;
        }
        if let Some(invites) = self.ringing_invites(client, filter).await {
            return Some(invites);
        }
        if let Some(state) = self.call_state(filter).await {
            return Some(state);
        }
        if let Some(robot) = self.code_robot(filter).await {
            return Some(robot);
        }
        let topics = self.served_topics(filter)?;
        match self.services.current(&topics).await {
            Ok(current) => Some(
                current
                    .into_iter()
                    .map(|(topic, payload)| publisher::message(&topic, payload, true))
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(filter, "reading the values a subscription is served: {e:#}");
                Some(Vec::new())
            }
        }
    }

    /// The services keep what they serve (profiles, presence, call
    /// states, the robot behind a pairing code): the broker keeps the
    /// rest, which only open-broker mode allows.
    fn keeps_retained(&self, topic: &str) -> bool {
        if self.mode.open {
            return true;
        }
        let stored = matches!(
            Topic::from_str(topic),
            Ok(Topic::CallState(_)
                | Topic::Pairing {
                    field: PairingField::RobotId,
                    ..
                })
        );
        self.served_topics(topic).is_none() && !stored
    }

    fn dropped(&self, why: Dropped) {
        let reason = drop_reason(why);
        (self.metrics.mqtt_dropped)
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    fn interest(&self, filter: &str, held: bool) {
        self.publisher.bus().interest(filter, held);
    }

    async fn granted(&self) {
        self.publisher.bus().settled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_a_message_was_dropped() {
        for why in [Dropped::QueueFull, Dropped::Expired, Dropped::TooLarge] {
            assert!(crate::metrics::DROP_REASONS.contains(&drop_reason(why)));
        }
    }

    #[test]
    fn a_session_topic_names_its_call() {
        let sid = "0123456789abcdef0123456789abcdef";
        let cases = [
            (format!("session/{sid}/call"), Some(false)),
            (format!("session/{sid}/state"), Some(false)),
            (format!("session/{sid}/webrtc/c/up"), Some(true)),
            (format!("session/{sid}/+/request"), Some(true)),
            (format!("session/{sid}/move/response"), Some(true)),
            (format!("session/{sid}"), None),
            ("session/short/call".into(), None),
            ("session/+/call".into(), None),
            (format!("invite/{sid}/{sid}"), None),
        ];
        for (topic, want) in cases {
            let got = session_of(&topic);
            assert_eq!(got.as_ref().map(|(_, a)| *a), want, "{topic}");
            if let Some((got, _)) = got {
                assert_eq!(got.as_str(), sid);
            }
        }
    }

    #[test]
    fn a_pairing_topic_names_its_code() {
        let cases = [
            ("pairing/123456/robotID", Some("123456")),
            ("pairing/123456/+", Some("123456")),
            ("pairing/12345/status", None),
            ("pairing/123456", None),
            ("pairing/+/status", None),
            ("session/123456/call", None),
        ];
        for (topic, want) in cases {
            assert_eq!(
                code_of(topic).as_ref().map(PairingCode::as_str),
                want,
                "{topic}"
            );
        }
    }

    #[test]
    fn how_a_connection_ended() {
        let cases = [
            (Ended::TakenOver, Cause::TakenOver),
            (Ended::Graceful, Cause::Graceful),
            (Ended::Lost, Cause::Lost),
        ];
        for (ended, want) in cases {
            assert_eq!(cause(ended), want, "{ended:?}");
        }
    }
}

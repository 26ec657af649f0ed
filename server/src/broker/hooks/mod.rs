//! The rmqtt hooks, which only translate: rmqtt's events and types into
//! logins (`login`), the topic rules and the services (`subscribe`,
//! `publish`), presence, and the broker's counters.

mod login;
mod publish;
mod subscribe;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::session::Session;
use rmqtt::types::{Publish, PublishAclResult, Reason, SubscribeAclResult};
use switchboard_presence::Cause;
use switchboard_protocol::ClientId;
use tokio::sync::watch;

use super::expiry::Expiry;
use super::facts::Facts;
use super::publisher::Publisher;
use super::watchers::may_receive;
use super::Deps;
use crate::clock::now_ms;
use crate::config::Config;
use crate::metrics::{Metrics, RefusalLabels};
use crate::services::Services;
use crate::social::Graph;

use publish::REFUSED;

pub struct Hooks {
    logins: login::Logins,
    services: Services,
    graph: Arc<Graph>,
    metrics: Arc<Metrics>,
    /// Refusals reported to their clients.
    publisher: Publisher,
    mode: Mode,
    /// Connections open, for the stop to wait on.
    connections: watch::Sender<usize>,
}

/// How the hooks were configured.
struct Mode {
    /// Conformance-testing mode: everyone may log in and use any topic.
    open: bool,
    /// In that mode, filters whose SUBSCRIBE is refused anyway.
    refused_in_open: HashSet<String>,
    /// Whether the server may send topic aliases (`mqtt_max_topic_aliases`).
    topic_aliases: bool,
    /// How long a message may wait for a subscriber (publishers may ask
    /// for less).
    message_expiry: Duration,
}

/// The hook types `Hooks` handles.
pub const TYPES: [Type; 9] = [
    Type::ClientAuthenticate,
    Type::ClientConnected,
    Type::ClientDisconnected,
    Type::ClientSubscribeCheckAcl,
    Type::MessagePublish,
    Type::MessagePublishCheckAcl,
    Type::MessageDelivered,
    Type::MessageExpiryCheck,
    Type::MessageDropped,
];

/// The label of a drop; `None` for a publish the rules refused (counted
/// as a refusal already).
fn drop_reason(reason: &Reason) -> Option<&'static str> {
    match reason {
        Reason::PublishResult(_) => None,
        Reason::MessageQueueFull | Reason::InflightWindowFull => Some("queue_full"),
        Reason::MessageExpiration => Some("expired"),
        _ => Some("other"),
    }
}

impl Hooks {
    pub fn new(
        deps: Deps,
        config: &Config,
        publisher: Publisher,
        scx: ServerContext,
        expiry: Arc<Expiry>,
        connections: watch::Sender<usize>,
    ) -> Self {
        let logins = login::Logins::new(
            deps.tokens,
            deps.graph.clone(),
            deps.store,
            scx,
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
                topic_aliases: config.mqtt.max_topic_aliases > 0,
                message_expiry: config.mqtt.message_expiry,
            },
            connections,
        }
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            graph: &self.graph,
            calls: &self.services.calls,
            robots: &self.services.robots,
            relay: self.services.relay.is_some(),
        }
    }
}

/// Why a connection ended, in presence's terms.
fn cause(reason: &Reason) -> Cause {
    let items = match reason {
        Reason::Reasons(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    if items
        .iter()
        .any(|r| matches!(r, Reason::ConnectKicked(false)))
    {
        Cause::TakenOver
    } else if items
        .iter()
        .any(|r| matches!(r, Reason::ConnectDisconnect(Some(_))))
    {
        Cause::Graceful
    } else {
        Cause::Lost
    }
}

fn allow_publish() -> ReturnType {
    (
        false,
        Some(HookResult::PublishAclResult(PublishAclResult::allow())),
    )
}

fn reject_publish() -> ReturnType {
    // Keep the connection: MQTT 5 clients get PUBACK 0x87, and every client
    // the reason on clients/<clientId>/errors.
    (
        false,
        Some(HookResult::PublishAclResult(PublishAclResult::rejected(
            false, None,
        ))),
    )
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let open = self.mode.open;
        match param {
            Parameter::ClientAuthenticate(ci) => {
                let result = if open {
                    self.logins.allow_anyone(ci).await
                } else {
                    self.logins.authenticate(ci).await
                };
                return (false, Some(HookResult::AuthResult(result)));
            }
            Parameter::ClientConnected(s) => {
                self.metrics.mqtt_connections.inc();
                self.connections.send_modify(|n| *n += 1);
                if let (false, Ok(client)) = (open, s.id.client_id.parse()) {
                    let connection = s.id.create_time;
                    self.services.presence.connected(client, connection).await;
                }
                self.logins.connected(s);
            }
            Parameter::ClientDisconnected(s, reason) => {
                self.metrics.mqtt_connections.dec();
                if let (false, Ok(client)) = (open, s.id.client_id.parse()) {
                    self.disconnected(s, client, cause(reason));
                }
                self.logins.disconnected(s);
                // Last: the stop waits on this count, and presence must
                // already have the disconnect when it reaches 0.
                self.connections.send_modify(|n| *n = n.saturating_sub(1));
            }
            Parameter::ClientSubscribeCheckAcl(_, sub)
                if open
                    && self
                        .mode
                        .refused_in_open
                        .contains(sub.topic_filter.as_ref() as &str) =>
            {
                let refused = SubscribeAclResult::new_failure(SubscribeAckReason::UnspecifiedError);
                return (false, Some(HookResult::SubscribeAclResult(refused)));
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) if !open => {
                let result = self.subscribe(s, sub);
                return (false, Some(HookResult::SubscribeAclResult(result)));
            }
            Parameter::MessagePublish(session, _, publish) => {
                let decided = match session {
                    Some(s) => {
                        self.metrics.mqtt_messages_in.inc();
                        if open {
                            None
                        } else {
                            self.publish(s, publish).await
                        }
                    }
                    None => None,
                };
                let changed = match decided {
                    Some(p) => Some(self.with_properties(p)),
                    None if self.mode.topic_aliases && publish.properties.is_none() => {
                        Some(self.with_properties((*publish).clone()))
                    }
                    None => None,
                };
                if let Some(changed) = changed {
                    return (false, Some(HookResult::Publish(changed)));
                }
            }
            // The publish hook above decided; this reads its verdict.
            Parameter::MessagePublishCheckAcl(_, publish) if !open => {
                return if publish.topic == REFUSED {
                    reject_publish()
                } else {
                    allow_publish()
                };
            }
            Parameter::MessageExpiryCheck(s, _, publish) if self.expired_for(s, publish) => {
                return (false, Some(HookResult::MessageExpiry));
            }
            Parameter::MessageDropped(_, _, _, reason) => {
                if let Some(reason) = drop_reason(reason) {
                    self.metrics
                        .mqtt_dropped
                        .get_or_create(&RefusalLabels { reason })
                        .inc();
                }
            }
            Parameter::MessageDelivered(_, _, _) => {
                self.metrics.mqtt_messages_out.inc();
            }
            _ => {}
        }
        (true, acc)
    }
}

impl Hooks {
    fn disconnected(&self, s: &Session, client: ClientId, cause: Cause) {
        // A takeover is the same device on a new connection: its media may
        // well still flow.
        if let (Some(relay), false) = (&self.services.relay, cause == Cause::TakenOver) {
            relay.leave(&client);
        }
        self.services
            .presence
            .disconnected(client, s.id.create_time, cause);
    }

    /// Whether a message must not reach subscriber `s` (checked before each
    /// delivery): the graph no longer lets it see the topic's user, or the
    /// message waited longer than `message_expiry` without an expiry of its
    /// publisher's (rmqtt applies those).
    fn expired_for(&self, s: &Session, publish: &Publish) -> bool {
        let own_expiry = publish
            .properties
            .as_ref()
            .is_some_and(|p| p.message_expiry_interval.is_some());
        let created = publish.create_time.unwrap_or_else(now_ms);
        let expiry = self.mode.message_expiry.as_millis() as i64;
        if !own_expiry && now_ms().saturating_sub(created) > expiry {
            return true;
        }
        match (self.mode.open, s.id.client_id.parse::<ClientId>()) {
            (false, Ok(viewer)) => !may_receive(&self.graph, &viewer.id, &publish.topic),
            _ => false,
        }
    }

    /// With topic aliases on, rmqtt sends a message that has no properties
    /// (every MQTT 3.1.1 publisher's) with an empty topic and no alias once
    /// its topic has one: such messages get empty properties.
    fn with_properties(&self, mut publish: Publish) -> Publish {
        if self.mode.topic_aliases && publish.properties.is_none() {
            publish.properties = Some(Default::default());
        }
        publish
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_a_message_was_dropped() {
        let refused = PublishAclResult::rejected(false, None).pub_res();
        let cases = [
            (Reason::PublishResult(refused), None),
            (Reason::MessageQueueFull, Some("queue_full")),
            (Reason::InflightWindowFull, Some("queue_full")),
            (Reason::MessageExpiration, Some("expired")),
            (Reason::ConnectRemoteClose, Some("other")),
        ];
        for (reason, want) in cases {
            assert_eq!(drop_reason(&reason), want, "{reason:?}");
            assert!(want.is_none_or(|w| crate::metrics::DROP_REASONS.contains(&w)));
        }
    }

    #[test]
    fn how_a_connection_ended() {
        let taken_over = Reason::Reasons(vec![
            Reason::ConnectKicked(false),
            Reason::ConnectRemoteClose,
        ]);
        assert_eq!(cause(&taken_over), Cause::TakenOver);
        for lost in [
            Reason::ConnectKicked(true),
            Reason::Reasons(vec![Reason::ConnectKeepaliveTimeout]),
            Reason::ConnectRemoteClose,
            Reason::Reasons(vec![Reason::ConnectDisconnect(None)]),
        ] {
            assert_eq!(cause(&lost), Cause::Lost, "{lost:?}");
        }
    }
}

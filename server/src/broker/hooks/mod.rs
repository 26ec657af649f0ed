//! The rmqtt hooks: login on CONNECT, the topic rules on SUBSCRIBE and
//! PUBLISH, profiles published over MQTT, closing connections whose token
//! expired, and the broker's counters. The decisions live in pure functions
//! (`auth`, the protocol crate's `acl` and `profile`); this file translates
//! between them and rmqtt's types.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod calls;
mod robots;

use async_trait::async_trait;
use bytes::Bytes;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ConnectInfo, LastWill, Publish, PublishAclResult, Reason, SubscribeAclResult,
};
use switchboard_presence::{Cause, Event};
use switchboard_protocol::acl::{authorize, Action, Denial, Principal};
use switchboard_protocol::profile::{accept_published, parse_profile};
use switchboard_protocol::topic::PairingField;
use switchboard_protocol::{ClientId, ErrorCode, Id, Topic};

use super::auth::check_login;
use super::expiry::Expiry;
use super::publisher::Publisher;
use super::watchers::may_receive;
use super::Deps;
use crate::calls::{CallService, Facts};
use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::{Metrics, RefusalLabels};
use crate::presence::PresenceService;
use crate::push::Push;
use crate::robots::RobotService;
use crate::social::Graph;
use crate::store::{now_ms, Store};
use crate::token::{now_s, Tokens};

pub struct Hooks {
    tokens: Tokens,
    metrics: Arc<Metrics>,
    /// Conformance-testing mode: everyone may log in and use any topic.
    open: bool,
    /// In that mode, filters whose SUBSCRIBE is refused anyway.
    refused_in_open: HashSet<String>,
    /// Whether the server may send topic aliases (`mqtt_max_topic_aliases`).
    topic_aliases: bool,
    graph: Arc<Graph>,
    store: Store,
    limits: Arc<Limits>,
    presence: Arc<PresenceService>,
    calls: Arc<CallService>,
    robots: Arc<RobotService>,
    push: Arc<Push>,
    relay: Option<switchboard_relay::Relay>,
    publisher: Publisher,
    scx: ServerContext,
    /// Connections to close when their token expires.
    expiry: Arc<Expiry>,
    /// How long a connection may outlive its token.
    token_grace: Duration,
    /// How long a message may wait for a subscriber (publishers may ask
    /// for less).
    message_expiry: Duration,
    /// Logged-in clients by client id.
    logins: Mutex<HashMap<String, Login>>,
}

struct Login {
    principal: Principal,
    /// Token expiry, seconds since the epoch.
    exp: u64,
    /// The connection, once connected. A takeover's old connection may
    /// report its end after the new one logged in; this tells them apart.
    connection: Option<rmqtt::types::Id>,
}

/// The hook types `Hooks` handles.
pub const TYPES: [Type; 8] = [
    Type::ClientAuthenticate,
    Type::ClientConnected,
    Type::ClientDisconnected,
    Type::ClientSubscribeCheckAcl,
    Type::MessagePublish,
    Type::MessagePublishCheckAcl,
    Type::MessageDelivered,
    Type::MessageExpiryCheck,
];

impl Hooks {
    pub fn new(
        deps: Deps,
        config: &Config,
        publisher: Publisher,
        scx: ServerContext,
        expiry: Arc<Expiry>,
    ) -> Self {
        Hooks {
            tokens: deps.tokens,
            metrics: deps.metrics,
            open: config.open_broker,
            refused_in_open: config.open_broker_refused_filters.iter().cloned().collect(),
            topic_aliases: config.mqtt_max_topic_aliases > 0,
            graph: deps.graph,
            store: deps.store,
            limits: deps.limits,
            presence: deps.presence,
            calls: deps.calls,
            robots: deps.robots,
            push: deps.push,
            relay: deps.relay,
            publisher,
            scx,
            expiry,
            token_grace: Duration::from_secs(config.token_grace_s),
            message_expiry: Duration::from_secs(config.mqtt_message_expiry_s),
            logins: Mutex::new(HashMap::new()),
        }
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            graph: &self.graph,
            calls: &self.calls,
            robots: &self.robots,
            relay: self.relay.is_some(),
        }
    }

    fn principal(&self, client_id: &str) -> Option<Principal> {
        let logins = self.logins.lock().expect("logins lock");
        logins.get(client_id).map(|l| l.principal.clone())
    }
}

fn will_topic(ci: &ConnectInfo) -> Option<String> {
    ci.last_will().map(|w| match w {
        LastWill::V3(w) => w.topic.to_string(),
        LastWill::V5(w) => w.topic.to_string(),
    })
}

/// Where client messages on `users/<id>/isConnected` (the use case's "true"
/// and Last Will "false") are sent instead: the server alone publishes
/// that topic, from what the broker sees, so a Will can never make a user
/// look offline while another device is online. Nobody may subscribe to a
/// `$` topic, so nothing arrives anywhere.
pub const ABSORBED: &str = "$switchboard/absorbed";

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

pub(super) fn allow_publish() -> ReturnType {
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
        match param {
            Parameter::ClientAuthenticate(ci) => return self.authenticate(ci).await,
            Parameter::ClientConnected(s) => {
                self.metrics.mqtt_connections.inc();
                self.connected(s);
            }
            Parameter::ClientDisconnected(s, reason) => {
                self.metrics.mqtt_connections.dec();
                self.expiry.forget(&s.id);
                self.metrics.mqtt_token_timers.set(self.expiry.len() as i64);
                if let (false, Ok(client)) = (self.open, s.id.client_id.parse()) {
                    let cause = cause(reason);
                    // A takeover is the same device on a new connection:
                    // its media may well still flow.
                    if let (Some(relay), false) = (&self.relay, cause == Cause::TakenOver) {
                        relay.leave(&client);
                    }
                    self.presence.event(Event::Disconnected {
                        client,
                        connection: s.id.create_time,
                        at: now_ms(),
                        cause,
                    });
                }
                let mut logins = self.logins.lock().expect("logins lock");
                let key = s.id.client_id.to_string();
                if logins
                    .get(&key)
                    .is_some_and(|l| l.connection.as_ref() == Some(&s.id))
                {
                    logins.remove(&key);
                }
            }
            Parameter::ClientSubscribeCheckAcl(_, sub)
                if self.open
                    && self
                        .refused_in_open
                        .contains(sub.topic_filter.as_ref() as &str) =>
            {
                let refused = SubscribeAclResult::new_failure(SubscribeAckReason::UnspecifiedError);
                return (false, Some(HookResult::SubscribeAclResult(refused)));
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) if !self.open => {
                let filter = sub.topic_filter.to_string();
                let verdict = match self.principal(&s.id.client_id) {
                    Some(p) => self
                        .look_up_code(&p, s.id.remote_addr.map(|a| a.ip()), &filter)
                        .and_then(|()| authorize(&p, Action::Subscribe, &filter, &self.facts())),
                    None => Err(Denial::NotYours),
                };
                let result = match verdict {
                    Ok(()) => SubscribeAclResult::new_success(sub.opts.qos(), None),
                    Err(denial) => {
                        tracing::debug!(client_id = %s.id.client_id, filter, %denial, "subscription refused");
                        self.metrics.count_refusal("subscribe");
                        SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                    }
                };
                return (false, Some(HookResult::SubscribeAclResult(result)));
            }
            Parameter::MessagePublish(session, _, publish) => {
                if session.is_some() {
                    self.metrics.mqtt_messages_in.inc();
                }
                let rewritten = match (self.open, session) {
                    (false, Some(s)) => self.rewrite(s, publish),
                    _ => None,
                };
                let rewritten = match rewritten {
                    Some(p) => Some(self.with_properties(p)),
                    None if self.topic_aliases && publish.properties.is_none() => {
                        Some(self.with_properties((*publish).clone()))
                    }
                    None => None,
                };
                if let Some(rewritten) = rewritten {
                    return (false, Some(HookResult::Publish(rewritten)));
                }
            }
            Parameter::MessagePublishCheckAcl(s, publish) if !self.open => {
                return self.check_publish(s, publish).await
            }
            Parameter::MessageExpiryCheck(s, _, publish) if self.expired_for(s, publish) => {
                return (false, Some(HookResult::MessageExpiry));
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
    async fn authenticate(&self, ci: &ConnectInfo) -> ReturnType {
        if self.open {
            super::takeover::end_clean_session(&self.scx, ci.client_id()).await;
            return (
                false,
                Some(HookResult::AuthResult(AuthResult::Allow(false, None))),
            );
        }
        let username = ci.username().map(|u| u.as_ref());
        let password = ci.password().map(|p| p.as_ref());
        let client_id: &str = ci.client_id();
        let will = will_topic(ci);
        let result = match check_login(&self.tokens, username, password, client_id, will.as_deref())
        {
            Ok((claims, principal)) => {
                // An account made while the server ran (by the CLI, or
                // another process) is known from its first login on.
                if let Err(e) = self.graph.learn(&self.store, principal.id().as_str()).await {
                    tracing::warn!(client_id, "learning a new account: {e:#}");
                }
                let login = Login {
                    principal,
                    exp: claims.exp,
                    connection: None,
                };
                self.logins
                    .lock()
                    .expect("logins lock")
                    .insert(client_id.to_string(), login);
                super::takeover::end_clean_session(&self.scx, client_id).await;
                AuthResult::Allow(false, None)
            }
            Err(refusal) => {
                tracing::info!(client_id, reason = refusal.label(), "MQTT login refused");
                self.metrics
                    .mqtt_logins_refused
                    .get_or_create(&RefusalLabels {
                        reason: refusal.label(),
                    })
                    .inc();
                if refusal.is_credentials() {
                    AuthResult::BadUsernameOrPassword
                } else {
                    AuthResult::NotAuthorized
                }
            }
        };
        (false, Some(HookResult::AuthResult(result)))
    }

    /// Records the connection, to be closed once its token has expired and
    /// the grace period passed.
    fn connected(&self, s: &Session) {
        let client_id = s.id.client_id.to_string();
        if let (false, Ok(client)) = (self.open, client_id.parse()) {
            self.presence.event(Event::Connected {
                client,
                connection: s.id.create_time,
                at: now_ms(),
            });
        }
        let exp = {
            let mut logins = self.logins.lock().expect("logins lock");
            let Some(login) = logins.get_mut(&client_id) else {
                return;
            };
            login.connection = Some(s.id.clone());
            login.exp
        };
        let wait = Duration::from_secs(exp.saturating_sub(now_s())) + self.token_grace;
        self.expiry.watch(s.id.clone(), wait);
        self.metrics.mqtt_token_timers.set(self.expiry.len() as i64);
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
        if !own_expiry && now_ms().saturating_sub(created) > self.message_expiry.as_millis() as i64
        {
            return true;
        }
        match (self.open, s.id.client_id.parse::<ClientId>()) {
            (false, Ok(viewer)) => !may_receive(&self.graph, &viewer.id, &publish.topic),
            _ => false,
        }
    }

    /// With topic aliases on, rmqtt sends a message that has no properties
    /// (every MQTT 3.1.1 publisher's) with an empty topic and no alias once
    /// its topic has one: such messages get empty properties.
    fn with_properties(&self, mut publish: Publish) -> Publish {
        if self.topic_aliases && publish.properties.is_none() {
            publish.properties = Some(Default::default());
        }
        publish
    }

    /// What a client's publish becomes before the publish check, by
    /// topic; `None` leaves it as it is (the check then decides).
    ///
    /// - Retained: only a profile (below) and a robot's id on its own
    ///   pairing code; any other retain flag is dropped, so clients cannot
    ///   fill the retainer.
    /// - On its own `users/<me>/isConnected` (the use case's `true`, or its
    ///   Last Will): absorbed, see `ABSORBED`. Someone else's goes on to be
    ///   refused and reported by the check.
    /// - On its own `users/<me>/info`, a valid profile: the profile as the
    ///   server stores it, normalized, stamped with the server's time, and
    ///   retained.
    fn rewrite(&self, s: &Session, publish: &Publish) -> Option<Publish> {
        let mine = |owner: &Id| {
            self.principal(&s.id.client_id)
                .is_some_and(|p| p.id() == owner)
        };
        let mut rewritten = publish.clone();
        match publish.topic.parse::<Topic>().ok() {
            Some(Topic::UserIsConnected(owner)) if mine(&owner) => {
                rewritten.topic = ABSORBED.into();
                rewritten.retain = false;
            }
            Some(Topic::UserInfo(owner)) if mine(&owner) => {
                let profile = parse_profile(&publish.payload, &owner, now_ms()).ok()?;
                rewritten.retain = true;
                rewritten.payload =
                    Bytes::from(serde_json::to_vec(&profile).expect("profile serializes"));
            }
            // The robot's id on its own code, retained while the code lives
            // (the server clears it).
            Some(Topic::Pairing {
                field: PairingField::RobotId,
                ..
            }) => return None,
            // Nothing else a client sends is kept for later subscribers:
            // retained state is the server's, and it clears what it keeps.
            _ if publish.retain => rewritten.retain = false,
            _ => return None,
        }
        Some(rewritten)
    }

    async fn check_publish(&self, s: &Session, publish: &Publish) -> ReturnType {
        let topic = publish.topic.to_string();
        if topic == ABSORBED {
            // An allowed isConnected message, already taken out of routing.
            return allow_publish();
        }
        let Some(principal) = self.principal(&s.id.client_id) else {
            return reject_publish();
        };
        if let Err(denial) = authorize(&principal, Action::Publish, &topic, &self.facts()) {
            let code = match denial {
                Denial::NotInContract => ErrorCode::BadRequest,
                _ => ErrorCode::Forbidden,
            };
            return self
                .refuse(&principal, &topic, code, denial.to_string())
                .await;
        }
        let payload = &publish.payload;
        match topic.parse::<Topic>() {
            Ok(Topic::UserInfo(owner)) => self.profile(&principal, &topic, owner, payload).await,
            Ok(Topic::Pairing { code, field }) => {
                self.pairing(&principal, &topic, code, field, payload).await
            }
            Ok(Topic::Command { sid, command, part }) => {
                self.command(&principal, &topic, (sid, command, part), payload)
                    .await
            }
            Ok(Topic::Invite { callee, sid }) => {
                self.invite(&principal, &topic, callee, sid, payload).await
            }
            Ok(Topic::CallAction(sid)) => self.call_action(&principal, &topic, sid, payload).await,
            Ok(Topic::WebRtc { sid, .. }) => self.webrtc(&principal, &topic, sid, payload).await,
            _ => allow_publish(),
        }
    }

    /// A profile its owner publishes on `users/<me>/info` (already made
    /// canonical by `rewrite`): rate limited, checked, stored.
    async fn profile(
        &self,
        principal: &Principal,
        topic: &str,
        owner: Id,
        payload: &[u8],
    ) -> ReturnType {
        if self
            .limits
            .profile_per_user
            .check_key(&owner.to_string())
            .is_err()
        {
            let message = "too many profile changes; try again in a minute".to_string();
            return self
                .refuse(principal, topic, ErrorCode::RateLimited, message)
                .await;
        }
        let profile = match accept_published(payload, &owner) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .refuse(principal, topic, ErrorCode::BadRequest, e.to_string())
                    .await
            }
        };
        if let Err(e) = self.store.put_profile(&profile).await {
            return self
                .refuse_internal(principal, topic, "storing a profile published over MQTT", e)
                .await;
        }
        allow_publish()
    }

    /// A failure of ours while handling a publish: logged in full, refused
    /// without details.
    pub(super) async fn refuse_internal(
        &self,
        principal: &Principal,
        topic: &str,
        what: &str,
        e: anyhow::Error,
    ) -> ReturnType {
        tracing::error!("{what}: {e:#}");
        self.refuse(
            principal,
            topic,
            ErrorCode::Internal,
            "internal error".into(),
        )
        .await
    }

    pub(super) async fn refuse(
        &self,
        principal: &Principal,
        topic: &str,
        code: ErrorCode,
        message: String,
    ) -> ReturnType {
        tracing::debug!(client_id = %principal.client, topic, message, "publish refused");
        self.metrics.count_refusal("publish");
        self.publisher
            .report(&principal.client, topic, code, message)
            .await;
        reject_publish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! A client's PUBLISH (or its Will), decided once, in rmqtt's publish hook:
//! the topic parsed, the rules applied, the message handed to its service,
//! and what the broker routes instead of it. A refusal is reported here,
//! and only here. For a PUBLISH, rmqtt's ACL check comes right after on
//! the same message and reads the verdict from the topic (`REFUSED`); a
//! Will has no ACL check, so a refused or absorbed one goes to its `$`
//! topic, which nobody may subscribe to.

use bytes::Bytes;
use rmqtt::session::Session;
use rmqtt::types::Publish;
use switchboard_protocol::acl::{check_publish, Principal};
use switchboard_protocol::topic::PairingField;
use switchboard_protocol::Topic;

use super::Hooks;
use crate::media;
use crate::refused::Refused;

/// Where client messages on `users/<id>/isConnected` (the use case's "true"
/// and Last Will "false") are sent instead: the server alone publishes
/// that topic, from what the broker sees, so a Will can never make a user
/// look offline while another device is online. Nobody may subscribe to a
/// `$` topic, so nothing arrives anywhere.
const ABSORBED: &str = "$switchboard/absorbed";

/// Where a refused message is sent instead: the ACL check rejects it
/// (MQTT 5 clients get PUBACK 0x87).
pub const REFUSED: &str = "$switchboard/refused";

/// What becomes of an allowed message.
enum Route {
    /// On to its subscribers as sent, but never retained: retained state
    /// is the server's, and it clears what it keeps.
    AsSent,
    /// As sent, retain flag and all: a robot's id on its own code, which
    /// the server clears when the code ends.
    Kept,
    /// The server's form of it instead, retained (a profile).
    Replaced(Vec<u8>),
    /// Out of routing (see `ABSORBED`).
    Absorbed,
}

impl Hooks {
    /// What the broker routes instead of `publish`; `None` routes it as
    /// it is.
    pub(super) async fn publish(&self, s: &Session, publish: &Publish) -> Option<Publish> {
        let Some(principal) = self.logins.principal(&s.id.client_id) else {
            // A Will sent after its connection's login ended (MQTT 5 Will
            // Delay): nobody to report to, so only counted.
            self.metrics.count_refusal("publish");
            return Some(to(publish, REFUSED));
        };
        let route = match self.decide_publish(&principal, publish).await {
            Ok(route) => route,
            Err(refused) => {
                tracing::debug!(client_id = %principal.client, topic = %publish.topic,
                    message = refused.message, "publish refused");
                self.metrics.count_refusal("publish");
                self.publisher
                    .report(
                        &principal.client,
                        &publish.topic,
                        refused.code,
                        refused.message,
                    )
                    .await;
                return Some(to(publish, REFUSED));
            }
        };
        match route {
            Route::Kept => None,
            Route::AsSent if !publish.retain => None,
            Route::AsSent => {
                let mut p = publish.clone();
                p.retain = false;
                Some(p)
            }
            Route::Replaced(payload) => {
                let mut p = publish.clone();
                p.payload = Bytes::from(payload);
                p.retain = true;
                Some(p)
            }
            Route::Absorbed => Some(to(publish, ABSORBED)),
        }
    }

    async fn decide_publish(
        &self,
        principal: &Principal,
        publish: &Publish,
    ) -> Result<Route, Refused> {
        let topic = check_publish(principal, &publish.topic, &self.facts())?;
        let (services, me, payload) = (&self.services, &principal.client, &publish.payload);
        match topic {
            // The rules let only the owner publish these two.
            Topic::UserIsConnected(_) => Ok(Route::Absorbed),
            Topic::UserInfo(owner) => {
                let profile = services.profiles.published(&owner, payload).await?;
                let payload = serde_json::to_vec(&profile).expect("profile serializes");
                Ok(Route::Replaced(payload))
            }
            Topic::Pairing { code, field } => {
                services
                    .robots
                    .pairing_published(&me.id, &code, field, payload)
                    .await?;
                Ok(match field {
                    PairingField::RobotId => Route::Kept,
                    _ => Route::AsSent,
                })
            }
            Topic::Command { sid, command, part } => {
                services
                    .robots
                    .command_published(&sid, &command, part, payload)?;
                Ok(Route::AsSent)
            }
            Topic::Invite { callee, sid } => {
                services.calls.invite(me, callee, sid, payload).await?;
                Ok(Route::AsSent)
            }
            Topic::CallAction(sid) => {
                services.calls.act(&sid, me, payload)?;
                Ok(Route::AsSent)
            }
            Topic::WebRtc { sid, .. } => {
                media::signal(services.relay.as_ref(), &sid, me, payload)?;
                Ok(Route::AsSent)
            }
            // The server's own topics: the rules refuse them to clients.
            Topic::UserPresence(_) | Topic::CallState(_) | Topic::ClientErrors(_) => {
                Ok(Route::AsSent)
            }
        }
    }
}

/// `publish` sent to `topic` instead, not retained.
fn to(publish: &Publish, topic: &str) -> Publish {
    let mut p = publish.clone();
    p.topic = topic.into();
    p.retain = false;
    p
}

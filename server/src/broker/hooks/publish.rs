//! A client's PUBLISH (or its Will), decided once: the topic parsed, the
//! rules applied, the message handed to its service, and what the broker
//! routes in its place. A refusal is reported here, and only here (MQTT 5
//! clients also get PUBACK 0x87).

use bytes::Bytes;
use switchboard_broker::{Message, PubRefusal};
use switchboard_protocol::acl::{check_publish, Principal};
use switchboard_protocol::topic::PairingField;
use switchboard_protocol::{validate, Topic};

use super::Hooks;
use crate::holder::Held;
use crate::media;
use crate::refused::Refused;

/// Where client messages on `users/<id>/isConnected` (the use case's "true"
/// and Last Will "false") are sent instead: the server alone publishes
/// that topic, from what the broker sees, so a Will can never make a user
/// look offline while another device is online. Nobody may subscribe to a
/// `$` topic, so nothing arrives anywhere.
const ABSORBED: &str = "$switchboard/absorbed";

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
    /// Decides `message` from `principal`: refused (reported to its
    /// client), or what goes on to its subscribers.
    pub(super) async fn publish(
        &self,
        principal: &Principal,
        message: &mut Message,
    ) -> Result<(), PubRefusal> {
        let route = match self.decide_publish(principal, message).await {
            Ok(route) => route,
            Err(refused) => {
                tracing::debug!(client_id = %principal.client, topic = %message.topic,
                    message = refused.message, "publish refused");
                self.metrics.count_refusal("publish");
                self.publisher
                    .report(
                        &principal.client,
                        &message.topic,
                        refused.code,
                        refused.message,
                    )
                    .await;
                return Err(PubRefusal::NotAuthorized);
            }
        };
        match route {
            Route::Kept => {}
            Route::AsSent => message.retain = false,
            Route::Replaced(payload) => {
                message.payload = Bytes::from(payload);
                message.retain = true;
            }
            Route::Absorbed => {
                message.topic = ABSORBED.into();
                message.retain = false;
            }
        }
        Ok(())
    }

    async fn decide_publish(
        &self,
        principal: &Principal,
        message: &Message,
    ) -> Result<Route, Refused> {
        let pairing = self.pairing_role(principal, &message.topic).await;
        let topic = check_publish(principal, &message.topic, &self.facts(pairing))?;
        let (services, me, payload) = (&self.services, &principal.client, &message.payload);
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
                let Some(node) = services.calls.held_elsewhere(&sid) else {
                    (services.robots).command_published(&sid, &command, part, payload)?;
                    return Ok(Route::AsSent);
                };
                // The call's node checks it against the open requests
                // and publishes it.
                validate::command(part, payload)?;
                let held = Held::Command {
                    from: me.clone(),
                    topic: message.topic.to_string(),
                    payload: String::from_utf8_lossy(payload).into_owned(),
                };
                held.send(&node, self.publisher.bus())?;
                Ok(Route::Absorbed)
            }
            Topic::Invite { callee, sid } => {
                services.calls.invite(me, callee, sid, payload).await?;
                Ok(Route::AsSent)
            }
            Topic::CallAction(sid) => {
                services.calls.act(&sid, me, payload).await?;
                Ok(Route::AsSent)
            }
            Topic::WebRtc { sid, .. } => {
                let elsewhere =
                    (services.calls.held_elsewhere(&sid)).map(|node| (node, self.publisher.bus()));
                media::signal(services.relay.as_ref(), elsewhere, &sid, me, payload)?;
                Ok(Route::AsSent)
            }
            // The server's own topics: the rules refuse them to clients.
            Topic::UserPresence(_) | Topic::CallState(_) | Topic::ClientErrors(_) => {
                Ok(Route::AsSent)
            }
        }
    }
}

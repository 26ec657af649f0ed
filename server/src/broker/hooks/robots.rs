//! Robots over MQTT: pairing-code look-ups (counted), claims that make
//! owners, and commands with their request ids.

use std::net::IpAddr;

use rmqtt::hook::ReturnType;
use switchboard_pairing::{CommandRefusal, PairingRefusal, Pending};
use switchboard_protocol::acl::{Denial, Principal, PrincipalKind};
use switchboard_protocol::payload::{
    CommandRequest, CommandResponse, PairingOutcome, MAX_PAYLOAD_BYTES,
};
use switchboard_protocol::topic::{CommandPart, PairingField};
use switchboard_protocol::{CommandName, ErrorCode, PairingCode, Sid, Topic};

use super::{allow_publish, Hooks};
use crate::robots::finish_pairing;

impl Hooks {
    /// A user subscribing to a code's `robotID` looks it up; a code that
    /// does not exist counts against the guess budgets of the user and of
    /// its network `address` (brute force).
    pub(super) fn look_up_code(
        &self,
        principal: &Principal,
        address: Option<IpAddr>,
        filter: &str,
    ) -> Result<(), Denial> {
        let Ok(Topic::Pairing {
            code,
            field: PairingField::RobotId,
        }) = filter.parse::<Topic>()
        else {
            return Ok(());
        };
        if principal.kind == PrincipalKind::Robot {
            return Ok(());
        }
        match self.robots.look(principal.id(), address, &code) {
            Ok(_) => Ok(()),
            Err(PairingRefusal::TooManyTries) => {
                tracing::info!(client_id = %principal.client, "pairing code lookups refused: too many tries");
                Err(Denial::NotYours)
            }
            Err(_) => Err(Denial::NotYours),
        }
    }

    /// Pairing messages the rules allow: the robot's id on `robotID`, and
    /// a user's claim on `userID`, which makes it an owner.
    pub(super) async fn pairing(
        &self,
        principal: &Principal,
        topic: &str,
        code: PairingCode,
        field: PairingField,
        payload: &[u8],
    ) -> ReturnType {
        let me = principal.id().as_str().as_bytes();
        if payload != me {
            let message = "the payload must be your own id".to_string();
            return self
                .refuse(principal, topic, ErrorCode::BadRequest, message)
                .await;
        }
        if field != PairingField::UserId {
            return allow_publish();
        }
        let robot = match self.robots.claim(principal.id(), &code) {
            Ok(robot) => robot,
            Err(refusal) => {
                return self
                    .refuse(principal, topic, ErrorCode::Conflict, refusal.to_string())
                    .await
            }
        };
        if let Err(e) = self
            .store
            .add_owner(robot.as_str(), principal.id().as_str())
            .await
        {
            return self
                .refuse_internal(principal, topic, "storing an ownership", e)
                .await;
        }
        self.graph
            .set_owner(robot.as_str(), principal.id().as_str(), true);
        tracing::info!(robot = %robot, owner = %principal.id(), "robot paired");
        finish_pairing(
            &self.publisher,
            &code,
            PairingOutcome::Paired,
            robot,
            Some(principal.id().clone()),
        )
        .await;
        allow_publish()
    }

    /// Commands the rules allow: an owner's request (needs a `requestId`
    /// unused in this call) or the robot's response (to a request made).
    pub(super) async fn command(
        &self,
        principal: &Principal,
        topic: &str,
        (sid, command, part): (Sid, CommandName, CommandPart),
        payload: &[u8],
    ) -> ReturnType {
        let bad = |m: String| (ErrorCode::BadRequest, m);
        let parsed = if payload.len() > MAX_PAYLOAD_BYTES {
            Err(bad(format!(
                "payload larger than {MAX_PAYLOAD_BYTES} bytes"
            )))
        } else if part == CommandPart::Request {
            serde_json::from_slice::<CommandRequest>(payload)
                .map(|r| (r.request_id, None))
                .map_err(|e| bad(format!("not a command request (it needs a requestId): {e}")))
        } else {
            serde_json::from_slice::<CommandResponse>(payload)
                .map(|r| (r.request_id, Some(r.status)))
                .map_err(|e| {
                    bad(format!(
                        "not a command response (requestId and status): {e}"
                    ))
                })
        };
        let (request_id, status) = match parsed {
            Ok((id, status)) if !id.is_empty() && id.len() <= 128 => (id, status),
            Ok(_) => {
                return self
                    .refuse(
                        principal,
                        topic,
                        ErrorCode::BadRequest,
                        "requestId must be 1 to 128 characters".into(),
                    )
                    .await
            }
            Err((code, message)) => return self.refuse(principal, topic, code, message).await,
        };
        let request = Pending {
            sid,
            command,
            request_id,
        };
        let outcome = match status {
            None => self.robots.request(request),
            Some(status) => self.robots.respond(&request, &status),
        };
        match outcome {
            Ok(()) => allow_publish(),
            Err(refusal) => {
                let code = match refusal {
                    CommandRefusal::TooMany => ErrorCode::RateLimited,
                    CommandRefusal::InUse | CommandRefusal::NoSuchRequest => ErrorCode::Conflict,
                };
                self.refuse(principal, topic, code, refusal.to_string())
                    .await
            }
        }
    }
}

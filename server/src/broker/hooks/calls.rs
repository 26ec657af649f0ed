//! Calls over MQTT: invites the rules allow are checked, recorded and
//! delivered (or refused), wake-up pushes for offline callees, and call
//! actions.

use switchboard_protocol::acl::Principal;
use switchboard_protocol::payload::{CallAction, CallKind, Invite, WebRtcSignal};
use switchboard_protocol::{ErrorCode, Id, Sid};
use switchboard_relay::RelayError;
use switchboard_signalling::{Call, Invitation, Refusal};

use super::{allow_publish, Hooks};
use crate::push::WakeUp;
use rmqtt::hook::ReturnType;

impl Hooks {
    /// An invite the rules allow (the caller may see the callee): checked,
    /// recorded as a call, and delivered unless the call ended at once
    /// (busy, or glare resolved against it).
    pub(super) async fn invite(
        &self,
        principal: &Principal,
        topic: &str,
        callee: Id,
        sid: Sid,
        payload: &[u8],
    ) -> ReturnType {
        let bad = |m: String| (ErrorCode::BadRequest, m);
        let checked = match serde_json::from_slice::<Invite>(payload) {
            Err(e) => Err(bad(format!("not an invite: {e}"))),
            Ok(i) if i.sid != sid => Err(bad("sid in the payload is not the topic's".into())),
            Ok(i) if &i.from != principal.id() => Err(bad("from must be your own id".into())),
            Ok(i) if i.from_device != principal.client.device => {
                Err(bad("fromDevice must be your own device".into()))
            }
            Ok(i) => Ok(i),
        };
        let invite = match checked {
            Ok(i) => i,
            Err((code, message)) => return self.refuse(principal, topic, code, message).await,
        };
        if self
            .limits
            .invites_per_user
            .check_key(&principal.id().to_string())
            .is_err()
        {
            let message = "too many invites; try again in a minute".to_string();
            return self
                .refuse(principal, topic, ErrorCode::RateLimited, message)
                .await;
        }
        if self.calls.busy() {
            let message = "the server is busy storing calls; try again shortly".to_string();
            return self
                .refuse(principal, topic, ErrorCode::RateLimited, message)
                .await;
        }
        let known = match self.store.call_exists(sid.as_str()).await {
            Ok(known) => known,
            Err(e) => {
                return self
                    .refuse_internal(principal, topic, "checking a session id", e)
                    .await
            }
        };
        let invitation = Invitation {
            sid,
            caller: principal.client.clone(),
            callee: callee.clone(),
            kind: invite.kind,
        };
        let invited = match self.calls.invite(invitation, known) {
            Ok(invited) => invited,
            Err(refusal) => {
                return self
                    .refuse(principal, topic, ErrorCode::Conflict, refusal.to_string())
                    .await
            }
        };
        if !invited.call.is_live() {
            let message = "busy: the callee is in another call or calling you".to_string();
            return self
                .refuse(principal, topic, ErrorCode::Conflict, message)
                .await;
        }
        if !self.presence.get(&callee).is_some_and(|p| p.online) {
            self.wake(&invited.call);
        }
        allow_publish()
    }

    /// Pushes a wake-up to a callee with no device online; the invite
    /// itself waits in its persistent session (QoS 1).
    fn wake(&self, call: &Call) {
        let (store, push) = (self.store.clone(), self.push.clone());
        let call = call.clone();
        tokio::spawn(async move {
            let tokens = match store.push_tokens(call.callee.as_str()).await {
                Ok(t) if !t.is_empty() => t,
                Ok(_) => return,
                Err(e) => return tracing::warn!("reading push tokens: {e:#}"),
            };
            let (sid, from, callee) = (
                call.sid.to_string(),
                call.caller.id.to_string(),
                call.callee.to_string(),
            );
            let kind = if call.kind == CallKind::Video {
                "video"
            } else {
                "audio"
            };
            let wake = WakeUp {
                user_id: &callee,
                sid: &sid,
                from: &from,
                kind,
                expires_at: call.ring_deadline,
                tokens: &tokens,
            };
            if let Err(e) = push.wake(&wake).await {
                tracing::warn!(%sid, "wake-up push: {e:#}");
            }
        });
    }

    pub(super) async fn call_action(
        &self,
        principal: &Principal,
        topic: &str,
        sid: Sid,
        payload: &[u8],
    ) -> ReturnType {
        let action = match serde_json::from_slice::<CallAction>(payload) {
            Ok(a) if a.device.is_some() && a.device != principal.client.device => {
                let message = "device must be your own".to_string();
                return self
                    .refuse(principal, topic, ErrorCode::BadRequest, message)
                    .await;
            }
            Ok(a) => a,
            Err(e) => {
                let message = format!("not a call action: {e}");
                return self
                    .refuse(principal, topic, ErrorCode::BadRequest, message)
                    .await;
            }
        };
        match self.calls.act(&sid, &principal.client, action.action) {
            Ok(()) => allow_publish(),
            Err(refusal) => {
                let code = match refusal {
                    Refusal::NoSuchCall => ErrorCode::NotFound,
                    Refusal::NotInCall => ErrorCode::Forbidden,
                    _ => ErrorCode::Conflict,
                };
                self.refuse(principal, topic, code, refusal.to_string())
                    .await
            }
        }
    }

    /// A device's offer, answer or candidate for the relay (the topic
    /// rules already made sure it is a participant's own `up`).
    pub(super) async fn webrtc(
        &self,
        principal: &Principal,
        topic: &str,
        sid: Sid,
        payload: &[u8],
    ) -> ReturnType {
        let signal = match serde_json::from_slice::<WebRtcSignal>(payload) {
            Ok(signal) => signal,
            Err(e) => {
                let message = format!("not a WebRTC message: {e}");
                return self
                    .refuse(principal, topic, ErrorCode::BadRequest, message)
                    .await;
            }
        };
        let Some(relay) = &self.relay else {
            let message = "this server runs no media relay".to_string();
            return self
                .refuse(principal, topic, ErrorCode::NotFound, message)
                .await;
        };
        match relay.signal(&sid, &principal.client, signal) {
            Ok(()) => allow_publish(),
            Err(e) => {
                let code = match e {
                    RelayError::Busy => ErrorCode::RateLimited,
                    RelayError::NoRoom | RelayError::NotParticipant => ErrorCode::Conflict,
                };
                self.refuse(principal, topic, code, e.to_string()).await
            }
        }
    }
}

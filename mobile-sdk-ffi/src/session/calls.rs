//! Calls and their WebRTC signalling: placing and answering calls, their
//! history, and the offers, answers and candidates exchanged with the relay.

use reqwest::Method;
use serde::Deserialize;
use switchboard_protocol::payload::{self, CallActionKind, CallKind, CallStateKind};
use switchboard_protocol::topic::Direction;
use switchboard_protocol::{Sid, Topic};
use tokio::time::Instant;

use super::wait::{next_json, recv_until, refusal_error};
use super::{now_ms, parse_id, random_hex, Session, ANSWER};
use crate::error::SdkError;
use crate::link::Request;
use crate::router::{answers, Arrival};
use crate::types::{Call, CallRecord, IceServer, Signal};

impl Session {
    /// Publishes a call action and waits for the state it leads to.
    async fn act(&self, sid: &str, action: CallActionKind) -> Result<Call, SdkError> {
        let (sid, state) = self.known_call(sid)?;
        if state.state == CallStateKind::Ended {
            return Err(SdkError::NoCall {
                sid: sid.to_string(),
            });
        }
        let action_topic = Topic::CallAction(sid.clone()).to_string();
        let state_topic = Topic::CallState(sid.clone()).to_string();
        let mut arrivals = self.shared.wait_on_all(&[&action_topic, &state_topic]);
        let (topic, payload) = self.shared.router().action(&sid, action);
        self.publish(topic, payload, false)?;
        let deadline = Instant::now() + ANSWER;
        loop {
            let state: payload::CallState =
                next_json(&mut arrivals, deadline, "the call's new state").await?;
            if answers(&self.me, action, &state) {
                return Ok(Call::from(&state));
            }
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Session {
    /// Calls a user (or, for owners, a robot) and returns the call's sid
    /// once the server recorded it; its states arrive as `Event::CallState`.
    pub async fn call(&self, callee: String, kind: CallKind) -> Result<String, SdkError> {
        let callee_id = parse_id(&callee)?;
        if callee_id == self.me.id {
            return Err(SdkError::InvalidArgument {
                reason: "a user cannot call itself".into(),
            });
        }
        let sid: Sid = random_hex(16).parse().map_err(SdkError::invalid)?;
        let invite_topic = Topic::Invite {
            callee: callee_id,
            sid: sid.clone(),
        }
        .to_string();
        let state_topic = Topic::CallState(sid.clone()).to_string();
        let mut arrivals = self.shared.wait_on_all(&[&invite_topic, &state_topic]);
        self.shared.router().placed(sid.clone());
        let invite = payload::Invite {
            sid: sid.clone(),
            from: self.me.id.clone(),
            from_device: self.me.device.clone(),
            kind,
            sent_at: now_ms(),
        };
        self.publish(
            invite_topic,
            serde_json::to_vec(&invite).unwrap_or_default(),
            false,
        )?;
        // Once recorded, the caller may read the state (the broker handles
        // a connection's packets in order). A refused invite refuses this
        // too, and the reason arrives on the errors topic.
        self.send(Request::Subscribe {
            filter: state_topic,
            done: None,
        })?;
        let deadline = Instant::now() + ANSWER;
        match recv_until(&mut arrivals, deadline, "the call to be recorded").await? {
            Arrival::Message(_) => Ok(sid.to_string()),
            Arrival::Refused(r) if r.code == "forbidden" => {
                Err(SdkError::UnknownUser { id: callee })
            }
            Arrival::Refused(r) => Err(refusal_error(r)),
        }
    }

    pub async fn accept(&self, sid: String) -> Result<Call, SdkError> {
        self.act(&sid, CallActionKind::Accept).await
    }

    pub async fn decline(&self, sid: String) -> Result<Call, SdkError> {
        self.act(&sid, CallActionKind::Decline).await
    }

    /// The caller gives up before an answer.
    pub async fn cancel(&self, sid: String) -> Result<Call, SdkError> {
        self.act(&sid, CallActionKind::Cancel).await
    }

    pub async fn hangup(&self, sid: String) -> Result<Call, SdkError> {
        self.act(&sid, CallActionKind::Hangup).await
    }

    /// The last state this session saw of a call.
    pub fn call_state(&self, sid: String) -> Option<Call> {
        self.known_call(&sid).ok().map(|(_, s)| Call::from(&s))
    }

    /// This account's calls, newest first; pass the last `created_at` as
    /// `before` for the next page.
    pub async fn history(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<CallRecord>, SdkError> {
        #[derive(Deserialize)]
        struct Calls {
            calls: Vec<CallRecord>,
        }
        let mut path = format!("/v1/calls?limit={limit}");
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        let c: Calls = self.auth.call(Method::GET, &path, None).await?;
        Ok(c.calls)
    }

    /// STUN and TURN servers for this account's WebRTC stack.
    pub async fn ice_servers(&self) -> Result<Vec<IceServer>, SdkError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Servers {
            ice_servers: Vec<IceServer>,
        }
        let s: Servers = self.auth.call(Method::GET, "/v1/ice-servers", None).await?;
        Ok(s.ice_servers)
    }

    /// Sends an offer, answer or candidate to the relay for a call this
    /// device carries; the relay's arrive as `Event::Signal`.
    pub fn send_signal(&self, sid: String, signal: Signal) -> Result<(), SdkError> {
        let topic = Topic::WebRtc {
            sid: self.media_call(&sid)?,
            client: self.me.clone(),
            direction: Direction::Up,
        };
        let body = payload::WebRtcSignal::from(signal);
        self.publish(
            topic.to_string(),
            serde_json::to_vec(&body).unwrap_or_default(),
            false,
        )
    }
}

//! What a message from the broker means for this session: the events the
//! app sees, what the SDK does on the wire in answer (ring, follow a call,
//! listen to the relay), the calls it knows, and which call state answers
//! an action. No IO: the link feeds it and carries out what it returns.

use std::collections::{HashMap, HashSet};

use switchboard_protocol::payload::{self, CallActionKind, CallStateKind, LegState};
use switchboard_protocol::topic::{CommandPart, Direction, PairingField};
use switchboard_protocol::{ClientId, Sid, Topic};

use crate::types::{Call, CommandRequest, Event, IncomingCall, Presence, Profile, Refusal};

/// Something the SDK sends on its own, in answer to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wire {
    Publish { topic: String, payload: Vec<u8> },
    Subscribe(String),
    Unsubscribe(String),
}

/// What an API call waiting on a topic receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arrival {
    Message(Vec<u8>),
    Refused(Refusal),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Routed {
    pub events: Vec<Event>,
    pub wire: Vec<Wire>,
    /// For the waiters on this topic (a refusal's topic is the refused one).
    pub arrival: Option<(String, Arrival)>,
}

pub(crate) struct Router {
    me: ClientId,
    robot: bool,
    /// The last state of each call this session takes part in.
    calls: HashMap<Sid, payload::CallState>,
    /// Calls this device placed: it is their caller's media device.
    placed: HashSet<Sid>,
    /// Invites already handed to the app (a persistent session may
    /// deliver one again after a reconnect).
    rung: HashSet<Sid>,
}

impl Router {
    pub fn new(me: ClientId, robot: bool) -> Router {
        Router {
            me,
            robot,
            calls: HashMap::new(),
            placed: HashSet::new(),
            rung: HashSet::new(),
        }
    }

    pub fn me(&self) -> &ClientId {
        &self.me
    }

    /// This device placed `sid` (called before the invite goes out).
    pub fn placed(&mut self, sid: Sid) {
        self.placed.insert(sid);
    }

    pub fn call(&self, sid: &Sid) -> Option<&payload::CallState> {
        self.calls.get(sid)
    }

    /// Whether this device carries the media of `sid` now: the call is
    /// accepted and this is the device that placed it or accepted it.
    pub fn is_media_device(&self, sid: &Sid) -> bool {
        self.calls.get(sid).is_some_and(|s| {
            s.state == CallStateKind::Accepted
                && (self.placed.contains(sid) || s.accepted_by.as_ref() == Some(&self.me))
        })
    }

    pub fn route(&mut self, topic: &str, payload: &[u8]) -> Routed {
        let mut routed = Routed {
            arrival: Some((topic.to_owned(), Arrival::Message(payload.to_vec()))),
            ..Routed::default()
        };
        let Ok(parsed) = topic.parse::<Topic>() else {
            return routed;
        };
        match parsed {
            Topic::UserInfo(_) => {
                if let Ok(p) = serde_json::from_slice::<payload::Profile>(payload) {
                    routed.events.push(Event::Profile {
                        profile: Profile::from(p),
                    });
                }
            }
            Topic::UserPresence(id) => {
                if let Ok(p) = serde_json::from_slice::<payload::Presence>(payload) {
                    routed.events.push(Event::Presence {
                        presence: Presence {
                            user_id: id.to_string(),
                            online: p.online,
                            devices: p.devices,
                            last_seen: p.last_seen,
                        },
                    });
                }
            }
            Topic::Invite { sid, .. } => self.invited(sid, payload, &mut routed),
            Topic::CallState(sid) => self.call_state(sid, payload, &mut routed),
            Topic::WebRtc {
                sid,
                client,
                direction: Direction::Down,
            } if client == self.me => {
                if let Ok(s) = serde_json::from_slice::<payload::WebRtcSignal>(payload) {
                    routed.events.push(Event::Signal {
                        sid: sid.to_string(),
                        signal: s.into(),
                    });
                }
            }
            Topic::Command {
                sid,
                command,
                part: CommandPart::Request,
            } => {
                if let Ok(r) = serde_json::from_slice::<payload::CommandRequest>(payload) {
                    routed.events.push(Event::CommandRequest {
                        request: CommandRequest {
                            sid: sid.to_string(),
                            command: command.to_string(),
                            request_id: r.request_id,
                            arguments_json: serde_json::Value::Object(r.arguments).to_string(),
                        },
                    });
                }
            }
            Topic::Pairing {
                code,
                field: PairingField::Status,
            } => {
                if let Ok(s) = serde_json::from_slice::<payload::PairingStatus>(payload) {
                    routed.events.push(Event::Pairing {
                        code: code.to_string(),
                        outcome: s.status,
                        user_id: s.user_id.map(|u| u.to_string()),
                    });
                }
            }
            Topic::ClientErrors(_) => {
                if let Ok(e) = serde_json::from_slice::<payload::ClientError>(payload) {
                    let refusal = Refusal {
                        topic: e.topic,
                        code: e.code.as_str().to_owned(),
                        message: e.message,
                    };
                    routed.arrival =
                        Some((refusal.topic.clone(), Arrival::Refused(refusal.clone())));
                    routed.events.push(Event::Refused { refusal });
                }
            }
            _ => {}
        }
        routed
    }

    fn invited(&mut self, sid: Sid, payload: &[u8], routed: &mut Routed) {
        let Ok(invite) = serde_json::from_slice::<payload::Invite>(payload) else {
            return;
        };
        if !self.rung.insert(sid.clone()) {
            return;
        }
        // Known from now on, so the app may answer before the first state
        // arrives; the server's states replace this one.
        self.calls
            .entry(sid.clone())
            .or_insert_with(|| payload::CallState {
                sid: sid.clone(),
                state: CallStateKind::Inviting,
                reason: None,
                caller: invite.from.clone(),
                callee: self.me.id.clone(),
                accepted_by: None,
                relay: None,
                legs: Default::default(),
            });
        routed.events.push(Event::IncomingCall {
            call: IncomingCall {
                sid: sid.to_string(),
                caller: invite.from.to_string(),
                caller_device: invite.from_device.map(|d| d.to_string()),
                kind: invite.kind,
            },
        });
        routed
            .wire
            .push(Wire::Subscribe(Topic::CallState(sid.clone()).to_string()));
        if self.robot {
            // Before any accept goes out: the owner may send its first
            // request the moment it sees the call accepted.
            routed.wire.push(Wire::Subscribe(requests_of(&sid)));
        }
        let (topic, payload) = self.action(&sid, CallActionKind::Ringing);
        routed.wire.push(Wire::Publish { topic, payload });
    }

    fn call_state(&mut self, sid: Sid, payload: &[u8], routed: &mut Routed) {
        let Ok(state) = serde_json::from_slice::<payload::CallState>(payload) else {
            return;
        };
        let was_media = self.is_media_device(&sid);
        let ended = state.state == CallStateKind::Ended;
        routed.events.push(Event::CallState {
            call: Call::from(&state),
        });
        self.calls.insert(sid.clone(), state);
        let down = Topic::WebRtc {
            sid: sid.clone(),
            client: self.me.clone(),
            direction: Direction::Down,
        }
        .to_string();
        let requests = requests_of(&sid);
        if !was_media && self.is_media_device(&sid) {
            routed.wire.push(Wire::Subscribe(down));
            if self.robot && !self.rung.contains(&sid) {
                routed.wire.push(Wire::Subscribe(requests));
            }
        } else if ended {
            if was_media {
                routed.wire.push(Wire::Unsubscribe(down));
            }
            if self.robot && (was_media || self.rung.contains(&sid)) {
                routed.wire.push(Wire::Unsubscribe(requests));
            }
            routed
                .wire
                .push(Wire::Unsubscribe(Topic::CallState(sid.clone()).to_string()));
            self.placed.remove(&sid);
            self.rung.remove(&sid);
        }
    }

    /// The topic and payload that perform `action` on `sid` from this
    /// device.
    pub fn action(&self, sid: &Sid, action: CallActionKind) -> (String, Vec<u8>) {
        let body = payload::CallAction {
            action,
            device: self.me.device.clone(),
        };
        (
            Topic::CallAction(sid.clone()).to_string(),
            serde_json::to_vec(&body).unwrap_or_default(),
        )
    }
}

/// Whether `state` is what `action`, sent by `me`, leads to: the API call
/// that sent it returns then.
pub(crate) fn answers(me: &ClientId, action: CallActionKind, state: &payload::CallState) -> bool {
    let ended = state.state == CallStateKind::Ended;
    match action {
        // Not the retained `inviting`/`ringing` that may arrive first.
        CallActionKind::Accept => ended || state.state == CallStateKind::Accepted,
        // The call goes on while other devices of the callee still ring.
        CallActionKind::Decline => {
            ended || state.legs.get(&me.to_string()) == Some(&LegState::Declined)
        }
        CallActionKind::Ringing => true,
        CallActionKind::Cancel | CallActionKind::Hangup => ended,
    }
}

/// Every command request of a call, as a robot follows them.
fn requests_of(sid: &Sid) -> String {
    format!("session/{sid}/+/request")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "36940d0ece18aebf69d0ef6825534e24";
    const OTHER: &str = "0123456789abcdef0123456789abcdef";
    const SID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn router(robot: bool) -> Router {
        let me: ClientId = if robot {
            ME.parse().unwrap()
        } else {
            format!("{ME}:phone").parse().unwrap()
        };
        Router::new(me, robot)
    }

    fn state(state: &str, accepted_by: Option<&str>, reason: Option<&str>) -> Vec<u8> {
        let mut v = json!({"sid": SID, "state": state, "caller": OTHER, "callee": ME});
        if let Some(a) = accepted_by {
            v["acceptedBy"] = json!(a);
        }
        if let Some(r) = reason {
            v["reason"] = json!(r);
        }
        v.to_string().into_bytes()
    }

    #[test]
    fn an_invite_rings_once_and_follows_the_call() {
        let mut r = router(false);
        let invite = json!({"sid": SID, "from": OTHER, "kind": "audio", "sentAt": 1}).to_string();
        let topic = format!("invite/{ME}/{SID}");
        let routed = r.route(&topic, invite.as_bytes());
        assert!(matches!(
            &routed.events[..],
            [Event::IncomingCall { call }] if call.caller == OTHER && call.kind == payload::CallKind::Audio
        ));
        assert_eq!(
            routed.wire,
            vec![
                Wire::Subscribe(format!("session/{SID}/state")),
                Wire::Publish {
                    topic: format!("session/{SID}/call"),
                    payload: br#"{"action":"ringing","device":"phone"}"#.to_vec()
                }
            ]
        );
        // Delivered again after a reconnect: not a second call.
        assert!(r.route(&topic, invite.as_bytes()).events.is_empty());
    }

    #[test]
    fn an_invited_robot_follows_the_requests_before_it_accepts() {
        let mut r = router(true);
        let invite = format!(
            r#"{{"sid":"{SID}","from":"{OTHER}","fromDevice":"phone","kind":"video","sentAt":1}}"#
        );
        let routed = r.route(&format!("invite/{ME}/{SID}"), invite.as_bytes());
        let requests = Wire::Subscribe(format!("session/{SID}/+/request"));
        // Subscribed before the ringing (and any accept) goes out.
        assert_eq!(routed.wire[1], requests, "{:?}", routed.wire);
        let topic = format!("session/{SID}/state");
        let routed = r.route(&topic, &state("accepted", Some(ME), None));
        assert!(!routed.wire.contains(&requests), "not twice");
        let routed = r.route(&topic, &state("ended", Some(ME), Some("hangup")));
        assert!(routed
            .wire
            .contains(&Wire::Unsubscribe(format!("session/{SID}/+/request"))));
        // Declined or missed: the subscription goes too.
        let other_sid = "fedcba9876543210fedcba9876543210";
        let invite = invite.replace(SID, other_sid);
        r.route(&format!("invite/{ME}/{other_sid}"), invite.as_bytes());
        let routed = r.route(
            &format!("session/{other_sid}/state"),
            String::from_utf8(state("ended", None, Some("missed")))
                .unwrap()
                .replace(SID, other_sid)
                .as_bytes(),
        );
        assert!(routed
            .wire
            .contains(&Wire::Unsubscribe(format!("session/{other_sid}/+/request"))));
    }

    #[test]
    fn the_accepting_device_listens_to_the_relay_until_the_call_ends() {
        let mut r = router(true);
        let topic = format!("session/{SID}/state");
        r.route(&topic, &state("ringing", None, None));
        let sid: Sid = SID.parse().unwrap();
        assert!(!r.is_media_device(&sid));
        let routed = r.route(&topic, &state("accepted", Some(ME), None));
        assert!(r.is_media_device(&sid));
        assert_eq!(
            routed.wire,
            vec![
                Wire::Subscribe(format!("session/{SID}/webrtc/{ME}/down")),
                Wire::Subscribe(format!("session/{SID}/+/request")),
            ]
        );
        let routed = r.route(&topic, &state("ended", Some(ME), Some("hangup")));
        assert!(!r.is_media_device(&sid));
        assert_eq!(routed.wire.len(), 3, "{:?}", routed.wire);
        assert!(matches!(
            &routed.events[..],
            [Event::CallState { call }] if call.reason == Some(payload::EndReason::Hangup)
        ));
    }

    #[test]
    fn another_device_accepting_is_not_this_ones_media() {
        let mut r = router(false);
        let topic = format!("session/{SID}/state");
        let routed = r.route(
            &topic,
            &state("accepted", Some(&format!("{ME}:tablet")), None),
        );
        assert!(routed.wire.is_empty());
        assert!(!r.is_media_device(&SID.parse().unwrap()));
    }

    #[test]
    fn the_caller_device_is_the_media_device_of_its_calls() {
        let mut r = router(false);
        r.placed(SID.parse().unwrap());
        let routed = r.route(
            &format!("session/{SID}/state"),
            &state("accepted", Some(&format!("{OTHER}:x")), None),
        );
        assert_eq!(
            routed.wire,
            vec![Wire::Subscribe(format!(
                "session/{SID}/webrtc/{ME}:phone/down"
            ))]
        );
    }

    #[test]
    fn an_action_is_answered_by_the_state_it_leads_to() {
        let me: ClientId = format!("{ME}:phone").parse().unwrap();
        let read = |s: Vec<u8>| serde_json::from_slice::<payload::CallState>(&s).unwrap();
        let ringing = read(state("ringing", None, None));
        let accepted = read(state("accepted", Some(ME), None));
        let ended = read(state("ended", None, Some("hangup")));
        assert!(!answers(&me, CallActionKind::Accept, &ringing));
        assert!(answers(&me, CallActionKind::Accept, &accepted));
        assert!(!answers(&me, CallActionKind::Hangup, &accepted));
        assert!(answers(&me, CallActionKind::Hangup, &ended));
        let mut declined = ringing.clone();
        declined.legs.insert(me.to_string(), LegState::Declined);
        assert!(answers(&me, CallActionKind::Decline, &declined));
        assert!(!answers(&me, CallActionKind::Decline, &ringing));
    }

    #[test]
    fn a_refusal_goes_to_the_waiters_of_the_refused_topic() {
        let mut r = router(false);
        let report = json!({"topic": "invite/x/y", "code": "forbidden", "message": "no"});
        let routed = r.route(
            &format!("clients/{ME}:phone/errors"),
            report.to_string().as_bytes(),
        );
        let refusal = Refusal {
            topic: "invite/x/y".into(),
            code: "forbidden".into(),
            message: "no".into(),
        };
        assert_eq!(
            routed.arrival,
            Some(("invite/x/y".into(), Arrival::Refused(refusal.clone())))
        );
        assert_eq!(routed.events, vec![Event::Refused { refusal }]);
    }

    #[test]
    fn requests_and_signals_become_events_and_junk_is_ignored() {
        let mut r = router(true);
        let routed = r.route(
            &format!("session/{SID}/moveTo/request"),
            br#"{"requestId":"r1","x":1}"#,
        );
        assert!(matches!(
            &routed.events[..],
            [Event::CommandRequest { request }]
                if request.command == "moveTo" && request.arguments_json == r#"{"x":1}"#
        ));
        let routed = r.route(
            &format!("session/{SID}/webrtc/{ME}/down"),
            br#"{"type":"answer","sdp":"v=0"}"#,
        );
        assert!(matches!(
            &routed.events[..],
            [Event::Signal { signal: crate::types::Signal::Answer { sdp }, .. }] if sdp == "v=0"
        ));
        assert!(r
            .route(&format!("users/{OTHER}/info"), b"not json")
            .events
            .is_empty());
        assert!(r.route("not/a/topic", b"{}").events.is_empty());
    }
}

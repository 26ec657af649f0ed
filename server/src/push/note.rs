//! What a push says, the same through every service: a call rings, or
//! the call it rang for stopped ringing.

use serde::Serialize;
use switchboard_protocol::payload::{CallKind, CallStateKind, EndReason};
use switchboard_protocol::{Id, Sid};
use switchboard_signalling::Call;

/// One push about one call, to every token of its callee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// `ring`, or `stop` once the call is answered or ended unanswered.
    pub event: Event,
    pub sid: Sid,
    /// The sid as a UUID (8-4-4-4-12), the call's id for CallKit.
    pub uuid: String,
    /// The callee: the user whose tokens get it.
    pub user_id: Id,
    /// The caller's id (`from` is a key FCM keeps for itself).
    pub caller: Id,
    /// The caller's nickname, when they set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
    pub kind: CallKind,
    /// When the call ends `missed` if nobody answers (ms since the epoch).
    pub expires_at: i64,
    /// Why it stopped ringing (`stop` only): `answered`, or the call's
    /// end reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Ring,
    Stop,
}

impl Note {
    pub fn ring(call: &Call, caller_name: Option<String>) -> Note {
        Note {
            event: Event::Ring,
            sid: call.sid.clone(),
            uuid: uuid(&call.sid),
            user_id: call.callee.clone(),
            caller: call.caller.id.clone(),
            caller_name,
            kind: call.kind,
            expires_at: call.ring_deadline,
            reason: None,
        }
    }

    /// The stop for `call`, if this change is the one that ended its
    /// ringing: answered, or ended before anyone answered. (An accepted
    /// call changes once more, to ended, with `accepted_at` set.)
    pub fn stop(call: &Call) -> Option<Note> {
        let reason = match (call.state, call.reason, call.accepted_at) {
            (CallStateKind::Accepted, _, _) => "answered",
            (CallStateKind::Ended, Some(reason), None) => reason.as_str(),
            (CallStateKind::Ended, None, None) => EndReason::Failed.as_str(),
            _ => return None,
        };
        Some(Note {
            event: Event::Stop,
            reason: Some(reason),
            ..Note::ring(call, None)
        })
    }

    /// The note as JSON whose values are all strings (numbers written
    /// out), for services whose data is strings alone (FCM).
    pub fn strings(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let Ok(Value::Object(fields)) = serde_json::to_value(self) else {
            unreachable!("a note serializes as an object");
        };
        (fields.into_iter())
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, Value::String(text))
            })
            .collect()
    }
}

/// 32 hex digits (a sid) as a UUID's text.
fn uuid(sid: &Sid) -> String {
    let s = sid.as_str();
    match s.len() {
        32 => format!(
            "{}-{}-{}-{}-{}",
            &s[..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..]
        ),
        _ => s.to_owned(),
    }
}

/// A ringing video call's ring, for tests.
#[cfg(test)]
pub fn example() -> Note {
    Note::ring(&tests::call(CallStateKind::Ringing, None, false), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ClientId;

    pub fn call(state: CallStateKind, reason: Option<EndReason>, accepted: bool) -> Call {
        Call {
            sid: "0123456789abcdef0123456789abcdef".parse().unwrap(),
            caller: ClientId::new("a".repeat(32).parse().unwrap(), None),
            callee: "b".repeat(32).parse().unwrap(),
            kind: CallKind::Video,
            state,
            reason,
            legs: Default::default(),
            accepted_by: None,
            created_at: 1_000,
            accepted_at: accepted.then_some(5_000),
            ended_at: None,
            ring_deadline: 31_000,
            version: 1,
            node: None,
        }
    }

    #[test]
    fn a_stop_is_said_once_ringing_ends() {
        use CallStateKind::*;
        use EndReason::*;
        for (state, reason, accepted, stop) in [
            (Inviting, None, false, None),
            (Ringing, None, false, None),
            (Accepted, None, true, Some("answered")),
            (Ended, Some(Cancelled), false, Some("cancelled")),
            (Ended, Some(Missed), false, Some("missed")),
            (Ended, Some(Declined), false, Some("declined")),
            (Ended, Some(Failed), false, Some("failed")),
            // Answered before: its stop went with the answer.
            (Ended, Some(Hangup), true, None),
            (Ended, Some(Failed), true, None),
        ] {
            let note = Note::stop(&call(state, reason, accepted));
            assert_eq!(
                note.as_ref().and_then(|n| n.reason),
                stop,
                "{state:?} {reason:?}"
            );
            if let Some(note) = note {
                assert_eq!(note.event, Event::Stop);
            }
        }
    }

    #[test]
    fn a_note_carries_the_call_for_callkit() {
        let note = Note::ring(
            &call(CallStateKind::Ringing, None, false),
            Some("Ana".into()),
        );
        assert_eq!(note.uuid, "01234567-89ab-cdef-0123-456789abcdef");
        let json = serde_json::to_value(&note).unwrap();
        assert_eq!(json["event"], "ring");
        assert_eq!(json["callerName"], "Ana");
        assert!(json.get("from").is_none(), "a key FCM keeps for itself");
        assert_eq!(json["expiresAt"], 31_000);
        assert!(json.get("reason").is_none());
        let strings = note.strings();
        assert_eq!(strings["kind"], "video");
        assert_eq!(strings["expiresAt"], "31000");
        assert_eq!(strings["callerName"], "Ana");
        assert!(strings.values().all(serde_json::Value::is_string));
    }
}

//! JSON payloads of the MQTT topics. Field names are camelCase on the wire;
//! times are milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ErrorCode;
use crate::ids::{ClientId, Device, Id, Sid};

/// Largest payload accepted on any validated topic.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// `users/<id>/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    pub id: Id,
    pub nickname: Option<String>,
    pub photo_url: Option<String>,
    pub email: Option<String>,
    pub alt_phone: Option<String>,
    pub updated_at: i64,
}

/// `users/<id>/isConnected`: the plain `true` / `false` of the use case.
pub fn is_connected_payload(online: bool) -> &'static str {
    if online {
        "true"
    } else {
        "false"
    }
}

/// `users/<id>/presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Presence {
    pub online: bool,
    /// Devices online now; `""` stands for a connection with the bare id.
    pub devices: Vec<String>,
    pub last_seen: Option<i64>,
    /// Grows with every change, so late or duplicate updates can be told apart.
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    Video,
    Audio,
}

names!(CallKind, "call kind", Video = "video", Audio = "audio");

/// `invite/<calleeId>/<sid>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Invite {
    pub sid: Sid,
    pub from: Id,
    pub from_device: Option<Device>,
    pub kind: CallKind,
    pub sent_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallActionKind {
    Ringing,
    Accept,
    Decline,
    Cancel,
    Hangup,
}

names!(
    CallActionKind,
    "call action",
    Ringing = "ringing",
    Accept = "accept",
    Decline = "decline",
    Cancel = "cancel",
    Hangup = "hangup",
);

/// `session/<sid>/call`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallAction {
    pub action: CallActionKind,
    pub device: Option<Device>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStateKind {
    Inviting,
    Ringing,
    Accepted,
    Ended,
}

names!(
    CallStateKind,
    "call state",
    Inviting = "inviting",
    Ringing = "ringing",
    Accepted = "accepted",
    Ended = "ended",
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Declined,
    Cancelled,
    Busy,
    Missed,
    Hangup,
    AnsweredElsewhere,
    Failed,
    Expired,
}

names!(
    EndReason,
    "end reason",
    Declined = "declined",
    Cancelled = "cancelled",
    Busy = "busy",
    Missed = "missed",
    Hangup = "hangup",
    AnsweredElsewhere = "answered_elsewhere",
    Failed = "failed",
    Expired = "expired",
);

/// Where one callee device stands in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegState {
    Ringing,
    Declined,
    Accepted,
    /// Another device of the callee accepted.
    AnsweredElsewhere,
    /// The call ended while this device was ringing.
    Ended,
}

/// `session/<sid>/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallState {
    pub sid: Sid,
    pub state: CallStateKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
    pub caller: Id,
    pub callee: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<ClientId>,
    /// Where the participants' media goes, once the relay has a room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    /// The callee devices that answered the invite, by client id.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub legs: std::collections::BTreeMap<String, LegState>,
}

/// `session/<sid>/webrtc/<clientId>/up|down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum WebRtcSignal {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        /// `None` marks the end of candidates.
        candidate: Option<IceCandidate>,
    },
}

/// An ICE candidate in the W3C `RTCIceCandidateInit` form, which is what a
/// browser's `JSON.stringify(event.candidate)` sends. Other fields are
/// ignored here (only here), so a browser's additions never break a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default)]
    pub sdp_m_line_index: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// `session/<sid>/<command>/request`: a request id and the command's own
/// arguments, e.g. `{"requestId": "r1", "destination": "bedroom"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRequest {
    pub request_id: String,
    #[serde(flatten)]
    pub arguments: Map<String, Value>,
}

/// `session/<sid>/<command>/response`, e.g.
/// `{"requestId": "r1", "destination": "bedroom", "status": "moving"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResponse {
    pub request_id: String,
    pub status: String,
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// The status the server answers for a robot that stayed silent.
pub const COMMAND_TIMED_OUT: &str = "timed_out";

/// Statuses that end a command: no answer to that request follows, and the
/// server forgets it (its request id may be used again).
pub const FINAL_COMMAND_STATUSES: [&str; 7] = [
    "arrived",
    "done",
    "succeeded",
    "failed",
    "rejected",
    "cancelled",
    "error",
];

pub fn is_final_status(status: &str) -> bool {
    FINAL_COMMAND_STATUSES.contains(&status)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairingOutcome {
    Paired,
    Expired,
    Rejected,
}

/// `pairing/<code>/status`. `robotID` and `userID` carry a bare id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairingStatus {
    pub status: PairingOutcome,
    pub robot_id: Id,
    pub user_id: Option<Id>,
}

/// `clients/<clientId>/errors`: why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientError {
    pub topic: String,
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "36940d0ece18aebf69d0ef6825534e24";
    const SID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn command_payloads_keep_their_arguments() {
        let req: CommandRequest =
            serde_json::from_value(json!({"requestId": "r1", "destination": "bedroom"})).unwrap();
        assert_eq!(req.request_id, "r1");
        assert_eq!(req.arguments["destination"], "bedroom");
        let resp = CommandResponse {
            request_id: "r1".into(),
            status: "moving".into(),
            details: req.arguments.clone(),
        };
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"requestId": "r1", "status": "moving", "destination": "bedroom"})
        );
        assert!(serde_json::from_value::<CommandRequest>(json!({"destination": "x"})).is_err());
    }

    #[test]
    fn call_state_wire_form() {
        let s = CallState {
            sid: SID.parse().unwrap(),
            state: CallStateKind::Ended,
            reason: Some(EndReason::AnsweredElsewhere),
            caller: ID.parse().unwrap(),
            callee: ID.parse().unwrap(),
            accepted_by: Some(format!("{ID}:tablet").parse().unwrap()),
            relay: None,
            legs: [(format!("{ID}:phone"), LegState::AnsweredElsewhere)]
                .into_iter()
                .collect(),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["reason"], "answered_elsewhere");
        assert_eq!(v["acceptedBy"], format!("{ID}:tablet"));
        assert_eq!(v["legs"][format!("{ID}:phone")], "answered_elsewhere");
        assert_eq!(serde_json::from_value::<CallState>(v).unwrap(), s);
    }

    #[test]
    fn inbound_payloads_are_strict() {
        assert!(serde_json::from_value::<CallAction>(json!({"action": "accept"})).is_ok());
        for bad in [
            json!({"action": "explode"}),
            json!({"action": "accept", "extra": 1}),
            json!({"action": "accept", "device": "Not Valid"}),
            json!("accept"),
        ] {
            assert!(
                serde_json::from_value::<CallAction>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let offer: WebRtcSignal =
            serde_json::from_value(json!({"type": "offer", "sdp": "v=0"})).unwrap();
        assert_eq!(offer, WebRtcSignal::Offer { sdp: "v=0".into() });
        assert!(serde_json::from_value::<WebRtcSignal>(json!({"type": "offer"})).is_err());
        assert!(
            serde_json::from_value::<WebRtcSignal>(json!({"type": "offer", "sdp": "v=0", "x": 1}))
                .is_err(),
            "unknown fields are refused outside candidates"
        );
    }

    #[test]
    fn candidates_as_browsers_send_them() {
        // (what arrives, what it means)
        let cases = [
            (
                json!({"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": "0",
                       "sdpMLineIndex": 0, "usernameFragment": "abcd"}),
                Some(("0", Some(0), Some("abcd"))),
            ),
            (
                json!({"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": null,
                       "sdpMLineIndex": null, "usernameFragment": null, "relayProtocol": "udp"}),
                Some(("", None, None)),
            ),
            (
                json!({"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"}),
                Some(("", None, None)),
            ),
            (json!({"sdpMid": "0"}), None),
            (json!({"candidate": 5}), None),
        ];
        for (body, want) in cases {
            let got = serde_json::from_value::<WebRtcSignal>(
                json!({"type": "candidate", "candidate": body.clone()}),
            );
            match (got, want) {
                (Ok(WebRtcSignal::Candidate { candidate: Some(c) }), Some((mid, index, ufrag))) => {
                    assert_eq!(c.sdp_mid.as_deref().unwrap_or(""), mid, "{body}");
                    assert_eq!(c.sdp_m_line_index, index, "{body}");
                    assert_eq!(c.username_fragment.as_deref(), ufrag, "{body}");
                }
                (Err(_), None) => {}
                (got, _) => panic!("{body}: {got:?}"),
            }
        }
    }
}

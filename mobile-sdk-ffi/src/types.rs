//! The values the SDK hands to apps. Ids are strings here (32 lowercase
//! hex); the SDK checks their form before anything goes on the wire.

use switchboard_protocol::payload;
pub use switchboard_protocol::payload::{CallKind, CallStateKind, EndReason, PairingOutcome};

// The protocol's own enums, described to uniffi as they are.
#[uniffi::remote(Enum)]
pub enum CallKind {
    Video,
    Audio,
}

#[uniffi::remote(Enum)]
pub enum CallStateKind {
    Inviting,
    Ringing,
    Accepted,
    Ended,
}

#[uniffi::remote(Enum)]
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

#[uniffi::remote(Enum)]
pub enum PairingOutcome {
    Paired,
    Expired,
    Rejected,
}

/// Where to find the server, and which installation this is.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Config {
    /// The HTTP API, e.g. `http://10.0.0.2:8080`.
    pub http_url: String,
    /// The broker, `mqtt://host:port` or `ws://host:port/mqtt`, over TLS
    /// `mqtts://` or `wss://`; `None` takes the address the server
    /// announces at sign-in.
    pub mqtt_url: Option<String>,
    /// This installation, `[a-z0-9_-]{1,32}`; several devices of one user
    /// may be online at once. Robots have none.
    pub device: Option<String>,
    /// A PEM file of the roots that HTTPS and MQTT over TLS trust instead
    /// of the system's, for a server with a private CA.
    #[uniffi(default = None)]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Profile {
    pub user_id: String,
    pub nickname: Option<String>,
    pub photo_url: Option<String>,
    pub email: Option<String>,
    pub alt_phone: Option<String>,
    pub updated_at: i64,
}

impl From<payload::Profile> for Profile {
    fn from(p: payload::Profile) -> Self {
        Profile {
            user_id: p.id.to_string(),
            nickname: p.nickname,
            photo_url: p.photo_url,
            email: p.email,
            alt_phone: p.alt_phone,
            updated_at: p.updated_at,
        }
    }
}

/// What `set_profile` stores; it replaces the whole profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ProfileUpdate {
    pub nickname: Option<String>,
    pub photo_url: Option<String>,
    pub email: Option<String>,
    pub alt_phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Presence {
    pub user_id: String,
    pub online: bool,
    /// The devices online now (`""` for a connection without a device).
    pub devices: Vec<String>,
    /// When it last changed, in ms since the epoch.
    pub last_seen: Option<i64>,
}

/// A call as the server last published it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Call {
    pub sid: String,
    pub state: CallStateKind,
    pub reason: Option<EndReason>,
    pub caller: String,
    pub callee: String,
    /// The client id of the callee device that accepted.
    pub accepted_by: Option<String>,
}

impl From<&payload::CallState> for Call {
    fn from(s: &payload::CallState) -> Self {
        Call {
            sid: s.sid.to_string(),
            state: s.state,
            reason: s.reason,
            caller: s.caller.to_string(),
            callee: s.callee.to_string(),
            accepted_by: s.accepted_by.as_ref().map(|c| c.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IncomingCall {
    pub sid: String,
    /// The caller's id, and the device it calls from.
    pub caller: String,
    pub caller_device: Option<String>,
    pub kind: CallKind,
}

/// A call of the history (`GET /v1/calls`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub sid: String,
    pub caller: String,
    pub callee: String,
    pub kind: CallKind,
    pub state: CallStateKind,
    pub reason: Option<EndReason>,
    pub accepted_by: Option<String>,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// A WebRTC signalling message between this device and the media relay.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Signal {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    /// `None` ends the candidates.
    Candidate {
        candidate: Option<IceCandidate>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IceCandidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_m_line_index: Option<u16>,
    #[uniffi(default = None)]
    pub username_fragment: Option<String>,
}

impl From<payload::WebRtcSignal> for Signal {
    fn from(s: payload::WebRtcSignal) -> Self {
        match s {
            payload::WebRtcSignal::Offer { sdp } => Signal::Offer { sdp },
            payload::WebRtcSignal::Answer { sdp } => Signal::Answer { sdp },
            payload::WebRtcSignal::Candidate { candidate } => Signal::Candidate {
                candidate: candidate.map(|c| IceCandidate {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_m_line_index: c.sdp_m_line_index,
                    username_fragment: c.username_fragment,
                }),
            },
        }
    }
}

impl From<Signal> for payload::WebRtcSignal {
    fn from(s: Signal) -> Self {
        match s {
            Signal::Offer { sdp } => payload::WebRtcSignal::Offer { sdp },
            Signal::Answer { sdp } => payload::WebRtcSignal::Answer { sdp },
            Signal::Candidate { candidate } => payload::WebRtcSignal::Candidate {
                candidate: candidate.map(|c| payload::IceCandidate {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_m_line_index: c.sdp_m_line_index,
                    username_fragment: c.username_fragment,
                }),
            },
        }
    }
}

/// A command an owner sent this robot.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CommandRequest {
    pub sid: String,
    pub command: String,
    pub request_id: String,
    /// The request's arguments, a JSON object without `requestId`.
    pub arguments_json: String,
}

/// One answer of the robot to a command (or the server's `timed_out`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CommandReply {
    pub request_id: String,
    pub status: String,
    /// The answer's other fields, a JSON object.
    pub details_json: String,
}

/// A pairing code a robot shows its future owner.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingCode {
    pub code: String,
    /// ms since the epoch.
    pub expires_at: i64,
}

/// A registered number of the address book, and its user id.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactMatch {
    /// The number as it was sent.
    pub phone: String,
    pub user_id: String,
}

/// A robot of this user, or an owner of this robot.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Pairing {
    pub id: String,
    pub paired_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record, serde::Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

/// Something the server refused, reported on `clients/<me>/errors`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Refusal {
    pub topic: String,
    pub code: String,
    pub message: String,
}

/// Who may see this account's profile and presence, and call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Visibility {
    Everyone,
    /// Only the users in its contacts (the default).
    Contacts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectionState {
    /// Connected to the broker, subscriptions in place.
    Connected,
    /// The connection dropped; the SDK is reconnecting.
    Reconnecting,
    /// The session ended: signed out, or its tokens stopped working.
    SignedOut,
}

/// Everything the server tells the app, in the order it arrived.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Event {
    Connection {
        state: ConnectionState,
    },
    /// A watched user's profile, at once (retained) and on every change.
    Profile {
        profile: Profile,
    },
    /// A watched user's presence, at once and on every change.
    Presence {
        presence: Presence,
    },
    /// Someone calls; the SDK has already told the server this device rings.
    IncomingCall {
        call: IncomingCall,
    },
    /// A call of this session changed state.
    CallState {
        call: Call,
    },
    /// The relay's side of a call's WebRTC signalling, for this device.
    Signal {
        sid: String,
        signal: Signal,
    },
    /// (Robots) an owner sent a command; answer with `respond`.
    CommandRequest {
        request: CommandRequest,
    },
    /// (Robots) a pairing code was claimed or expired.
    Pairing {
        code: String,
        outcome: PairingOutcome,
        user_id: Option<String>,
    },
    /// The server refused something this device published.
    Refused {
        refusal: Refusal,
    },
}

//! What a client may put in the messages it publishes, beyond the topic
//! rules: each payload parsed and checked against its sender. Profiles have
//! their own rules in `profile`.

use crate::ids::{ClientId, Id, Sid};
use crate::payload::{
    CallAction, CommandRequest, CommandResponse, Invite, WebRtcSignal, MAX_PAYLOAD_BYTES,
};
use crate::topic::CommandPart;

/// Why a payload was refused, in words for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPayload(pub String);

fn bad(message: impl Into<String>) -> BadPayload {
    BadPayload(message.into())
}

/// An invite on `invite/<callee>/<sid>`: it names the topic's call and
/// its sender's own id and device.
pub fn invite(payload: &[u8], sid: &Sid, from: &ClientId) -> Result<Invite, BadPayload> {
    let invite: Invite =
        serde_json::from_slice(payload).map_err(|e| bad(format!("not an invite: {e}")))?;
    if &invite.sid != sid {
        Err(bad("sid in the payload is not the topic's"))
    } else if invite.from != from.id {
        Err(bad("from must be your own id"))
    } else if invite.from_device != from.device {
        Err(bad("fromDevice must be your own device"))
    } else {
        Ok(invite)
    }
}

/// A call action on `session/<sid>/call`: a device it names is the
/// sender's own.
pub fn call_action(payload: &[u8], from: &ClientId) -> Result<CallAction, BadPayload> {
    let action: CallAction =
        serde_json::from_slice(payload).map_err(|e| bad(format!("not a call action: {e}")))?;
    if action.device.is_some() && action.device != from.device {
        return Err(bad("device must be your own"));
    }
    Ok(action)
}

/// A device's offer, answer or candidate on its `webrtc/.../up`.
pub fn webrtc_signal(payload: &[u8]) -> Result<WebRtcSignal, BadPayload> {
    serde_json::from_slice(payload).map_err(|e| bad(format!("not a WebRTC message: {e}")))
}

/// `robotID` and `userID` of a pairing code carry the sender's own id.
pub fn pairing_id(payload: &[u8], me: &Id) -> Result<(), BadPayload> {
    if payload == me.as_str().as_bytes() {
        Ok(())
    } else {
        Err(bad("the payload must be your own id"))
    }
}

/// The longest request id a command may carry, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// What the server keeps of a command message: its request id, and a
/// response's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMessage {
    pub request_id: String,
    /// `None` for a request.
    pub status: Option<String>,
}

/// A command request or response on `session/<sid>/<command>/...`.
pub fn command(part: CommandPart, payload: &[u8]) -> Result<CommandMessage, BadPayload> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(bad(format!(
            "payload larger than {MAX_PAYLOAD_BYTES} bytes"
        )));
    }
    let message = match part {
        CommandPart::Request => serde_json::from_slice::<CommandRequest>(payload)
            .map(|r| CommandMessage {
                request_id: r.request_id,
                status: None,
            })
            .map_err(|e| bad(format!("not a command request (it needs a requestId): {e}")))?,
        CommandPart::Response => serde_json::from_slice::<CommandResponse>(payload)
            .map(|r| CommandMessage {
                request_id: r.request_id,
                status: Some(r.status),
            })
            .map_err(|e| {
                bad(format!(
                    "not a command response (requestId and status): {e}"
                ))
            })?,
    };
    if message.request_id.is_empty() || message.request_id.len() > MAX_REQUEST_ID_LEN {
        return Err(bad(format!(
            "requestId must be 1 to {MAX_REQUEST_ID_LEN} characters"
        )));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SID: &str = "0123456789abcdef0123456789abcdef";

    fn phone() -> ClientId {
        format!("{ME}:phone").parse().unwrap()
    }

    /// The message of a refusal, or "ok".
    fn verdict<T>(r: Result<T, BadPayload>) -> String {
        r.map(|_| "ok".to_string()).unwrap_or_else(|e| e.0)
    }

    #[test]
    fn invites() {
        let sid: Sid = SID.parse().unwrap();
        let invite = |sid: &str, from: &str, device: &str| {
            format!(
                r#"{{"sid":"{sid}","from":"{from}","fromDevice":{device},"kind":"video","sentAt":1}}"#
            )
        };
        let other = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let cases = [
            (invite(SID, ME, r#""phone""#), "ok"),
            (
                invite(other, ME, r#""phone""#),
                "sid in the payload is not the topic's",
            ),
            (invite(SID, other, r#""phone""#), "from must be your own id"),
            (
                invite(SID, ME, r#""tablet""#),
                "fromDevice must be your own device",
            ),
            (
                invite(SID, ME, "null"),
                "fromDevice must be your own device",
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(verdict(invite_of(&payload, &sid)), want, "{payload}");
        }
        let garbage = verdict(invite_of("{", &sid));
        assert!(garbage.starts_with("not an invite: "), "{garbage}");
    }

    fn invite_of(payload: &str, sid: &Sid) -> Result<Invite, BadPayload> {
        invite(payload.as_bytes(), sid, &phone())
    }

    #[test]
    fn call_actions() {
        let cases = [
            (r#"{"action":"accept"}"#, "ok"),
            (r#"{"action":"accept","device":"phone"}"#, "ok"),
            (
                r#"{"action":"hangup","device":"tablet"}"#,
                "device must be your own",
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(
                verdict(call_action(payload.as_bytes(), &phone())),
                want,
                "{payload}"
            );
        }
        let unknown = verdict(call_action(br#"{"action":"dance"}"#, &phone()));
        assert!(unknown.starts_with("not a call action: "), "{unknown}");
    }

    #[test]
    fn pairing_ids() {
        let me: Id = ME.parse().unwrap();
        assert_eq!(verdict(pairing_id(ME.as_bytes(), &me)), "ok");
        for other in [&b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"[..], b"", b"\"aaaa\""] {
            assert_eq!(
                verdict(pairing_id(other, &me)),
                "the payload must be your own id"
            );
        }
    }

    #[test]
    fn commands() {
        use CommandPart::{Request, Response};
        let long_id = "r".repeat(MAX_REQUEST_ID_LEN + 1);
        let too_long = format!(r#"{{"requestId":"{long_id}"}}"#);
        let huge = format!(
            r#"{{"requestId":"r1","pad":"{}"}}"#,
            "x".repeat(MAX_PAYLOAD_BYTES)
        );
        let cases: Vec<(CommandPart, &str, Result<CommandMessage, &str>)> = vec![
            (
                Request,
                r#"{"requestId":"r1","destination":"bedroom"}"#,
                Ok(CommandMessage {
                    request_id: "r1".into(),
                    status: None,
                }),
            ),
            (
                Response,
                r#"{"requestId":"r1","status":"moving"}"#,
                Ok(CommandMessage {
                    request_id: "r1".into(),
                    status: Some("moving".into()),
                }),
            ),
            (
                Request,
                r#"{"requestId":""}"#,
                Err("requestId must be 1 to 128 characters"),
            ),
            (
                Request,
                &too_long,
                Err("requestId must be 1 to 128 characters"),
            ),
            (Request, &huge, Err("payload larger than 4096 bytes")),
        ];
        for (part, payload, want) in cases {
            let got = command(part, payload.as_bytes()).map_err(|e| e.0);
            assert_eq!(got, want.map_err(str::to_string), "{part:?} {payload:.60}");
        }
        let no_status = verdict(command(Response, br#"{"requestId":"r1"}"#));
        assert!(
            no_status.starts_with("not a command response (requestId and status): "),
            "{no_status}"
        );
        let no_id = verdict(command(Request, br#"{"destination":"x"}"#));
        assert!(
            no_id.starts_with("not a command request (it needs a requestId): "),
            "{no_id}"
        );
    }

    #[test]
    fn webrtc_signals() {
        let bad = verdict(webrtc_signal(b"[]"));
        assert!(bad.starts_with("not a WebRTC message: "), "{bad}");
    }
}

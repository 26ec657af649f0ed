//! Every MQTT topic of the contract, built and parsed in one place.
//!
//! `Topic::parse` accepts exactly the topics `Display` produces: a topic that
//! does not fit the contract (an unknown root, a malformed id, a reserved
//! command word, an extra level) is an error, never a guess.

use std::fmt;
use std::str::FromStr;

use crate::error::Invalid;
use crate::ids::{ClientId, CommandName, Id, PairingCode, Sid};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `users/<id>/info`: the profile, retained.
    UserInfo(Id),
    /// `users/<id>/isConnected`: `true` / `false`, retained.
    UserIsConnected(Id),
    /// `users/<id>/presence`: `{online, devices, lastSeen, seq}`, retained.
    UserPresence(Id),
    /// `invite/<calleeId>/<sid>`.
    Invite { callee: Id, sid: Sid },
    /// `session/<sid>/call`: participants' call actions.
    CallAction(Sid),
    /// `session/<sid>/state`: the call's state, retained while it lives.
    CallState(Sid),
    /// `session/<sid>/webrtc/<clientId>/up|down`.
    WebRtc {
        sid: Sid,
        client: ClientId,
        direction: Direction,
    },
    /// `session/<sid>/<command>/request|response`.
    Command {
        sid: Sid,
        command: CommandName,
        part: CommandPart,
    },
    /// `pairing/<code>/robotID|userID|status`.
    Pairing {
        code: PairingCode,
        field: PairingField,
    },
    /// `clients/<clientId>/errors`: refusals reported to one client.
    ClientErrors(ClientId),
}

/// Which way WebRTC signalling flows relative to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the participant device to the relay.
    Up,
    /// From the relay to the participant device.
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandPart {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairingField {
    /// `robotID`: the robot's id, retained while the code lives.
    RobotId,
    /// `userID`: the id of the user claiming the robot.
    UserId,
    /// `status`: the server's verdict.
    Status,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

impl CommandPart {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CommandPart::Request => "request",
            CommandPart::Response => "response",
        }
    }

    pub(crate) fn parse(level: &str) -> Option<CommandPart> {
        match level {
            "request" => Some(CommandPart::Request),
            "response" => Some(CommandPart::Response),
            _ => None,
        }
    }
}

impl PairingField {
    fn as_str(self) -> &'static str {
        match self {
            PairingField::RobotId => "robotID",
            PairingField::UserId => "userID",
            PairingField::Status => "status",
        }
    }
}

impl Topic {
    /// A user's own topics: its profile and presence, whose state the
    /// server holds.
    pub fn of_user(user: &Id) -> [Topic; 3] {
        [
            Topic::UserInfo(user.clone()),
            Topic::UserIsConnected(user.clone()),
            Topic::UserPresence(user.clone()),
        ]
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::UserInfo(id) => write!(f, "users/{id}/info"),
            Topic::UserIsConnected(id) => write!(f, "users/{id}/isConnected"),
            Topic::UserPresence(id) => write!(f, "users/{id}/presence"),
            Topic::Invite { callee, sid } => write!(f, "invite/{callee}/{sid}"),
            Topic::CallAction(sid) => write!(f, "session/{sid}/call"),
            Topic::CallState(sid) => write!(f, "session/{sid}/state"),
            Topic::WebRtc {
                sid,
                client,
                direction,
            } => write!(f, "session/{sid}/webrtc/{client}/{}", direction.as_str()),
            Topic::Command { sid, command, part } => {
                write!(f, "session/{sid}/{command}/{}", part.as_str())
            }
            Topic::Pairing { code, field } => write!(f, "pairing/{code}/{}", field.as_str()),
            Topic::ClientErrors(client) => write!(f, "clients/{client}/errors"),
        }
    }
}

const NOT_A_TOPIC: Invalid = Invalid {
    what: "topic",
    rule: "one of the topics of the Switchboard protocol (docs/protocol.md)",
};

impl FromStr for Topic {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        let levels: Vec<&str> = s.split('/').collect();
        let topic = match levels.as_slice() {
            ["users", id, "info"] => Topic::UserInfo(id.parse()?),
            ["users", id, "isConnected"] => Topic::UserIsConnected(id.parse()?),
            ["users", id, "presence"] => Topic::UserPresence(id.parse()?),
            ["invite", callee, sid] => Topic::Invite {
                callee: callee.parse()?,
                sid: sid.parse()?,
            },
            ["session", sid, "call"] => Topic::CallAction(sid.parse()?),
            ["session", sid, "state"] => Topic::CallState(sid.parse()?),
            ["session", sid, "webrtc", client, direction] => Topic::WebRtc {
                sid: sid.parse()?,
                client: client.parse()?,
                direction: match *direction {
                    "up" => Direction::Up,
                    "down" => Direction::Down,
                    _ => return Err(NOT_A_TOPIC),
                },
            },
            ["session", sid, command, part] => Topic::Command {
                sid: sid.parse()?,
                command: command.parse()?,
                part: CommandPart::parse(part).ok_or(NOT_A_TOPIC)?,
            },
            ["pairing", code, field] => Topic::Pairing {
                code: code.parse()?,
                field: match *field {
                    "robotID" => PairingField::RobotId,
                    "userID" => PairingField::UserId,
                    "status" => PairingField::Status,
                    _ => return Err(NOT_A_TOPIC),
                },
            },
            ["clients", client, "errors"] => Topic::ClientErrors(client.parse()?),
            _ => return Err(NOT_A_TOPIC),
        };
        Ok(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "36940d0ece18aebf69d0ef6825534e24";
    const SID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn builds_the_use_case_topics() {
        let id: Id = ID.parse().unwrap();
        assert_eq!(
            Topic::UserInfo(id.clone()).to_string(),
            format!("users/{ID}/info")
        );
        assert_eq!(
            Topic::UserIsConnected(id.clone()).to_string(),
            format!("users/{ID}/isConnected")
        );
        let t = Topic::Command {
            sid: SID.parse().unwrap(),
            command: "moveTo".parse().unwrap(),
            part: CommandPart::Request,
        };
        assert_eq!(t.to_string(), format!("session/{SID}/moveTo/request"));
        let p = Topic::Pairing {
            code: "123456".parse().unwrap(),
            field: PairingField::RobotId,
        };
        assert_eq!(p.to_string(), "pairing/123456/robotID");
    }

    #[test]
    fn rejects_what_the_contract_does_not_allow() {
        for bad in [
            "",
            "#",
            "$SYS/brokers",
            "users/+/info",
            "users/#",
            &format!("users/{ID}/info/extra"),
            &format!("users/{ID}/nickname"),
            &format!("users/{}/info", ID.to_uppercase()),
            &format!("invite/{ID}/+"),
            &format!("invite/{ID}/short"),
            &format!("session/{SID}/state/x"),
            &format!("session/{SID}/call/request"),
            &format!("session/{SID}/webrtc/request"),
            &format!("session/{SID}/moveTo/reply"),
            &format!("session/{SID}/1move/request"),
            &format!("session/{SID}/webrtc/{ID}:ph/sideways"),
            "pairing/12345/robotID",
            "pairing/123456/robotid",
            &format!("clients/{ID}:Bad/errors"),
            &format!("/users/{ID}/info"),
        ] {
            assert!(bad.parse::<Topic>().is_err(), "{bad:?} parsed");
        }
    }

    fn hex32() -> impl Strategy<Value = String> {
        "[0-9a-f]{32}"
    }

    fn client_id() -> impl Strategy<Value = ClientId> {
        (hex32(), proptest::option::of("[a-z0-9_-]{1,32}")).prop_map(|(id, device)| {
            ClientId::new(id.parse().unwrap(), device.map(|d| d.parse().unwrap()))
        })
    }

    fn command() -> impl Strategy<Value = CommandName> {
        "[A-Za-z][A-Za-z0-9_-]{0,63}"
            .prop_filter("reserved", |c| {
                !crate::ids::RESERVED_COMMANDS.contains(&c.as_str())
            })
            .prop_map(|c| c.parse().unwrap())
    }

    fn topic() -> impl Strategy<Value = Topic> {
        let id = || hex32().prop_map(|s| s.parse::<Id>().unwrap());
        let sid = || hex32().prop_map(|s| s.parse::<Sid>().unwrap());
        prop_oneof![
            id().prop_map(Topic::UserInfo),
            id().prop_map(Topic::UserIsConnected),
            id().prop_map(Topic::UserPresence),
            (id(), sid()).prop_map(|(callee, sid)| Topic::Invite { callee, sid }),
            sid().prop_map(Topic::CallAction),
            sid().prop_map(Topic::CallState),
            (sid(), client_id(), any::<bool>()).prop_map(|(sid, client, up)| Topic::WebRtc {
                sid,
                client,
                direction: if up { Direction::Up } else { Direction::Down },
            }),
            (sid(), command(), any::<bool>()).prop_map(|(sid, command, req)| Topic::Command {
                sid,
                command,
                part: if req {
                    CommandPart::Request
                } else {
                    CommandPart::Response
                },
            }),
            ("[0-9]{6}", 0..3u8).prop_map(|(code, f)| Topic::Pairing {
                code: code.parse().unwrap(),
                field: [
                    PairingField::RobotId,
                    PairingField::UserId,
                    PairingField::Status
                ][f as usize],
            }),
            client_id().prop_map(Topic::ClientErrors),
        ]
    }

    proptest! {
        #[test]
        fn parse_inverts_build(t in topic()) {
            prop_assert_eq!(t.to_string().parse::<Topic>(), Ok(t));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = s.parse::<Topic>();
        }
    }
}

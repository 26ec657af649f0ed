//! Who may subscribe to and publish on which topic: the rule table of the
//! protocol as one pure function. The server gives it the facts it needs
//! (who can see whom) through `Facts`; everything else is decided from the
//! topic and the client's own identity.

use crate::ids::{ClientId, Id};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Robot,
}

/// A logged-in MQTT client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub client: ClientId,
    pub kind: PrincipalKind,
}

impl Principal {
    pub fn id(&self) -> &Id {
        &self.client.id
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `topic` is a subscription filter and may hold wildcards.
    Subscribe,
    /// `topic` is a topic name (also a Will topic).
    Publish,
}

/// What the rules need to know beyond the topic.
pub trait Facts {
    /// Whether `viewer` may see `target`'s profile and presence: itself,
    /// or `target` shows itself to everyone or lists `viewer` as a contact,
    /// and `target` has not blocked `viewer`.
    fn can_see(&self, viewer: &Id, target: &Id) -> bool;

    /// Whether `user` is the caller or the callee of the call `sid`.
    fn in_call(&self, user: &Id, sid: &crate::Sid) -> bool;

    /// Whether `caller` may invite `callee`: robots and their owners call
    /// each other, nobody else calls a robot; users call users they see.
    fn may_call(&self, caller: &Id, callee: &Id) -> bool;

    /// Where `user` stands with a pairing code.
    fn pairing(&self, user: &Id, code: &crate::PairingCode) -> PairingRole;

    /// Where `user` stands with the robot of the accepted call `sid`.
    fn command_role(&self, user: &Id, sid: &crate::Sid) -> Option<CommandRole>;

    /// Where the device `client` stands with the media of the call `sid`.
    fn media_role(&self, client: &ClientId, sid: &crate::Sid) -> MediaRole;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaRole {
    /// The caller's device or the callee device that accepted, in an
    /// accepted call.
    Participant,
    /// Anyone else, or the call is not (or no longer) accepted.
    Outsider,
    /// This server runs no media relay.
    NoRelay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingRole {
    /// The live code was issued to this robot.
    Robot,
    /// This user looked the live code up.
    Looked,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandRole {
    /// An owner of the robot, in an accepted call with it.
    Owner,
    /// The robot in the accepted call.
    Robot,
    /// The robot called by an owner, before it accepts: it may already
    /// follow the call's requests, so none sent right after the accept is
    /// lost to its subscription racing the owner's first request.
    InvitedRobot,
}

/// Why a subscription or publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("wildcards may not stand for another user's, call's or code's topics")]
    Wildcard,
    #[error("$SYS and other $ topics are not available")]
    System,
    #[error("this topic belongs to another client")]
    NotYours,
    #[error("that user does not share this with you")]
    NotVisible,
    #[error("only the server publishes on this topic")]
    ServerOnly,
    #[error("not available yet: this part of the protocol is not served")]
    NotServed,
    #[error("not a topic of the Switchboard protocol")]
    NotInContract,
}

/// One level of a topic or filter.
enum Level<'a> {
    /// `+` or `#`.
    Wild,
    Literal(&'a str),
}

fn level(s: &str) -> Level<'_> {
    if s == "+" || s == "#" {
        Level::Wild
    } else {
        Level::Literal(s)
    }
}

/// Decides whether `principal` may `action` on `topic`.
pub fn authorize(
    principal: &Principal,
    action: Action,
    topic: &str,
    facts: &impl Facts,
) -> Result<(), Denial> {
    if topic.starts_with('$') {
        return Err(Denial::System);
    }
    let levels: Vec<&str> = topic.split('/').collect();
    let publish = action == Action::Publish;
    if publish && levels.iter().any(|l| matches!(level(l), Level::Wild)) {
        // MQTT forbids wildcards in topic names; never route one.
        return Err(Denial::NotInContract);
    }
    let me = principal.id();
    match levels.as_slice() {
        [first, ..] if matches!(level(first), Level::Wild) => Err(Denial::Wildcard),
        ["users", owner, leaf] => {
            let owner = concrete_id(owner)?;
            match (action, *leaf) {
                (Action::Publish, "info" | "isConnected") if &owner == me => Ok(()),
                (Action::Publish, "info" | "isConnected") => Err(Denial::NotYours),
                (Action::Publish, "presence") => Err(Denial::ServerOnly),
                (Action::Subscribe, "info" | "isConnected" | "presence" | "+" | "#") => {
                    if facts.can_see(me, &owner) {
                        Ok(())
                    } else {
                        Err(Denial::NotVisible)
                    }
                }
                _ => Err(Denial::NotInContract),
            }
        }
        ["invite", callee, sid] => {
            let callee = concrete_id(callee)?;
            match action {
                // `invite/<me>/+` (or `#`) is the inbox of the use case.
                Action::Subscribe if &callee == me => match level(sid) {
                    Level::Wild => Ok(()),
                    Level::Literal(s) => s
                        .parse::<crate::Sid>()
                        .map(|_| ())
                        .map_err(|_| Denial::NotInContract),
                },
                Action::Subscribe => Err(Denial::NotYours),
                Action::Publish => {
                    sid.parse::<crate::Sid>()
                        .map_err(|_| Denial::NotInContract)?;
                    if &callee == me {
                        Err(Denial::NotInContract)
                    } else if facts.may_call(me, &callee) {
                        Ok(())
                    } else {
                        Err(Denial::NotVisible)
                    }
                }
            }
        }
        ["session", sid, leaf] if *leaf == "state" || *leaf == "call" => {
            let sid: crate::Sid = match level(sid) {
                Level::Wild => return Err(Denial::Wildcard),
                Level::Literal(s) => s.parse().map_err(|_| Denial::NotInContract)?,
            };
            // Participants read the state and send actions; the server
            // writes the state and reads the actions.
            let participant_side = matches!(
                (action, *leaf),
                (Action::Subscribe, "state") | (Action::Publish, "call")
            );
            if !participant_side {
                Err(Denial::ServerOnly)
            } else if facts.in_call(me, &sid) {
                Ok(())
            } else {
                Err(Denial::NotYours)
            }
        }
        ["session", sid, command, part] if *part == "request" || *part == "response" => {
            let sid: crate::Sid = match (level(sid), level(command)) {
                // Every command of one call (`session/<sid>/+/request`):
                // a robot need not list the commands it serves.
                (Level::Literal(s), Level::Wild) if *command == "+" => {
                    s.parse().map_err(|_| Denial::NotInContract)?
                }
                (Level::Wild, _) | (_, Level::Wild) => return Err(Denial::Wildcard),
                (Level::Literal(s), Level::Literal(c)) => {
                    c.parse::<crate::CommandName>()
                        .map_err(|_| Denial::NotInContract)?;
                    s.parse().map_err(|_| Denial::NotInContract)?
                }
            };
            let role = facts.command_role(me, &sid).ok_or(Denial::NotYours)?;
            // Owners send requests, only the robot reads them; the robot
            // answers, both read the answers.
            match (action, *part, role) {
                (Action::Publish, "request", CommandRole::Owner)
                | (Action::Subscribe, "request", CommandRole::Robot | CommandRole::InvitedRobot)
                | (Action::Publish, "response", CommandRole::Robot)
                | (Action::Subscribe, "response", CommandRole::Owner | CommandRole::Robot) => {
                    Ok(())
                }
                _ => Err(Denial::NotYours),
            }
        }
        ["pairing", code, field] => {
            let code: crate::PairingCode = match level(code) {
                Level::Wild => return Err(Denial::Wildcard),
                Level::Literal(c) => c.parse().map_err(|_| Denial::NotInContract)?,
            };
            let role = facts.pairing(me, &code);
            // The robot publishes its id and reads who claims it; a user
            // who looked the code up reads the robot id and the verdict
            // and claims it with its own id; the server writes the verdict.
            match (action, *field, role) {
                (Action::Publish, "robotID", PairingRole::Robot)
                | (Action::Subscribe, "robotID", PairingRole::Robot | PairingRole::Looked)
                | (Action::Publish, "userID", PairingRole::Looked)
                | (Action::Subscribe, "userID", PairingRole::Robot)
                | (Action::Subscribe, "status", PairingRole::Robot | PairingRole::Looked) => Ok(()),
                (Action::Publish, "status", _) => Err(Denial::ServerOnly),
                (_, "robotID" | "userID" | "status", _) => Err(Denial::NotYours),
                _ => Err(Denial::NotInContract),
            }
        }
        ["session", sid, "webrtc", client, direction] => {
            let (sid, client): (crate::Sid, ClientId) = match (level(sid), level(client)) {
                (Level::Wild, _) | (_, Level::Wild) => return Err(Denial::Wildcard),
                (Level::Literal(s), Level::Literal(c)) => (
                    s.parse().map_err(|_| Denial::NotInContract)?,
                    c.parse().map_err(|_| Denial::NotInContract)?,
                ),
            };
            if !matches!(*direction, "up" | "down") {
                return Err(Denial::NotInContract);
            }
            if client != principal.client {
                return Err(Denial::NotYours);
            }
            // A device sends to the relay on `up` and reads it on `down`.
            match (action, *direction, facts.media_role(&client, &sid)) {
                (_, _, MediaRole::NoRelay) => Err(Denial::NotServed),
                (_, _, MediaRole::Outsider) => Err(Denial::NotYours),
                (Action::Publish, "up", _) | (Action::Subscribe, "down", _) => Ok(()),
                (Action::Publish, _, _) => Err(Denial::ServerOnly),
                (Action::Subscribe, _, _) => Err(Denial::NotYours),
            }
        }
        ["session", ..] | ["pairing", ..] => {
            if levels.iter().any(|l| matches!(level(l), Level::Wild)) {
                Err(Denial::Wildcard)
            } else {
                Err(Denial::NotInContract)
            }
        }
        ["clients", client, "errors"] => match (action, level(client)) {
            (Action::Publish, _) => Err(Denial::ServerOnly),
            (Action::Subscribe, Level::Wild) => Err(Denial::Wildcard),
            (Action::Subscribe, Level::Literal(c)) if c == principal.client.to_string() => Ok(()),
            (Action::Subscribe, Level::Literal(_)) => Err(Denial::NotYours),
        },
        [.., last] if *last == "#" => Err(Denial::Wildcard),
        _ => Err(Denial::NotInContract),
    }
}

/// The id in an owner slot: a wildcard there would reach other users.
fn concrete_id(s: &str) -> Result<Id, Denial> {
    match level(s) {
        Level::Wild => Err(Denial::Wildcard),
        Level::Literal(s) => s.parse().map_err(|_| Denial::NotInContract),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const ME: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const FRIEND: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const STRANGER: &str = "cccccccccccccccccccccccccccccccc";
    const SID: &str = "0123456789abcdef0123456789abcdef";
    const OTHER_SID: &str = "fedcba9876543210fedcba9876543210";
    /// A call in which ME is the robot.
    const ROBOT_SID: &str = "11111111111111111111111111111111";
    /// A call ringing ME, a robot, which has not accepted yet.
    const RINGING_SID: &str = "22222222222222222222222222222222";
    /// A code ME looked up, and one issued to ME as a robot.
    const LOOKED: &str = "123456";
    const MINE: &str = "654321";

    /// Who can see whom, as the server would know it; ME takes part in
    /// the call SID.
    struct Graph(HashSet<(String, String)>);

    impl Facts for Graph {
        fn can_see(&self, viewer: &Id, target: &Id) -> bool {
            viewer == target || self.0.contains(&(viewer.to_string(), target.to_string()))
        }

        fn in_call(&self, user: &Id, sid: &crate::Sid) -> bool {
            user.as_str() == ME && sid.as_str() == SID
        }

        fn may_call(&self, caller: &Id, callee: &Id) -> bool {
            self.can_see(caller, callee)
        }

        fn pairing(&self, user: &Id, code: &crate::PairingCode) -> PairingRole {
            match (user.as_str(), code.as_str()) {
                (ME, LOOKED) => PairingRole::Looked,
                (ME, MINE) => PairingRole::Robot,
                _ => PairingRole::None,
            }
        }

        fn command_role(&self, user: &Id, sid: &crate::Sid) -> Option<CommandRole> {
            match (user.as_str(), sid.as_str()) {
                (ME, SID) => Some(CommandRole::Owner),
                (ME, ROBOT_SID) => Some(CommandRole::Robot),
                (ME, RINGING_SID) => Some(CommandRole::InvitedRobot),
                _ => None,
            }
        }

        /// ME's phone takes part in the media of SID; the relay is off
        /// for ROBOT_SID's tests of that case.
        fn media_role(&self, client: &ClientId, sid: &crate::Sid) -> MediaRole {
            match (client.to_string().as_str(), sid.as_str()) {
                (_, ROBOT_SID) => MediaRole::NoRelay,
                (c, SID) if c == format!("{ME}:phone") => MediaRole::Participant,
                _ => MediaRole::Outsider,
            }
        }
    }

    fn me() -> Principal {
        Principal {
            client: format!("{ME}:phone").parse().unwrap(),
            kind: PrincipalKind::User,
        }
    }

    #[test]
    fn rule_table() {
        use Action::{Publish as P, Subscribe as S};
        let graph = Graph([(ME.to_string(), FRIEND.to_string())].into_iter().collect());
        let ok = Ok(());
        let cases: Vec<(Action, String, Result<(), Denial>)> = vec![
            // Everything, $SYS and wildcard first levels.
            (S, "#".into(), Err(Denial::Wildcard)),
            (S, "+/info".into(), Err(Denial::Wildcard)),
            (S, "+/+/+".into(), Err(Denial::Wildcard)),
            (S, "$SYS/#".into(), Err(Denial::System)),
            (S, "$share/g/users/x/info".into(), Err(Denial::System)),
            (P, "$SYS/x".into(), Err(Denial::System)),
            // Profiles and presence: self and those who show themselves.
            (S, format!("users/{ME}/info"), ok),
            (S, format!("users/{ME}/#"), ok),
            (S, format!("users/{FRIEND}/info"), ok),
            (S, format!("users/{FRIEND}/isConnected"), ok),
            (S, format!("users/{FRIEND}/presence"), ok),
            (S, format!("users/{FRIEND}/+"), ok),
            (S, format!("users/{STRANGER}/info"), Err(Denial::NotVisible)),
            (S, format!("users/{STRANGER}/#"), Err(Denial::NotVisible)),
            (S, "users/+/info".into(), Err(Denial::Wildcard)),
            (S, "users/#".into(), Err(Denial::Wildcard)),
            (S, "users/+/#".into(), Err(Denial::Wildcard)),
            (S, format!("users/{ME}/secrets"), Err(Denial::NotInContract)),
            (S, "users/not-an-id/info".into(), Err(Denial::NotInContract)),
            (P, format!("users/{ME}/info"), ok),
            (P, format!("users/{ME}/isConnected"), ok),
            (P, format!("users/{ME}/presence"), Err(Denial::ServerOnly)),
            (P, format!("users/{FRIEND}/info"), Err(Denial::NotYours)),
            (
                P,
                format!("users/{FRIEND}/isConnected"),
                Err(Denial::NotYours),
            ),
            (P, "users/+/info".into(), Err(Denial::NotInContract)),
            // Invites: only one's own inbox; invite those one can see.
            (S, format!("invite/{ME}/+"), ok),
            (S, format!("invite/{ME}/#"), ok),
            (S, format!("invite/{ME}/{SID}"), ok),
            (S, format!("invite/{FRIEND}/+"), Err(Denial::NotYours)),
            (S, "invite/+/+".into(), Err(Denial::Wildcard)),
            (S, "invite/#".into(), Err(Denial::Wildcard)),
            (P, format!("invite/{FRIEND}/{SID}"), ok),
            (
                P,
                format!("invite/{STRANGER}/{SID}"),
                Err(Denial::NotVisible),
            ),
            (P, format!("invite/{ME}/{SID}"), Err(Denial::NotInContract)),
            (
                P,
                format!("invite/{FRIEND}/not-a-sid"),
                Err(Denial::NotInContract),
            ),
            // Calls: participants read the state and send actions.
            (S, format!("session/{SID}/state"), ok),
            (P, format!("session/{SID}/call"), ok),
            (P, format!("session/{SID}/state"), Err(Denial::ServerOnly)),
            (S, format!("session/{SID}/call"), Err(Denial::ServerOnly)),
            (
                S,
                format!("session/{OTHER_SID}/state"),
                Err(Denial::NotYours),
            ),
            (
                P,
                format!("session/{OTHER_SID}/call"),
                Err(Denial::NotYours),
            ),
            (S, "session/+/state".into(), Err(Denial::Wildcard)),
            (S, "session/#".into(), Err(Denial::Wildcard)),
            (S, "session/short/state".into(), Err(Denial::NotInContract)),
            // Commands: owners request, the robot reads requests and answers.
            (P, format!("session/{SID}/moveTo/request"), ok),
            (S, format!("session/{SID}/moveTo/response"), ok),
            (
                S,
                format!("session/{SID}/moveTo/request"),
                Err(Denial::NotYours),
            ),
            (
                P,
                format!("session/{SID}/moveTo/response"),
                Err(Denial::NotYours),
            ),
            (S, format!("session/{ROBOT_SID}/moveTo/request"), ok),
            (P, format!("session/{ROBOT_SID}/moveTo/response"), ok),
            (S, format!("session/{ROBOT_SID}/+/request"), ok),
            (S, format!("session/{ROBOT_SID}/+/response"), ok),
            (S, format!("session/{SID}/+/response"), ok),
            (S, format!("session/{SID}/+/request"), Err(Denial::NotYours)),
            // Invited, not yet accepted: follows the requests, nothing more.
            (S, format!("session/{RINGING_SID}/+/request"), ok),
            (
                S,
                format!("session/{RINGING_SID}/+/response"),
                Err(Denial::NotYours),
            ),
            (
                P,
                format!("session/{RINGING_SID}/moveTo/response"),
                Err(Denial::NotYours),
            ),
            (
                S,
                format!("session/{OTHER_SID}/+/request"),
                Err(Denial::NotYours),
            ),
            (
                S,
                format!("session/{ROBOT_SID}/#/request"),
                Err(Denial::Wildcard),
            ),
            (S, "session/+/+/request".into(), Err(Denial::Wildcard)),
            (
                P,
                format!("session/{OTHER_SID}/moveTo/request"),
                Err(Denial::NotYours),
            ),
            (
                P,
                format!("session/{SID}/state/request"),
                Err(Denial::NotInContract),
            ),
            (
                P,
                format!("session/{SID}/1bad/request"),
                Err(Denial::NotInContract),
            ),
            // Pairing.
            (S, format!("pairing/{LOOKED}/robotID"), ok),
            (S, format!("pairing/{LOOKED}/status"), ok),
            (P, format!("pairing/{LOOKED}/userID"), ok),
            (
                P,
                format!("pairing/{LOOKED}/robotID"),
                Err(Denial::NotYours),
            ),
            (S, format!("pairing/{LOOKED}/userID"), Err(Denial::NotYours)),
            (P, format!("pairing/{MINE}/robotID"), ok),
            (S, format!("pairing/{MINE}/userID"), ok),
            (S, format!("pairing/{MINE}/status"), ok),
            (P, format!("pairing/{MINE}/status"), Err(Denial::ServerOnly)),
            (S, "pairing/999999/robotID".into(), Err(Denial::NotYours)),
            (S, "pairing/999999/other".into(), Err(Denial::NotInContract)),
            // Media signalling: one's own device in the call, up to the
            // relay and down from it.
            (P, format!("session/{SID}/webrtc/{ME}:phone/up"), ok),
            (S, format!("session/{SID}/webrtc/{ME}:phone/down"), ok),
            (
                S,
                format!("session/{SID}/webrtc/{ME}:phone/up"),
                Err(Denial::NotYours),
            ),
            (
                P,
                format!("session/{SID}/webrtc/{ME}:phone/down"),
                Err(Denial::ServerOnly),
            ),
            (
                S,
                format!("session/{SID}/webrtc/{ME}:tablet/down"),
                Err(Denial::NotYours),
            ),
            (
                P,
                format!("session/{SID}/webrtc/{FRIEND}/up"),
                Err(Denial::NotYours),
            ),
            (
                S,
                format!("session/{OTHER_SID}/webrtc/{ME}:phone/down"),
                Err(Denial::NotYours),
            ),
            (
                S,
                format!("session/{ROBOT_SID}/webrtc/{ME}:phone/down"),
                Err(Denial::NotServed),
            ),
            (
                S,
                format!("session/{SID}/webrtc/+/down"),
                Err(Denial::Wildcard),
            ),
            (S, format!("session/{SID}/webrtc/#"), Err(Denial::Wildcard)),
            (
                P,
                format!("session/{SID}/webrtc/{ME}:phone/sideways"),
                Err(Denial::NotInContract),
            ),
            (
                S,
                format!("session/{SID}/webrtc/not-an-id/down"),
                Err(Denial::NotInContract),
            ),
            (S, "pairing/+/robotID".into(), Err(Denial::Wildcard)),
            (S, "pairing/#".into(), Err(Denial::Wildcard)),
            // Error reports: one's own client id only.
            (S, format!("clients/{ME}:phone/errors"), ok),
            (S, format!("clients/{ME}/errors"), Err(Denial::NotYours)),
            (S, format!("clients/{FRIEND}/errors"), Err(Denial::NotYours)),
            (S, "clients/+/errors".into(), Err(Denial::Wildcard)),
            (
                P,
                format!("clients/{ME}:phone/errors"),
                Err(Denial::ServerOnly),
            ),
            // Anything else.
            (S, "foo/bar".into(), Err(Denial::NotInContract)),
            (S, "foo/#".into(), Err(Denial::Wildcard)),
            (P, "foo".into(), Err(Denial::NotInContract)),
            (P, "".into(), Err(Denial::NotInContract)),
        ];
        for (action, topic, want) in cases {
            assert_eq!(
                authorize(&me(), action, &topic, &graph),
                want,
                "{action:?} {topic}"
            );
        }
    }

    #[test]
    fn blocked_or_invisible_users_see_nothing() {
        let nobody = Graph(HashSet::new());
        for leaf in ["info", "isConnected", "presence", "+", "#"] {
            assert_eq!(
                authorize(
                    &me(),
                    Action::Subscribe,
                    &format!("users/{FRIEND}/{leaf}"),
                    &nobody
                ),
                Err(Denial::NotVisible)
            );
        }
    }
}

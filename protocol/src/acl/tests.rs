//! The rule table, string by string, as a hook applies it.

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

    fn in_call(&self, user: &Id, sid: &Sid) -> bool {
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

    fn command_role(&self, user: &Id, sid: &Sid) -> Option<CommandRole> {
        match (user.as_str(), sid.as_str()) {
            (ME, SID) => Some(CommandRole::Owner),
            (ME, ROBOT_SID) => Some(CommandRole::Robot),
            (ME, RINGING_SID) => Some(CommandRole::InvitedRobot),
            _ => None,
        }
    }

    /// ME's phone takes part in the media of SID; the relay is off
    /// for ROBOT_SID's tests of that case.
    fn media_role(&self, client: &ClientId, sid: &Sid) -> MediaRole {
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

/// The rules for a string, as a hook applies them.
fn check(action: Action, s: &str, facts: &Graph) -> Result<(), Denial> {
    match action {
        Action::Subscribe => s
            .parse::<Filter>()
            .and_then(|f| authorize(&me(), action, &f, facts)),
        Action::Publish => check_publish(&me(), s, facts).map(|_| ()),
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
        assert_eq!(check(action, &topic, &graph), want, "{action:?} {topic}");
    }
}

#[test]
fn blocked_or_invisible_users_see_nothing() {
    let nobody = Graph(HashSet::new());
    for leaf in ["info", "isConnected", "presence", "+", "#"] {
        assert_eq!(
            check(
                Action::Subscribe,
                &format!("users/{FRIEND}/{leaf}"),
                &nobody
            ),
            Err(Denial::NotVisible)
        );
    }
}

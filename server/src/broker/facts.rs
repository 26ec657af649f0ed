//! What the topic rules need to know, read from the services: who sees
//! whom (the graph), who is in which call, and where the user stands with
//! the pairing code the topic names (read from the store beforehand).

use switchboard_protocol::acl::{self, CommandRole, MediaRole, PairingRole};
use switchboard_protocol::{ClientId, Id, PairingCode, Sid};

use crate::services::calls::CallService;
use crate::social::Graph;

/// What the topic rules need to know: the graph, calls and pairing codes.
pub struct Facts<'a> {
    pub graph: &'a Graph,
    pub calls: &'a CallService,
    /// Where the user stands with the pairing code the topic or filter
    /// names (each names one at most).
    pub pairing: PairingRole,
    /// Whether this server runs the media relay.
    pub relay: bool,
}

impl acl::Facts for Facts<'_> {
    fn can_see(&self, viewer: &Id, target: &Id) -> bool {
        self.graph.can_see(viewer, target)
    }

    fn in_call(&self, user: &Id, sid: &Sid) -> bool {
        self.calls.participant(sid, user)
    }

    fn may_call(&self, caller: &Id, callee: &Id) -> bool {
        self.graph.may_call(caller, callee)
    }

    fn pairing(&self, _: &Id, _: &PairingCode) -> PairingRole {
        self.pairing
    }

    fn media_role(&self, client: &ClientId, sid: &Sid) -> MediaRole {
        if !self.relay {
            MediaRole::NoRelay
        } else if self
            .calls
            .media_devices(sid)
            .is_some_and(|devices| devices.contains(client))
        {
            MediaRole::Participant
        } else {
            MediaRole::Outsider
        }
    }

    fn command_role(&self, user: &Id, sid: &Sid) -> Option<CommandRole> {
        let (caller, callee, accepted) = self.calls.live_parties(sid)?;
        let (robot, other) = if self.graph.is_robot(&caller) {
            (caller, callee)
        } else {
            (callee, caller)
        };
        if !self.graph.is_robot(&robot) || !self.graph.paired(&robot, &other) {
            return None;
        }
        match (user == &robot, user == &other, accepted) {
            (true, _, true) => Some(CommandRole::Robot),
            (true, _, false) => Some(CommandRole::InvitedRobot),
            (_, true, true) => Some(CommandRole::Owner),
            _ => None,
        }
    }
}

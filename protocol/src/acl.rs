//! Who may subscribe to and publish on which topic: the rule table of the
//! protocol as one pure function. The server gives it the facts it needs
//! (who can see whom) through `Facts`; everything else is decided from the
//! topic and the client's own identity.

use crate::filter::Filter;
use crate::ids::{ClientId, Id, Sid};
use crate::topic::{CommandPart, Direction, PairingField, Topic};

/// The kind of account behind a login. The server stores accounts under
/// these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Robot,
}

names!(
    PrincipalKind,
    "account kind",
    User = "user",
    Robot = "robot"
);

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
    /// A subscription: its filter may hold the wildcards the rules allow.
    Subscribe,
    /// A publish (or a Will): a topic name, no wildcards.
    Publish,
}

/// What the rules need to know beyond the topic.
pub trait Facts {
    /// Whether `viewer` may see `target`'s profile and presence: itself,
    /// or `target` shows itself to everyone or lists `viewer` as a contact,
    /// and `target` has not blocked `viewer`.
    fn can_see(&self, viewer: &Id, target: &Id) -> bool;

    /// Whether `user` is the caller or the callee of the call `sid`.
    fn in_call(&self, user: &Id, sid: &Sid) -> bool;

    /// Whether `caller` may invite `callee`: robots and their owners call
    /// each other, nobody else calls a robot; users call users they see.
    fn may_call(&self, caller: &Id, callee: &Id) -> bool;

    /// Where `user` stands with a pairing code.
    fn pairing(&self, user: &Id, code: &crate::PairingCode) -> PairingRole;

    /// Where `user` stands with the robot of the accepted call `sid`.
    fn command_role(&self, user: &Id, sid: &Sid) -> Option<CommandRole>;

    /// Where the device `client` stands with the media of the call `sid`.
    fn media_role(&self, client: &ClientId, sid: &Sid) -> MediaRole;
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

/// The rules for a PUBLISH (or a Will): the topic parsed once, decided,
/// and returned for the server's handlers.
pub fn check_publish(
    principal: &Principal,
    topic: &str,
    facts: &impl Facts,
) -> Result<Topic, Denial> {
    if topic.starts_with('$') {
        return Err(Denial::System);
    }
    // MQTT forbids wildcards in topic names: a name is a topic of the
    // contract or nothing.
    let topic: Topic = topic.parse().map_err(|_| Denial::NotInContract)?;
    authorize_topic(principal, Action::Publish, &topic, facts)?;
    Ok(topic)
}

/// Decides whether `principal` may `action` on `filter`. A SUBSCRIBE's
/// filter comes from `Filter::from_str`, which refuses `$` topics and
/// wildcards the rules could never allow.
pub fn authorize(
    principal: &Principal,
    action: Action,
    filter: &Filter,
    facts: &impl Facts,
) -> Result<(), Denial> {
    let me = principal.id();
    match (filter, action) {
        (Filter::Topic(topic), _) => authorize_topic(principal, action, topic, facts),
        // Wildcards are for subscriptions only.
        (_, Action::Publish) => Err(Denial::NotInContract),
        (Filter::User(owner, _), Action::Subscribe) => see(facts, me, owner),
        // `invite/<me>/+` (or `#`) is the inbox of the use case.
        (Filter::Invites(callee, _), Action::Subscribe) if callee == me => Ok(()),
        (Filter::Invites(..), Action::Subscribe) => Err(Denial::NotYours),
        (Filter::Commands { sid, part }, Action::Subscribe) => {
            command(facts, me, sid, Action::Subscribe, *part)
        }
    }
}

fn authorize_topic(
    principal: &Principal,
    action: Action,
    topic: &Topic,
    facts: &impl Facts,
) -> Result<(), Denial> {
    use Action::{Publish, Subscribe};
    let me = principal.id();
    match (topic, action) {
        (Topic::UserInfo(owner) | Topic::UserIsConnected(owner), Publish) if owner == me => Ok(()),
        (Topic::UserInfo(_) | Topic::UserIsConnected(_), Publish) => Err(Denial::NotYours),
        (Topic::UserPresence(_), Publish) => Err(Denial::ServerOnly),
        (
            Topic::UserInfo(owner) | Topic::UserIsConnected(owner) | Topic::UserPresence(owner),
            Subscribe,
        ) => see(facts, me, owner),
        (Topic::Invite { callee, .. }, Subscribe) if callee == me => Ok(()),
        (Topic::Invite { .. }, Subscribe) => Err(Denial::NotYours),
        (Topic::Invite { callee, .. }, Publish) if callee == me => Err(Denial::NotInContract),
        (Topic::Invite { callee, .. }, Publish) if facts.may_call(me, callee) => Ok(()),
        (Topic::Invite { .. }, Publish) => Err(Denial::NotVisible),
        // Participants read the state and send actions; the server writes
        // the state and reads the actions.
        (Topic::CallState(sid), Subscribe) | (Topic::CallAction(sid), Publish) => {
            if facts.in_call(me, sid) {
                Ok(())
            } else {
                Err(Denial::NotYours)
            }
        }
        (Topic::CallState(_), Publish) | (Topic::CallAction(_), Subscribe) => {
            Err(Denial::ServerOnly)
        }
        (Topic::Command { sid, part, .. }, _) => command(facts, me, sid, action, *part),
        (Topic::Pairing { code, field }, _) => {
            // The robot publishes its id and reads who claims it; a user
            // who looked the code up reads the robot id and the verdict
            // and claims it with its own id; the server writes the verdict.
            use PairingField::{RobotId, Status, UserId};
            match (action, field, facts.pairing(me, code)) {
                (Publish, RobotId, PairingRole::Robot)
                | (Subscribe, RobotId, PairingRole::Robot | PairingRole::Looked)
                | (Publish, UserId, PairingRole::Looked)
                | (Subscribe, UserId, PairingRole::Robot)
                | (Subscribe, Status, PairingRole::Robot | PairingRole::Looked) => Ok(()),
                (Publish, Status, _) => Err(Denial::ServerOnly),
                _ => Err(Denial::NotYours),
            }
        }
        (
            Topic::WebRtc {
                sid,
                client,
                direction,
            },
            _,
        ) => {
            if client != &principal.client {
                return Err(Denial::NotYours);
            }
            // A device sends to the relay on `up` and reads it on `down`.
            match (action, direction, facts.media_role(client, sid)) {
                (_, _, MediaRole::NoRelay) => Err(Denial::NotServed),
                (_, _, MediaRole::Outsider) => Err(Denial::NotYours),
                (Publish, Direction::Up, _) | (Subscribe, Direction::Down, _) => Ok(()),
                (Publish, Direction::Down, _) => Err(Denial::ServerOnly),
                (Subscribe, Direction::Up, _) => Err(Denial::NotYours),
            }
        }
        (Topic::ClientErrors(_), Publish) => Err(Denial::ServerOnly),
        (Topic::ClientErrors(client), Subscribe) if client == &principal.client => Ok(()),
        (Topic::ClientErrors(_), Subscribe) => Err(Denial::NotYours),
    }
}

fn see(facts: &impl Facts, me: &Id, owner: &Id) -> Result<(), Denial> {
    if facts.can_see(me, owner) {
        Ok(())
    } else {
        Err(Denial::NotVisible)
    }
}

/// Owners send requests, only the robot reads them; the robot answers,
/// both read the answers.
fn command(
    facts: &impl Facts,
    me: &Id,
    sid: &Sid,
    action: Action,
    part: CommandPart,
) -> Result<(), Denial> {
    use Action::{Publish, Subscribe};
    use CommandPart::{Request, Response};
    let role = facts.command_role(me, sid).ok_or(Denial::NotYours)?;
    match (action, part, role) {
        (Publish, Request, CommandRole::Owner)
        | (Subscribe, Request, CommandRole::Robot | CommandRole::InvitedRobot)
        | (Publish, Response, CommandRole::Robot)
        | (Subscribe, Response, CommandRole::Owner | CommandRole::Robot) => Ok(()),
        _ => Err(Denial::NotYours),
    }
}

#[cfg(test)]
mod tests;

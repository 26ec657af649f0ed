//! Calls, free of IO: every transition is a function of the current calls,
//! one input and the time, returning what changed.
//!
//! A call goes `inviting -> ringing -> accepted -> ended`; it can end from
//! any live state. The callee may have several devices: each one that
//! reports `ringing` gets a leg; the first `accept` wins and the other legs
//! end `answered_elsewhere`; a `decline` ends only that leg, and the call
//! ends `declined` when no leg is left ringing. Unanswered calls end
//! `missed` at their deadline. A callee already in an accepted call makes a
//! new invite end `busy`. When two users invite each other at once (glare),
//! the call with the smaller session id survives and the other ends `busy`:
//! both sides can tell which one wins from the ids alone.
//!
//! Every change counts one more in the call's `version`, so whoever hears
//! of a call's changes out of order keeps the newest (`Calls::apply`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use switchboard_protocol::payload::{
    CallActionKind, CallKind, CallState, CallStateKind, EndReason, Invite, LegState,
};
use switchboard_protocol::{ClientId, Id, Sid};

/// How long an ended call stays known (its retained state too), so a
/// phone woken late by a push sees how it ended instead of a ghost call.
pub const KEEP_ENDED_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub sid: Sid,
    pub caller: ClientId,
    pub callee: Id,
    pub kind: CallKind,
    pub state: CallStateKind,
    pub reason: Option<EndReason>,
    /// The callee's devices that answered the invite, by client id.
    pub legs: BTreeMap<ClientId, LegState>,
    pub accepted_by: Option<ClientId>,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// When an unanswered call ends `missed`.
    pub ring_deadline: i64,
    /// How many changes made it what it is: 1 when invited.
    pub version: u64,
    /// The node that holds the call once accepted (its media room and
    /// command deadlines); the server places it, this machine does not.
    pub node: Option<String>,
}

impl Call {
    pub fn is_live(&self) -> bool {
        self.state != CallStateKind::Ended
    }

    pub fn involves(&self, user: &Id) -> bool {
        &self.caller.id == user || &self.callee == user
    }

    /// Whether `device` is to be shown this call's invite: it is one of
    /// the callee's, nobody answered yet, and it did not decline.
    pub fn rings_for(&self, device: &ClientId) -> bool {
        device.id == self.callee
            && matches!(self.state, CallStateKind::Inviting | CallStateKind::Ringing)
            && self
                .legs
                .get(device)
                .is_none_or(|leg| *leg == LegState::Ringing)
    }

    /// The invite a device of the callee that subscribes late is sent:
    /// the caller's, with the time the server took it as `sentAt`.
    pub fn invite(&self) -> Invite {
        Invite {
            sid: self.sid.clone(),
            from: self.caller.id.clone(),
            from_device: self.caller.device.clone(),
            kind: self.kind,
            sent_at: self.created_at,
        }
    }

    /// The payload of `session/<sid>/state`.
    pub fn wire(&self) -> CallState {
        CallState {
            sid: self.sid.clone(),
            state: self.state,
            reason: self.reason,
            caller: self.caller.id.clone(),
            callee: self.callee.clone(),
            accepted_by: self.accepted_by.clone(),
            relay: None,
            legs: self.legs.iter().map(|(c, l)| (c.to_string(), *l)).collect(),
        }
    }

    /// Ends the call `failed` (its node stopped), unless it has ended.
    pub fn fail(&mut self, at: i64) -> bool {
        if !self.is_live() {
            return false;
        }
        self.end(EndReason::Failed, at);
        true
    }

    fn end(&mut self, reason: EndReason, at: i64) {
        self.version += 1;
        self.state = CallStateKind::Ended;
        self.reason = Some(reason);
        self.ended_at = Some(at);
        for leg in self.legs.values_mut() {
            if *leg == LegState::Ringing {
                *leg = LegState::Ended;
            }
        }
    }
}

/// Why an invite or an action was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this session id is already used")]
    SessionIdUsed,
    #[error("a user cannot call itself")]
    SelfCall,
    #[error("no such call")]
    NoSuchCall,
    #[error("you are not in this call")]
    NotInCall,
    #[error("the call has ended")]
    Ended,
    #[error("{0} is not possible now")]
    NotNow(&'static str),
}

/// An invite as the caller sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub sid: Sid,
    pub caller: ClientId,
    pub callee: Id,
    pub kind: CallKind,
}

/// What an accepted invite led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invited {
    /// The new call (ended `busy` at once if the callee is in a call or
    /// glare resolved against it).
    pub call: Call,
    /// A call that glare ended in favour of this one.
    pub ended: Option<Call>,
}

#[derive(Debug, Default)]
pub struct Calls {
    calls: HashMap<Sid, Call>,
}

impl Calls {
    pub fn new() -> Self {
        Calls::default()
    }

    pub fn get(&self, sid: &Sid) -> Option<&Call> {
        self.calls.get(sid)
    }

    /// Whether `user` takes part in the call `sid` (live or recently ended).
    pub fn participant(&self, sid: &Sid, user: &Id) -> bool {
        self.calls.get(sid).is_some_and(|c| c.involves(user))
    }

    /// A new call; unanswered, it ends `missed` after `ring_ms`. The
    /// calls known must hold the caller's and the callee's live calls, and
    /// any call with this `sid`.
    pub fn invite(
        &mut self,
        invitation: Invitation,
        at: i64,
        ring_ms: i64,
    ) -> Result<Invited, Refusal> {
        let Invitation {
            sid,
            caller,
            callee,
            kind,
        } = invitation;
        if self.calls.contains_key(&sid) {
            return Err(Refusal::SessionIdUsed);
        }
        if caller.id == callee {
            return Err(Refusal::SelfCall);
        }
        let mut call = Call {
            sid: sid.clone(),
            caller: caller.clone(),
            callee: callee.clone(),
            kind,
            state: CallStateKind::Inviting,
            reason: None,
            legs: BTreeMap::new(),
            accepted_by: None,
            created_at: at,
            accepted_at: None,
            ended_at: None,
            ring_deadline: at + ring_ms,
            version: 1,
            node: None,
        };
        let mut ended = None;
        let callee_busy = self
            .calls
            .values()
            .any(|c| c.state == CallStateKind::Accepted && c.involves(&callee));
        // The opposite call of a glare: callee calling caller, not yet
        // answered.
        let opposite = self
            .calls
            .values()
            .find(|c| {
                c.is_live()
                    && c.state != CallStateKind::Accepted
                    && c.caller.id == callee
                    && c.callee == caller.id
            })
            .map(|c| c.sid.clone());
        if callee_busy {
            call.end(EndReason::Busy, at);
        } else if let Some(other) = opposite {
            if other < sid {
                call.end(EndReason::Busy, at);
            } else {
                let loser = self.calls.get_mut(&other).expect("found above");
                loser.end(EndReason::Busy, at);
                ended = Some(loser.clone());
            }
        }
        self.calls.insert(sid, call.clone());
        Ok(Invited { call, ended })
    }

    /// A participant device's action. Returns the call as it is now, or
    /// `None` when nothing visible changed (a second `ringing` from the
    /// same device).
    pub fn act(
        &mut self,
        sid: &Sid,
        from: &ClientId,
        action: CallActionKind,
        at: i64,
    ) -> Result<Option<Call>, Refusal> {
        let call = self.calls.get_mut(sid).ok_or(Refusal::NoSuchCall)?;
        // Any device of the caller may cancel or hang up its call.
        let is_caller = call.caller.id == from.id;
        let is_callee = call.callee == from.id;
        if !is_caller && !is_callee {
            return Err(Refusal::NotInCall);
        }
        if !call.is_live() {
            return Err(Refusal::Ended);
        }
        let not_now = || Refusal::NotNow(action.as_str());
        let unanswered = call.state != CallStateKind::Accepted;
        match (action, is_callee) {
            (CallActionKind::Ringing, true) if unanswered => {
                if call.legs.get(from) == Some(&LegState::Ringing) {
                    return Ok(None);
                }
                if call.legs.contains_key(from) {
                    return Err(not_now());
                }
                call.legs.insert(from.clone(), LegState::Ringing);
                call.state = CallStateKind::Ringing;
                call.version += 1;
            }
            (CallActionKind::Accept, true) if unanswered => {
                if call.legs.get(from).is_some_and(|l| *l != LegState::Ringing) {
                    return Err(not_now());
                }
                for leg in call.legs.values_mut() {
                    *leg = LegState::AnsweredElsewhere;
                }
                call.legs.insert(from.clone(), LegState::Accepted);
                call.state = CallStateKind::Accepted;
                call.accepted_by = Some(from.clone());
                call.accepted_at = Some(at);
                call.version += 1;
            }
            (CallActionKind::Decline, true) if unanswered => {
                if call.legs.get(from).is_some_and(|l| *l != LegState::Ringing) {
                    return Err(not_now());
                }
                call.legs.insert(from.clone(), LegState::Declined);
                if call.legs.values().any(|l| *l == LegState::Ringing) {
                    call.version += 1;
                } else {
                    call.end(EndReason::Declined, at);
                }
            }
            (CallActionKind::Cancel, false) if unanswered => call.end(EndReason::Cancelled, at),
            (CallActionKind::Hangup, _) if !unanswered => {
                let in_call = !is_callee || call.accepted_by.as_ref() == Some(from);
                if !in_call {
                    return Err(Refusal::NotInCall);
                }
                call.end(EndReason::Hangup, at);
            }
            _ => return Err(not_now()),
        }
        Ok(Some(call.clone()))
    }

    /// The call `sid` ends `missed` if it is unanswered past its
    /// deadline; returns it so ended.
    pub fn expire(&mut self, sid: &Sid, now: i64) -> Option<Call> {
        let call = self.calls.get_mut(sid)?;
        let due =
            call.is_live() && call.state != CallStateKind::Accepted && now >= call.ring_deadline;
        if !due {
            return None;
        }
        call.end(EndReason::Missed, now);
        Some(call.clone())
    }

    /// Forgets the calls ended at least `KEEP_ENDED_MS` ago.
    pub fn forget_ended(&mut self, now: i64) {
        self.calls
            .retain(|_, c| c.ended_at.is_none_or(|t| now - t < KEEP_ENDED_MS));
    }

    /// Keeps `call` unless a newer version of it is known; whether it was
    /// kept.
    pub fn apply(&mut self, call: Call) -> bool {
        match self.calls.get(&call.sid) {
            Some(known) if known.version >= call.version => false,
            _ => {
                self.calls.insert(call.sid.clone(), call);
                true
            }
        }
    }

    /// The live calls.
    pub fn live(&self) -> impl Iterator<Item = &Call> {
        self.calls.values().filter(|c| c.is_live())
    }
}

#[cfg(test)]
mod tests;

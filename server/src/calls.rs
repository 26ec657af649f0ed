//! Calls at the edges: invites and actions from the broker go into the
//! call state machine (the signalling crate); every change is stored and
//! then published retained on `session/<sid>/state`, in order, by one task.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use switchboard_protocol::acl::{CommandRole, MediaRole, PairingRole};
use switchboard_protocol::payload::{CallActionKind, CallStateKind, EndReason};
use switchboard_protocol::{ClientId, Id, Sid, Topic};
use switchboard_relay::Relay;
use switchboard_signalling::{Call, Calls, Invitation, Invited, Refusal};
use tokio_util::sync::CancellationToken;

use crate::broker::Publisher;
use crate::metrics::Metrics;
use crate::queue::{outbox, Inbox, Outbox};
use crate::store::{now_ms, CallRecord, Store};

pub enum Out {
    /// Store and publish the call's state.
    State(Box<Call>),
    /// The call is forgotten: remove its retained state.
    Clear(Sid),
}

/// Call states waiting to be stored and published before new invites are
/// refused (`rate_limited`).
const MAX_WAITING: usize = 10_000;

pub struct CallService {
    calls: Mutex<Calls>,
    out: Outbox<Out>,
    ring_ms: i64,
    metrics: Arc<Metrics>,
}

/// The wire name of a serde enum value (`"ended"`, `"answered_elsewhere"`).
fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub fn record(c: &Call) -> CallRecord {
    CallRecord {
        sid: c.sid.to_string(),
        caller: c.caller.id.to_string(),
        callee: c.callee.to_string(),
        kind: name(&c.kind),
        state: name(&c.state),
        reason: c.reason.as_ref().map(name),
        accepted_by: c.accepted_by.as_ref().map(ClientId::to_string),
        created_at: c.created_at,
        accepted_at: c.accepted_at,
        ended_at: c.ended_at,
        duration_ms: c.accepted_at.zip(c.ended_at).map(|(a, e)| e - a),
    }
}

/// A call that was live when the server stopped, as the state machine
/// knows an ended call.
fn failed_call(r: &CallRecord, caller_device: Option<&str>) -> Option<Call> {
    let caller_id: Id = r.caller.parse().ok()?;
    let device = caller_device.and_then(|d| d.parse().ok());
    Some(Call {
        sid: r.sid.parse().ok()?,
        caller: ClientId::new(caller_id, device),
        callee: r.callee.parse().ok()?,
        kind: serde_json::from_value(serde_json::Value::String(r.kind.clone())).ok()?,
        state: CallStateKind::Ended,
        reason: Some(EndReason::Failed),
        legs: Default::default(),
        accepted_by: r.accepted_by.as_deref().and_then(|a| a.parse().ok()),
        created_at: r.created_at,
        accepted_at: r.accepted_at,
        ended_at: r.ended_at,
        ring_deadline: r.created_at,
    })
}

impl CallService {
    pub fn new(ring_timeout: Duration, metrics: Arc<Metrics>) -> (Arc<Self>, Inbox<Out>) {
        let (out, queue) = outbox(MAX_WAITING);
        let service = CallService {
            calls: Mutex::new(Calls::new()),
            out,
            ring_ms: ring_timeout.as_millis() as i64,
            metrics,
        };
        (Arc::new(service), queue)
    }

    /// Calls live when the server last stopped, now ended `failed`: kept
    /// known for a while, and their retained states to publish at start.
    pub fn restore_failed(&self, failed: &[(CallRecord, Option<String>)]) -> Vec<(Topic, Vec<u8>)> {
        let mut calls = self.calls.lock().expect("calls lock");
        failed
            .iter()
            .filter_map(|(r, device)| failed_call(r, device.as_deref()))
            .map(|call| {
                let payload = serde_json::to_vec(&call.wire()).expect("state serializes");
                let topic = Topic::CallState(call.sid.clone());
                self.metrics.count_call_end("failed".into());
                calls.remember(call);
                (topic, payload)
            })
            .collect()
    }

    /// Caller and callee of a call not ended, and whether it is accepted.
    pub fn live_parties(&self, sid: &Sid) -> Option<(Id, Id, bool)> {
        let calls = self.calls.lock().expect("calls lock");
        let call = calls.get(sid).filter(|c| c.state != CallStateKind::Ended)?;
        let accepted = call.state == CallStateKind::Accepted;
        Some((call.caller.id.clone(), call.callee.clone(), accepted))
    }

    /// The two devices of an accepted call: the caller's and the callee's
    /// that accepted.
    pub fn media_devices(&self, sid: &Sid) -> Option<[ClientId; 2]> {
        let calls = self.calls.lock().expect("calls lock");
        let call = calls
            .get(sid)
            .filter(|c| c.state == CallStateKind::Accepted)?;
        Some([call.caller.clone(), call.accepted_by.clone()?])
    }

    pub fn participant(&self, sid: &Sid, user: &Id) -> bool {
        self.calls
            .lock()
            .expect("calls lock")
            .participant(sid, user)
    }

    /// Whether new calls must wait: the store is behind by `MAX_WAITING`
    /// call states.
    pub fn busy(&self) -> bool {
        self.out.full()
    }

    pub fn invite(&self, invitation: Invitation, sid_known: bool) -> Result<Invited, Refusal> {
        let mut calls = self.calls.lock().expect("calls lock");
        let invited = calls.invite(invitation, now_ms(), self.ring_ms, sid_known)?;
        self.emit(&invited.call);
        if let Some(ended) = &invited.ended {
            self.emit(ended);
        }
        Ok(invited)
    }

    pub fn act(&self, sid: &Sid, from: &ClientId, action: CallActionKind) -> Result<(), Refusal> {
        let mut calls = self.calls.lock().expect("calls lock");
        if let Some(call) = calls.act(sid, from, action, now_ms())? {
            self.emit(&call);
        }
        Ok(())
    }

    /// Queues a change; called under the calls lock, so the queue keeps
    /// each call's changes in order.
    fn emit(&self, call: &Call) {
        match call.state {
            CallStateKind::Ended => {
                let reason = call.reason.as_ref().map(name).unwrap_or_default();
                self.metrics.count_call_end(reason);
            }
            CallStateKind::Accepted => {
                if let Some(at) = call.accepted_at {
                    self.metrics
                        .invite_to_accept
                        .observe((at - call.created_at) as f64 / 1000.0);
                }
            }
            _ => {}
        }
        self.out.send(Out::State(Box::new(call.clone())));
    }

    /// Ends unanswered calls at their deadline and forgets old ended ones,
    /// twice a second.
    pub fn spawn_ticker(self: &Arc<Self>) {
        let service = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(500));
            loop {
                every.tick().await;
                let mut calls = service.calls.lock().expect("calls lock");
                let (missed, forgotten) = calls.tick(now_ms());
                for call in &missed {
                    service.emit(call);
                }
                for sid in forgotten {
                    service.out.send(Out::Clear(sid));
                }
            }
        });
    }
}

/// Stores each change, then publishes it. The relay room of an accepted
/// call opens before anyone learns it is accepted, and closes when it ends;
/// so do its robot commands.
pub async fn run_publisher(
    mut queue: Inbox<Out>,
    publisher: Publisher,
    store: Store,
    relay: Option<Relay>,
    robots: Arc<crate::robots::RobotService>,
    stop: CancellationToken,
) {
    while let Some(out) = queue.next(&stop).await {
        match out {
            Out::State(call) => {
                if call.state == CallStateKind::Ended {
                    robots.end_call(&call.sid);
                }
                if let Some(relay) = &relay {
                    match (&call.state, &call.accepted_by) {
                        (CallStateKind::Accepted, Some(callee)) => {
                            relay.open(&call.sid, [call.caller.clone(), callee.clone()])
                        }
                        (CallStateKind::Ended, _) => {
                            // Closing waits for the connections; the other
                            // calls' states need not.
                            let (relay, sid) = (relay.clone(), call.sid.clone());
                            tokio::spawn(async move { relay.close(&sid).await });
                        }
                        _ => {}
                    }
                }
                if let Err(e) = store
                    .save_call(
                        &record(&call),
                        call.caller.device.as_ref().map(|d| d.as_str()),
                    )
                    .await
                {
                    tracing::error!(sid = %call.sid, "storing a call: {e:#}");
                }
                let payload = serde_json::to_vec(&call.wire()).expect("state serializes");
                if let Err(e) = publisher
                    .publish(&Topic::CallState(call.sid.clone()), payload, true)
                    .await
                {
                    tracing::error!(sid = %call.sid, "publishing a call state: {e:#}");
                }
            }
            Out::Clear(sid) => {
                if let Err(e) = publisher
                    .publish(&Topic::CallState(sid), Vec::new(), true)
                    .await
                {
                    tracing::warn!("clearing a call state: {e:#}");
                }
            }
        }
    }
}

/// What the topic rules need to know: the graph, calls and pairing codes.
pub struct Facts<'a> {
    pub graph: &'a crate::social::Graph,
    pub calls: &'a CallService,
    pub robots: &'a crate::robots::RobotService,
    /// Whether this server runs the media relay.
    pub relay: bool,
}

impl switchboard_protocol::acl::Facts for Facts<'_> {
    fn can_see(&self, viewer: &Id, target: &Id) -> bool {
        self.graph.can_see_str(viewer.as_str(), target.as_str())
    }

    fn in_call(&self, user: &Id, sid: &Sid) -> bool {
        self.calls.participant(sid, user)
    }

    fn may_call(&self, caller: &Id, callee: &Id) -> bool {
        self.graph.may_call(caller.as_str(), callee.as_str())
    }

    fn pairing(&self, user: &Id, code: &switchboard_protocol::PairingCode) -> PairingRole {
        if self.robots.robot_of(code).as_ref() == Some(user) {
            PairingRole::Robot
        } else if self.robots.looked(user, code) {
            PairingRole::Looked
        } else {
            PairingRole::None
        }
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
        let (robot, other) = if self.graph.is_robot(caller.as_str()) {
            (caller, callee)
        } else {
            (callee, caller)
        };
        if !self.graph.is_robot(robot.as_str())
            || !self.graph.paired(robot.as_str(), other.as_str())
        {
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

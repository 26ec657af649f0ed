//! Calls at the edges: invites and actions from the broker go into the
//! call state machine (the signalling crate); every change is stored and
//! then published retained on `session/<sid>/state`, in order, by one task.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_protocol::payload::{CallStateKind, EndReason};
use switchboard_protocol::{validate, ClientId, ErrorCode, Id, Sid, Topic};
use switchboard_signalling::{Call, Calls, Invitation, Refusal};

use super::presence::PresenceService;
use super::queue::{outbox, Inbox, Outbox};
use super::Edges;
use crate::limits::Limits;
use crate::push::{Push, WakeUp};
use crate::refused::Refused;
use crate::store::CallRecord;

pub enum Out {
    /// Store and publish the call's state.
    State(Box<Call>),
    /// The call is forgotten: remove its retained state.
    Clear(Sid),
}

/// Call states waiting to be stored and published before new invites are
/// refused (`rate_limited`).
const MAX_WAITING: usize = 10_000;

/// What else follows a call's changes, in the order they are stored
/// and before anyone learns of them: the relay opens and closes the
/// call's room, robots forget its commands.
pub trait Follow: Send + Sync {
    fn call_changed(&self, call: &Call);
}

pub struct CallService {
    calls: Mutex<Calls>,
    out: Outbox<Out>,
    ring_ms: i64,
    edges: Edges,
    limits: Arc<Limits>,
    presence: Arc<PresenceService>,
    push: Arc<Push>,
    followers: Vec<Arc<dyn Follow>>,
}

/// A call as the store keeps it.
fn record(c: &Call) -> CallRecord {
    CallRecord {
        sid: c.sid.clone(),
        caller: c.caller.clone(),
        callee: c.callee.clone(),
        kind: c.kind,
        state: c.state,
        reason: c.reason,
        accepted_by: c.accepted_by.clone(),
        created_at: c.created_at,
        accepted_at: c.accepted_at,
        ended_at: c.ended_at,
    }
}

/// A call that was live when the server stopped, as the state machine
/// knows an ended call.
fn failed_call(r: &CallRecord) -> Call {
    Call {
        sid: r.sid.clone(),
        caller: r.caller.clone(),
        callee: r.callee.clone(),
        kind: r.kind,
        state: CallStateKind::Ended,
        reason: Some(EndReason::Failed),
        legs: Default::default(),
        accepted_by: r.accepted_by.clone(),
        created_at: r.created_at,
        accepted_at: r.accepted_at,
        ended_at: r.ended_at,
        ring_deadline: r.created_at,
    }
}

impl CallService {
    /// Starts the ticker and the task that stores and publishes each
    /// change (from `queue`, which `new` returned).
    pub fn start(self: &Arc<Self>, queue: Inbox<Out>) {
        let service = self.clone();
        self.edges.every(Duration::from_millis(500), move || {
            let service = service.clone();
            async move { service.tick() }
        });
        self.edges.tasks.spawn(self.clone().run_publisher(queue));
    }

    pub fn new(
        ring_timeout: Duration,
        edges: Edges,
        limits: Arc<Limits>,
        presence: Arc<PresenceService>,
        push: Arc<Push>,
        followers: Vec<Arc<dyn Follow>>,
    ) -> (Arc<Self>, Inbox<Out>) {
        let (out, queue) = outbox(MAX_WAITING);
        let service = CallService {
            calls: Mutex::new(Calls::new()),
            out,
            ring_ms: ring_timeout.as_millis() as i64,
            edges,
            limits,
            presence,
            push,
            followers,
        };
        (Arc::new(service), queue)
    }

    /// Calls live when the server last stopped, now ended `failed`: kept
    /// known for a while, and their retained states to publish at start.
    pub fn restore_failed(&self, failed: &[CallRecord]) -> Vec<(Topic, Vec<u8>)> {
        let mut calls = self.calls.lock().expect("calls lock");
        failed
            .iter()
            .map(failed_call)
            .map(|call| {
                let payload = serde_json::to_vec(&call.wire()).expect("state serializes");
                let topic = Topic::CallState(call.sid.clone());
                self.edges
                    .metrics
                    .count_call_end(EndReason::Failed.as_str().into());
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

    /// The invites `device` is to be shown now (of `only` that call, if
    /// named): those of calls ringing for it. A device that subscribes to
    /// its inbox late (woken by a push, with a new session) sees them.
    pub fn ringing_for(&self, device: &ClientId, only: Option<&Sid>) -> Vec<(Topic, Vec<u8>)> {
        let calls = self.calls.lock().expect("calls lock");
        (calls.ringing_for(device))
            .filter(|call| only.is_none_or(|sid| *sid == call.sid))
            .map(|call| {
                let topic = Topic::Invite {
                    callee: call.callee.clone(),
                    sid: call.sid.clone(),
                };
                let payload = serde_json::to_vec(&call.invite()).expect("an invite serializes");
                (topic, payload)
            })
            .collect()
    }

    pub fn participant(&self, sid: &Sid, user: &Id) -> bool {
        self.calls
            .lock()
            .expect("calls lock")
            .participant(sid, user)
    }

    /// An invite its caller published on `invite/<callee>/<sid>` (the
    /// topic rules let the caller call the callee): checked, recorded as a
    /// call, and delivered unless the call ended at once (busy, or glare
    /// resolved against it). A callee with no device online is woken.
    pub async fn invite(
        &self,
        caller: &ClientId,
        callee: Id,
        sid: Sid,
        payload: &[u8],
    ) -> Result<(), Refused> {
        let invite = validate::invite(payload, &sid, caller)?;
        if self
            .limits
            .invites_per_user
            .check_key(&caller.id.to_string())
            .is_err()
        {
            let message = "too many invites; try again in a minute";
            return Err(Refused::new(ErrorCode::RateLimited, message));
        }
        if self.out.full() {
            let message = "the server is busy storing calls; try again shortly";
            return Err(Refused::new(ErrorCode::RateLimited, message));
        }
        let known = self
            .edges
            .store
            .call_exists(&sid)
            .await
            .map_err(|e| Refused::internal("checking a session id", e))?;
        let invitation = Invitation {
            sid,
            caller: caller.clone(),
            callee: callee.clone(),
            kind: invite.kind,
        };
        let call = {
            let mut calls = self.calls.lock().expect("calls lock");
            let now = self.edges.now_ms();
            let invited = calls
                .invite(invitation, now, self.ring_ms, known)
                .map_err(|refusal| Refused::new(ErrorCode::Conflict, refusal.to_string()))?;
            self.emit(&invited.call);
            if let Some(ended) = &invited.ended {
                self.emit(ended);
            }
            invited.call
        };
        if !call.is_live() {
            let message = "busy: the callee is in another call or calling you";
            return Err(Refused::new(ErrorCode::Conflict, message));
        }
        if !self.presence.is_online(&callee) {
            self.wake(call);
        }
        Ok(())
    }

    /// Pushes a wake-up to a callee with no device online; the invite
    /// itself waits in its persistent session (QoS 1).
    fn wake(&self, call: Call) {
        let (store, push) = (self.edges.store.clone(), self.push.clone());
        self.edges.tasks.spawn(async move {
            let tokens = match store.push_tokens(&call.callee).await {
                Ok(t) if !t.is_empty() => t,
                Ok(_) => return,
                Err(e) => return tracing::warn!("reading push tokens: {e:#}"),
            };
            let wake = WakeUp {
                user_id: &call.callee,
                sid: &call.sid,
                from: &call.caller.id,
                kind: call.kind,
                expires_at: call.ring_deadline,
                tokens: &tokens,
            };
            if let Err(e) = push.wake(&wake).await {
                tracing::warn!(sid = %call.sid, "wake-up push: {e:#}");
            }
        });
    }

    /// A participant's action published on `session/<sid>/call`.
    pub fn act(&self, sid: &Sid, from: &ClientId, payload: &[u8]) -> Result<(), Refused> {
        let action = validate::call_action(payload, from)?;
        let mut calls = self.calls.lock().expect("calls lock");
        let now = self.edges.now_ms();
        match calls.act(sid, from, action.action, now) {
            Ok(Some(call)) => {
                self.emit(&call);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(refusal) => {
                let code = match refusal {
                    Refusal::NoSuchCall => ErrorCode::NotFound,
                    Refusal::NotInCall => ErrorCode::Forbidden,
                    _ => ErrorCode::Conflict,
                };
                Err(Refused::new(code, refusal.to_string()))
            }
        }
    }

    /// Queues a change; called under the calls lock, so the queue keeps
    /// each call's changes in order.
    fn emit(&self, call: &Call) {
        match call.state {
            CallStateKind::Ended => {
                let reason = call.reason.map_or("", EndReason::as_str);
                self.edges.metrics.count_call_end(reason.into());
            }
            CallStateKind::Accepted => {
                if let Some(at) = call.accepted_at {
                    self.edges
                        .metrics
                        .invite_to_accept
                        .observe((at - call.created_at) as f64 / 1000.0);
                }
            }
            _ => {}
        }
        self.out.send(Out::State(Box::new(call.clone())));
    }

    /// Ends unanswered calls at their deadline and forgets old ended
    /// ones (twice a second).
    fn tick(&self) {
        let mut calls = self.calls.lock().expect("calls lock");
        let (missed, forgotten) = calls.tick(self.edges.now_ms());
        for call in &missed {
            self.emit(call);
        }
        for sid in forgotten {
            self.out.send(Out::Clear(sid));
        }
    }

    /// Lets the followers know of each change, stores it, then publishes
    /// it: the relay room of an accepted call opens before anyone learns
    /// it is accepted.
    async fn run_publisher(self: Arc<Self>, mut queue: Inbox<Out>) {
        let publish = &self.edges.publish;
        while let Some(out) = queue.next(&self.edges.stop).await {
            match out {
                Out::State(call) => {
                    for follower in &self.followers {
                        follower.call_changed(&call);
                    }
                    if let Err(e) = self.edges.store.save_call(&record(&call)).await {
                        tracing::error!(sid = %call.sid, "storing a call: {e:#}");
                    }
                    let payload = serde_json::to_vec(&call.wire()).expect("state serializes");
                    let topic = Topic::CallState(call.sid.clone());
                    if let Err(e) = publish.publish(&topic, payload, true).await {
                        tracing::error!(sid = %call.sid, "publishing a call state: {e:#}");
                    }
                }
                Out::Clear(sid) => {
                    if let Err(e) = publish
                        .publish(&Topic::CallState(sid), Vec::new(), true)
                        .await
                    {
                        tracing::warn!("clearing a call state: {e:#}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_edges;
    use switchboard_protocol::acl::PrincipalKind;
    use switchboard_protocol::payload::CallState;

    const CALLER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const CALLEE: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const SID: &str = "0123456789abcdef0123456789abcdef";
    const RING: Duration = Duration::from_secs(30);

    /// The changes its followers saw, in order.
    #[derive(Default)]
    struct Seen(Mutex<Vec<CallStateKind>>);

    impl Follow for Seen {
        fn call_changed(&self, call: &Call) {
            self.0.lock().unwrap().push(call.state);
        }
    }

    async fn service(edges: Edges, seen: Arc<Seen>) -> (Arc<CallService>, Inbox<Out>) {
        for user in [CALLER, CALLEE] {
            edges
                .store
                .ensure_user(&user.parse().unwrap(), PrincipalKind::User)
                .await
                .unwrap();
        }
        let presence = PresenceService::new(edges.clone(), "node".into())
            .await
            .unwrap();
        let limits = Arc::new(Limits::new());
        let push = Arc::new(Push::Off);
        CallService::new(RING, edges, limits, presence, push, vec![seen])
    }

    fn phone() -> ClientId {
        format!("{CALLER}:phone").parse().unwrap()
    }

    fn invite(sid: &str) -> String {
        format!(
            r#"{{"sid":"{sid}","from":"{CALLER}","fromDevice":"phone","kind":"audio","sentAt":1}}"#
        )
    }

    fn state(payload: &[u8]) -> CallState {
        serde_json::from_slice(payload).unwrap()
    }

    #[tokio::test]
    async fn an_unanswered_call_is_stored_followed_and_published_and_ends_missed_at_its_deadline() {
        let (edges, clock, mut sent) = test_edges().await;
        let (store, stop) = (edges.store.clone(), edges.stop.clone());
        let seen = Arc::new(Seen::default());
        let (calls, queue) = service(edges, seen.clone()).await;
        let publisher = tokio::spawn(calls.clone().run_publisher(queue));
        let sid: Sid = SID.parse().unwrap();
        let callee: Id = CALLEE.parse().unwrap();
        calls
            .invite(
                &phone(),
                callee.clone(),
                sid.clone(),
                invite(SID).as_bytes(),
            )
            .await
            .unwrap();
        let (topic, payload, retain) = sent.recv().await.unwrap();
        assert_eq!((topic, retain), (Topic::CallState(sid.clone()), true));
        assert_eq!(state(&payload).state, CallStateKind::Inviting);
        assert!(
            store.call_exists(&sid).await.unwrap(),
            "stored before it is published"
        );

        clock.advance(RING.as_millis() as i64 - 1);
        calls.tick();
        clock.advance(1);
        calls.tick();
        let (_, payload, _) = sent.recv().await.unwrap();
        let ended = state(&payload);
        assert_eq!(
            (ended.state, ended.reason),
            (CallStateKind::Ended, Some(EndReason::Missed))
        );
        let stored = store.call(&sid).await.unwrap().unwrap();
        assert_eq!(
            (stored.state, stored.reason),
            (CallStateKind::Ended, Some(EndReason::Missed))
        );
        stop.cancel();
        publisher.await.unwrap();
        assert_eq!(
            *seen.0.lock().unwrap(),
            [CallStateKind::Inviting, CallStateKind::Ended],
            "each change followed, in order"
        );
        let again = calls
            .invite(&phone(), callee, sid, invite(SID).as_bytes())
            .await
            .unwrap_err();
        assert_eq!(
            (again.code, again.message.as_str()),
            (ErrorCode::Conflict, "this session id is already used")
        );
    }

    #[tokio::test]
    async fn refused_invites_and_actions_change_nothing() {
        let (edges, _clock, mut sent) = test_edges().await;
        let (calls, _queue) = service(edges, Arc::default()).await;
        let sid: Sid = SID.parse().unwrap();
        let callee: Id = CALLEE.parse().unwrap();
        let other = "fedcba9876543210fedcba9876543210";
        let cases: Vec<(String, ErrorCode, &str)> = vec![
            ("{".into(), ErrorCode::BadRequest, "not an invite: "),
            (
                invite(other),
                ErrorCode::BadRequest,
                "sid in the payload is not the topic's",
            ),
        ];
        for (payload, code, message) in cases {
            let refused = calls
                .invite(&phone(), callee.clone(), sid.clone(), payload.as_bytes())
                .await
                .unwrap_err();
            assert_eq!(refused.code, code, "{payload}");
            assert!(
                refused.message.starts_with(message),
                "{payload}: {}",
                refused.message
            );
        }
        let myself = calls
            .invite(&phone(), phone().id, sid.clone(), invite(SID).as_bytes())
            .await
            .unwrap_err();
        assert_eq!(myself.code, ErrorCode::Conflict);
        let accept = br#"{"action":"accept"}"#;
        let none = calls.act(&sid, &phone(), accept).unwrap_err();
        assert_eq!(
            (none.code, none.message.as_str()),
            (ErrorCode::NotFound, "no such call")
        );
        assert!(calls.live_parties(&sid).is_none());
        assert!(sent.try_recv().is_err(), "nothing published");
    }
}

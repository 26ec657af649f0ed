//! Calls at the edges. Invites and actions from the broker, and ring
//! deadlines, become transitions of the call state machine (the
//! signalling crate), each decided in one store transaction with the
//! users' rows locked (`Store::lock_calls`), so any node may take any
//! call's next step and each deadline fires once. Each node keeps the
//! calls it knows for the topic rules, and publishes to its own
//! subscribers every change it learns of, its own and other nodes' (news
//! on the bus), newest version only and in order, by one task.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use switchboard_protocol::payload::{CallState, CallStateKind, EndReason};
use switchboard_protocol::{validate, ClientId, ErrorCode, Id, Sid, Topic};
use switchboard_signalling::{Call, Calls, Invitation, Refusal, KEEP_ENDED_MS};
use tokio::sync::mpsc;

use super::presence::{PresenceService, NODE_TTL_MS};
use super::queue::{outbox, Inbox, Outbox};
use super::Edges;
use crate::batched::Batched;
use crate::limits::INVITES_PER_MINUTE;
use crate::push::{Note, Push, STOP_FOR_MS};
use crate::refused::Refused;
use crate::store::Parties;

/// What other nodes say of calls.
pub enum News {
    /// A call as another node stored it (JSON).
    Changed(Bytes),
    /// News may have been lost: read the calls known again.
    All,
}

/// How long past its deadline an unanswered call this node knows is read
/// again (another node ended it, and that news was lost).
const STALE_MS: i64 = 5_000;

/// Call states waiting to be published before new invites are refused
/// (`rate_limited`).
const MAX_WAITING: usize = 10_000;

/// What else follows a call's changes on each node, in order, as the node
/// learns them and before its subscribers do: the relay opens and closes
/// the call's room, robots forget its commands. Called under the calls'
/// lock: quick, never waiting.
pub trait Follow: Send + Sync {
    fn call_changed(&self, call: &Call);
}

pub struct CallService {
    /// The calls this node knows: those changed lately (here, or on
    /// another node that said so) and those read for the rules.
    known: Mutex<Calls>,
    /// This node's name.
    node: String,
    /// Whether the nodes run a media relay: an accepted call's room is
    /// placed on the least loaded node, and its state names it.
    relay: bool,
    out: Outbox<Box<Call>>,
    ring_ms: i64,
    edges: Edges,
    presence: Arc<PresenceService>,
    /// Pushes to callees with no device online, when configured.
    push: Option<Arc<Push>>,
    followers: Vec<Arc<dyn Follow>>,
    /// The calls ringing for a user, read together for the inboxes
    /// subscribed at once (a reconnect storm).
    ringing: Batched<Id, Vec<Call>>,
}

fn refusal(refusal: Refusal) -> Refused {
    let code = match refusal {
        Refusal::NoSuchCall => ErrorCode::NotFound,
        Refusal::NotInCall => ErrorCode::Forbidden,
        _ => ErrorCode::Conflict,
    };
    Refused::new(code, refusal.to_string())
}

/// The payload of `session/<sid>/state`: the machine's, with the node
/// whose relay holds the call's media room, when the nodes run one.
fn state_payload(call: &Call, relay: bool) -> Vec<u8> {
    let state = CallState {
        relay: call.node.clone().filter(|_| relay),
        ..call.wire()
    };
    serde_json::to_vec(&state).expect("state serializes")
}

/// Where an accepted call goes: the node holding the fewest accepted
/// calls among `loads` (the live nodes), this node first among equals,
/// then by name.
pub fn place(loads: &[(String, u64)], me: &str) -> String {
    (loads.iter())
        .min_by_key(|(node, held)| (*held, node != me, node))
        .map_or_else(|| me.to_string(), |(node, _)| node.clone())
}

impl CallService {
    /// Starts the ticker, the task that publishes each change (from
    /// `queue`, which `new` returned) and the one that hears other nodes'
    /// `news`.
    pub fn start(self: &Arc<Self>, queue: Inbox<Box<Call>>, news: mpsc::UnboundedReceiver<News>) {
        let service = self.clone();
        self.edges.every(Duration::from_millis(500), move || {
            let service = service.clone();
            async move { service.tick().await }
        });
        self.edges.tasks.spawn(self.clone().run_publisher(queue));
        self.edges.tasks.spawn(self.clone().hear(news));
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ring_timeout: Duration,
        node: String,
        relay: bool,
        edges: Edges,
        presence: Arc<PresenceService>,
        push: Option<Arc<Push>>,
        followers: Vec<Arc<dyn Follow>>,
    ) -> (Arc<Self>, Inbox<Box<Call>>) {
        let (out, queue) = outbox(MAX_WAITING);
        let ringing = Batched::new(edges.store.clone(), |store, users| async move {
            store.calls_ringing(&users).await
        });
        let service = CallService {
            known: Mutex::new(Calls::new()),
            node,
            relay,
            out,
            ring_ms: ring_timeout.as_millis() as i64,
            edges,
            presence,
            push,
            followers,
            ringing,
        };
        (Arc::new(service), queue)
    }

    /// Ends `failed` the accepted calls this node held when it last
    /// stopped (their media room and command deadlines went with it);
    /// how many.
    pub async fn fail_held(&self) -> anyhow::Result<usize> {
        let held = self.edges.store.calls_held_by(&self.node).await?;
        self.fail(held).await
    }

    /// Ends `failed` those of `calls` still live; how many.
    async fn fail(&self, calls: Vec<Parties>) -> anyhow::Result<usize> {
        let now = self.edges.now_ms();
        let mut failed = 0;
        for parties in calls {
            let locked = self.lock(&parties).await?;
            let Some(call) = locked.calls.get(&parties.sid) else {
                continue;
            };
            let mut call = call.clone();
            if call.fail(now) && locked.store(std::slice::from_ref(&call)).await? {
                self.decided(&[call]);
                failed += 1;
            }
        }
        Ok(failed)
    }

    /// Caller and callee of a call not ended, and whether it is accepted.
    pub fn live_parties(&self, sid: &Sid) -> Option<(Id, Id, bool)> {
        let known = self.known.lock().expect("calls lock");
        let call = known.get(sid).filter(|c| c.is_live())?;
        let accepted = call.state == CallStateKind::Accepted;
        Some((call.caller.id.clone(), call.callee.clone(), accepted))
    }

    /// The two devices of an accepted call: the caller's and the callee's
    /// that accepted.
    pub fn media_devices(&self, sid: &Sid) -> Option<[ClientId; 2]> {
        let known = self.known.lock().expect("calls lock");
        let call = known
            .get(sid)
            .filter(|c| c.state == CallStateKind::Accepted)?;
        Some([call.caller.clone(), call.accepted_by.clone()?])
    }

    /// The node holding the accepted call `sid` (its relay room, its
    /// robot commands), when it is another node.
    pub fn held_elsewhere(&self, sid: &Sid) -> Option<String> {
        let known = self.known.lock().expect("calls lock");
        let call = known
            .get(sid)
            .filter(|c| c.state == CallStateKind::Accepted)?;
        call.node.clone().filter(|node| *node != self.node)
    }

    pub fn participant(&self, sid: &Sid, user: &Id) -> bool {
        self.known
            .lock()
            .expect("calls lock")
            .participant(sid, user)
    }

    /// Reads the call `sid` from the store unless this node knows it (or,
    /// with `until_accepted`, knows it accepted or ended): a client may
    /// act on another node's change before that node's news arrived here.
    pub async fn recall(&self, sid: &Sid, until_accepted: bool) {
        let settled = |c: &Call| {
            !until_accepted
                || c.state != CallStateKind::Inviting && c.state != CallStateKind::Ringing
        };
        if self
            .known
            .lock()
            .expect("calls lock")
            .get(sid)
            .is_some_and(settled)
        {
            return;
        }
        self.read_again(sid).await;
    }

    /// Reads the call `sid` from the store, keeping it if it is newer.
    async fn read_again(&self, sid: &Sid) {
        match self.edges.store.call(sid).await {
            Ok(Some(call)) => self.learn(call),
            Ok(None) => {}
            Err(e) => tracing::warn!(%sid, "reading a call: {e:#}"),
        }
    }

    /// The invites `device` is to be shown now (of `only` that call, if
    /// named): those of calls ringing for it, as stored. A device that
    /// subscribes to its inbox late (woken by a push, with a new session,
    /// on any node) sees them.
    pub async fn ringing_for(
        &self,
        device: &ClientId,
        only: Option<&Sid>,
    ) -> anyhow::Result<Vec<(Topic, Vec<u8>)>> {
        let ringing = self
            .ringing
            .get(device.id.clone())
            .await?
            .unwrap_or_default();
        Ok((ringing.iter())
            .filter(|call| call.rings_for(device) && only.is_none_or(|sid| *sid == call.sid))
            .map(|call| {
                let topic = Topic::Invite {
                    callee: call.callee.clone(),
                    sid: call.sid.clone(),
                };
                let payload = serde_json::to_vec(&call.invite()).expect("an invite serializes");
                (topic, payload)
            })
            .collect())
    }

    /// The state a new subscriber to `session/<sid>/state` is served:
    /// while the call lives and `KEEP_ENDED_MS` after. A call this node
    /// knows is queued to be published again instead, behind the states
    /// still waiting, so the subscriber never gets an older state after
    /// a newer one; any other is read from the store.
    pub async fn current(&self, sid: &Sid) -> anyhow::Result<Option<Vec<u8>>> {
        {
            let known = self.known.lock().expect("calls lock");
            if let Some(call) = known.get(sid) {
                self.out.send(Box::new(call.clone()));
                return Ok(None);
            }
        }
        let now = self.edges.now_ms();
        let call = self.edges.store.call(sid).await?;
        Ok(call
            .filter(|c| c.ended_at.is_none_or(|t| now - t < KEEP_ENDED_MS))
            .map(|c| state_payload(&c, self.relay)))
    }

    /// An invite its caller published on `invite/<callee>/<sid>` (the
    /// topic rules let the caller call the callee): checked, decided as a
    /// new call, and delivered unless the call ended at once (busy, or
    /// glare resolved against it). A callee with no device online is woken.
    pub async fn invite(
        &self,
        caller: &ClientId,
        callee: Id,
        sid: Sid,
        payload: &[u8],
    ) -> Result<(), Refused> {
        let invite = validate::invite(payload, &sid, caller)?;
        if self.out.full() {
            let message = "the server is busy publishing calls; try again shortly";
            return Err(Refused::new(ErrorCode::RateLimited, message));
        }
        let parties = Parties {
            sid: sid.clone(),
            caller: caller.id.clone(),
            callee: callee.clone(),
        };
        let mut locked = self
            .lock(&parties)
            .await
            .map_err(|e| Refused::internal("reading calls", e))?;
        // Counted in the call's transaction, over every node; an invite
        // refused below still spends (its transaction stores that alone).
        let key = format!("invites:{}", caller.id);
        let now = self.edges.now_ms();
        let spent = (locked.spend(&key, now, INVITES_PER_MINUTE).await)
            .map_err(|e| Refused::internal("counting invites", e))?;
        if !spent {
            let message = "too many invites; try again in a minute";
            return Err(Refused::new(ErrorCode::RateLimited, message));
        }
        let invitation = Invitation {
            sid,
            caller: caller.clone(),
            callee,
            kind: invite.kind,
        };
        let invited = match locked.calls.invite(invitation, now, self.ring_ms) {
            Ok(invited) => invited,
            Err(r) => {
                (locked.store(&[]).await).map_err(|e| Refused::internal("counting invites", e))?;
                return Err(Refused::new(ErrorCode::Conflict, r.to_string()));
            }
        };
        let call = invited.call.clone();
        let changed: Vec<Call> = [invited.call].into_iter().chain(invited.ended).collect();
        let stored =
            (locked.store(&changed).await).map_err(|e| Refused::internal("storing a call", e))?;
        if !stored {
            return Err(refusal(Refusal::SessionIdUsed));
        }
        self.decided(&changed);
        if !call.is_live() {
            let message = "busy: the callee is in another call or calling you";
            return Err(Refused::new(ErrorCode::Conflict, message));
        }
        self.wake(call);
        Ok(())
    }

    /// Pushes a ring to a callee with no device online on any node; the
    /// invite itself waits in its persistent session (QoS 1), and any
    /// device is served it as it subscribes. The call is marked pushed
    /// first, while it still rings, so whichever node ends its ringing
    /// sends the stop.
    fn wake(&self, call: Call) {
        let Some(push) = self.push.clone() else {
            return;
        };
        let (store, presence) = (self.edges.store.clone(), self.presence.clone());
        self.edges.tasks.spawn(async move {
            match presence.online(&call.callee).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => return tracing::warn!("reading a callee's presence: {e:#}"),
            }
            let tokens = match store.push_tokens(&call.callee).await {
                Ok(t) if !t.is_empty() => t,
                Ok(_) => return,
                Err(e) => return tracing::warn!("reading push tokens: {e:#}"),
            };
            match store.mark_pushed(&call.sid).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return tracing::warn!("marking a call pushed: {e:#}"),
            }
            let name = match store.get_profile(&call.caller.id).await {
                Ok(profile) => profile.and_then(|p| p.nickname),
                Err(e) => {
                    tracing::warn!("reading a caller's name: {e:#}");
                    None
                }
            };
            push.send(&Note::ring(&call, name), &tokens, call.ring_deadline)
                .await;
        });
    }

    /// Pushes the stop of a call whose ringing this change ended, if a
    /// ring was pushed for it, to the callee's tokens as they are now.
    fn stop_ringing(&self, push: Arc<Push>, note: Note) {
        let store = self.edges.store.clone();
        let until = self.edges.now_ms() + STOP_FOR_MS;
        self.edges.tasks.spawn(async move {
            match store.unmark_pushed(&note.sid).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return tracing::warn!("reading whether a call was pushed: {e:#}"),
            }
            match store.push_tokens(&note.user_id).await {
                Ok(tokens) => push.send(&note, &tokens, until).await,
                Err(e) => tracing::warn!("reading push tokens: {e:#}"),
            }
        });
    }

    /// A participant's action published on `session/<sid>/call`.
    pub async fn act(&self, sid: &Sid, from: &ClientId, payload: &[u8]) -> Result<(), Refused> {
        let action = validate::call_action(payload, from)?;
        let parties = match self.known_parties(sid) {
            Some(parties) => parties,
            None => (self.edges.store.call_parties(sid).await)
                .map_err(|e| Refused::internal("reading a call", e))?
                .ok_or_else(|| refusal(Refusal::NoSuchCall))?,
        };
        let mut locked = self
            .lock(&parties)
            .await
            .map_err(|e| Refused::internal("reading calls", e))?;
        let now = self.edges.now_ms();
        let Some(mut call) = locked
            .calls
            .act(sid, from, action.action, now)
            .map_err(refusal)?
        else {
            return Ok(());
        };
        if call.state == CallStateKind::Accepted {
            call.node = Some(match self.relay {
                true => {
                    let since = now - NODE_TTL_MS;
                    let loads = (locked.loads(since).await)
                        .map_err(|e| Refused::internal("reading the nodes' loads", e))?;
                    place(&loads, &self.node)
                }
                false => self.node.clone(),
            });
        }
        let changed = [call];
        let stored =
            (locked.store(&changed).await).map_err(|e| Refused::internal("storing a call", e))?;
        if !stored {
            let message = "the call changed meanwhile; try again";
            return Err(Refused::new(ErrorCode::Conflict, message));
        }
        self.decided(&changed);
        Ok(())
    }

    /// Who the call `sid` is between, if this node knows it (that never
    /// changes).
    fn known_parties(&self, sid: &Sid) -> Option<Parties> {
        let known = self.known.lock().expect("calls lock");
        let call = known.get(sid)?;
        Some(Parties {
            sid: sid.clone(),
            caller: call.caller.id.clone(),
            callee: call.callee.clone(),
        })
    }

    /// The calls of a call's parties, locked for a transition.
    async fn lock(&self, p: &Parties) -> anyhow::Result<crate::store::LockedCalls> {
        self.edges
            .store
            .lock_calls([&p.caller, &p.callee], Some(&p.sid))
            .await
    }

    /// Changes this node decided and stored: counted, told to the other
    /// nodes, and learnt here.
    fn decided(&self, changed: &[Call]) {
        for call in changed {
            if let (Some(push), Some(stop)) = (&self.push, Note::stop(call)) {
                self.stop_ringing(push.clone(), stop);
            }
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
            let news = serde_json::to_vec(call).expect("a call serializes");
            self.edges.bus.call_changed(news.into());
            self.learn(call.clone());
        }
    }

    /// Keeps `call` if it is newer than what this node knows, and queues
    /// it for this node's followers and subscribers; under the lock, so
    /// the queue holds each call's versions in order.
    fn learn(&self, call: Call) {
        let mut known = self.known.lock().expect("calls lock");
        if known.apply(call.clone()) {
            // Here, so the relay's room is open before any device hears
            // the call is accepted, and before this node takes its
            // signalling.
            for follower in &self.followers {
                follower.call_changed(&call);
            }
            self.out.send(Box::new(call));
        }
    }

    /// Other nodes' news, until the stop.
    async fn hear(self: Arc<Self>, mut news: mpsc::UnboundedReceiver<News>) {
        loop {
            let next = tokio::select! {
                next = news.recv() => next,
                () = self.edges.stop.cancelled() => return,
            };
            match next {
                Some(News::Changed(bytes)) => match serde_json::from_slice::<Call>(&bytes) {
                    Ok(call) => self.learn(call),
                    Err(e) => {
                        tracing::warn!("a call from another node that does not read ({e}), ignored")
                    }
                },
                Some(News::All) => self.read_known_again().await,
                None => return,
            }
        }
    }

    /// Reads again the live calls this node knows and the calls it holds,
    /// after news may have been lost.
    async fn read_known_again(&self) {
        let mut sids: Vec<Sid> = {
            let known = self.known.lock().expect("calls lock");
            known.live().map(|c| c.sid.clone()).collect()
        };
        match self.edges.store.calls_held_by(&self.node).await {
            Ok(held) => sids.extend(held.into_iter().map(|p| p.sid)),
            Err(e) => tracing::warn!("reading the calls this node holds: {e:#}"),
        }
        sids.sort();
        sids.dedup();
        for sid in sids {
            self.read_again(&sid).await;
        }
    }

    /// Ends unanswered calls past their deadline, and accepted calls held
    /// by a node gone silent, whichever node took them (the first node to
    /// lock a call ends it; the others find it ended); forgets ended
    /// calls kept long enough. Twice a second.
    async fn tick(&self) {
        let now = self.edges.now_ms();
        // Calls this node still thinks ring well past their deadline:
        // some node ended them, and its news was lost.
        let stale: Vec<Sid> = {
            let mut known = self.known.lock().expect("calls lock");
            known.forget_ended(now);
            (known.live())
                .filter(|c| c.state != CallStateKind::Accepted && now - c.ring_deadline > STALE_MS)
                .map(|c| c.sid.clone())
                .collect()
        };
        for sid in stale {
            self.read_again(&sid).await;
        }
        let due = match self.edges.store.calls_due(now).await {
            Ok(due) => due,
            Err(e) => return tracing::warn!("reading calls past their deadline: {e:#}"),
        };
        for parties in due {
            if let Err(e) = self.expire(&parties, now).await {
                tracing::warn!(sid = %parties.sid, "ending a call missed: {e:#}");
            }
        }
        let orphans = self.edges.store.calls_held_by_gone_nodes().await;
        match orphans.map(|calls| self.fail(calls)) {
            Ok(failing) => match failing.await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "calls held by a silent node ended as failed"),
                Err(e) => tracing::warn!("ending calls held by a silent node: {e:#}"),
            },
            Err(e) => tracing::warn!("reading calls held by silent nodes: {e:#}"),
        }
    }

    /// Ends the call `missed` if it is still due: only that call, whose
    /// users' rows are locked (another of theirs may be another user's
    /// too, and due: it goes its own way).
    async fn expire(&self, parties: &Parties, now: i64) -> anyhow::Result<()> {
        let mut locked = self.lock(parties).await?;
        if let Some(missed) = locked.calls.expire(&parties.sid, now) {
            let missed = [missed];
            if locked.store(&missed).await? {
                self.decided(&missed);
            }
        }
        Ok(())
    }

    /// Publishes each change this node learns to its subscribers, in the
    /// order learnt.
    async fn run_publisher(self: Arc<Self>, mut queue: Inbox<Box<Call>>) {
        let publish = &self.edges.publish;
        while let Some(call) = queue.next(&self.edges.stop).await {
            let topic = Topic::CallState(call.sid.clone());
            if let Err(e) = publish
                .publish_here(&topic, state_payload(&call, self.relay), true)
                .await
            {
                tracing::error!(sid = %call.sid, "publishing a call state: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_edges;
    use switchboard_presence::Cause;
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

    async fn service(edges: Edges, seen: Arc<Seen>) -> (Arc<CallService>, Inbox<Box<Call>>) {
        service_pushing(edges, seen, None).await
    }

    async fn service_pushing(
        edges: Edges,
        seen: Arc<Seen>,
        push: Option<Arc<Push>>,
    ) -> (Arc<CallService>, Inbox<Box<Call>>) {
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
        let followers: Vec<Arc<dyn Follow>> = vec![seen];
        CallService::new(RING, "node".into(), true, edges, presence, push, followers)
    }

    fn phone() -> ClientId {
        format!("{CALLER}:phone").parse().unwrap()
    }

    #[test]
    fn an_accepted_call_goes_to_the_least_loaded_node_this_one_first_among_equals() {
        let loads = |l: &[(&str, u64)]| -> Vec<(String, u64)> {
            l.iter().map(|(n, h)| (n.to_string(), *h)).collect()
        };
        let cases: [(&[(&str, u64)], &str); 5] = [
            (&[], "me"),
            (&[("me", 0)], "me"),
            (&[("a", 0), ("me", 0), ("b", 0)], "me"),
            (&[("b", 1), ("me", 2), ("a", 1)], "a"),
            (&[("me", 3), ("c", 5)], "me"),
        ];
        for (l, want) in cases {
            assert_eq!(place(&loads(l), "me"), want, "{l:?}");
        }
    }

    /// The caller's phone calls the callee on `SID`.
    async fn call(calls: &CallService) -> Result<(), Refused> {
        let callee = CALLEE.parse().unwrap();
        let sid = SID.parse().unwrap();
        calls
            .invite(&phone(), callee, sid, invite(SID).as_bytes())
            .await
    }

    fn callee_phone() -> ClientId {
        format!("{CALLEE}:phone").parse().unwrap()
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
        call(&calls).await.unwrap();
        let (topic, payload, retain) = sent.recv().await.unwrap();
        assert_eq!((topic, retain), (Topic::CallState(sid.clone()), true));
        assert_eq!(state(&payload).state, CallStateKind::Inviting);
        assert!(
            store.call(&sid).await.unwrap().is_some(),
            "stored before it is published"
        );
        assert!(calls.participant(&sid, &callee));

        clock.advance(RING.as_millis() as i64 - 1);
        calls.tick().await;
        clock.advance(1);
        calls.tick().await;
        calls.tick().await;
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
        assert_eq!(calls.current(&sid).await.unwrap(), None, "known: queued");
        let (_, again, _) = sent.recv().await.unwrap();
        assert_eq!(again, payload, "published again, behind what waits");
        let (elsewhere, _) = service(calls.edges.clone(), Arc::default()).await;
        assert_eq!(
            elsewhere.current(&sid).await.unwrap(),
            Some(payload),
            "a node that does not know it serves it as stored"
        );
        stop.cancel();
        publisher.await.unwrap();
        assert_eq!(
            *seen.0.lock().unwrap(),
            [CallStateKind::Inviting, CallStateKind::Ended],
            "each change followed once, in order"
        );
        let again = calls
            .invite(&phone(), callee, sid.clone(), invite(SID).as_bytes())
            .await
            .unwrap_err();
        assert_eq!(
            (again.code, again.message.as_str()),
            (ErrorCode::Conflict, "this session id is already used")
        );
        clock.advance(KEEP_ENDED_MS);
        calls.tick().await;
        assert_eq!(calls.current(&sid).await.unwrap(), None, "no longer served");
    }

    /// Where the callee's phone is when the call rings.
    #[derive(Debug, Clone, Copy)]
    enum Callee {
        /// Connected here, its change not yet stored.
        Here,
        /// Lost here, its change not yet stored: the store has it online.
        LostHere,
        /// Connected to another node, as stored.
        Elsewhere,
    }

    /// Whether the invite's ring is pushed, with the callee's phone where
    /// `callee` says.
    async fn ring_pushed(callee: Callee) -> bool {
        let (edges, _clock, _sent) = test_edges().await;
        let (store, tasks) = (edges.store.clone(), edges.tasks.clone());
        let push = Some(Arc::new(Push::new(crate::push::Services::none(), &edges)));
        let (calls, _queue) = service_pushing(edges.clone(), Arc::default(), push).await;
        let user: Id = CALLEE.parse().unwrap();
        (store.add_push_token(&user, "android", "token"))
            .await
            .unwrap();
        let (here, other) = (
            calls.presence.clone(),
            PresenceService::new(edges, "other".into()).await.unwrap(),
        );
        match callee {
            Callee::Here => here.connected(callee_phone(), 1).await,
            Callee::LostHere => {
                here.connected(callee_phone(), 1).await;
                here.clone().run_once().await;
                here.disconnected(callee_phone(), 1, Cause::Lost);
                assert!(here.current(&user).await.unwrap().online, "as stored");
            }
            Callee::Elsewhere => {
                other.connected(callee_phone(), 1).await;
                other.clone().run_once().await;
            }
        }
        call(&calls).await.unwrap();
        // The push is decided in a task of its own.
        tasks.close();
        tasks.wait().await;
        store.rings_pushed(&SID.parse().unwrap()).await.unwrap()
    }

    /// A ring is pushed to a callee with no device online anywhere: this
    /// node's devices count as they are now, other nodes' as stored.
    #[tokio::test]
    async fn a_ring_is_pushed_to_a_callee_with_no_device_online() {
        let cases = [
            (Callee::Here, false),
            (Callee::LostHere, true),
            (Callee::Elsewhere, false),
        ];
        for (callee, want) in cases {
            assert_eq!(ring_pushed(callee).await, want, "{callee:?}");
        }
    }

    /// Two nodes on one store: either takes the call's next step, and
    /// each publishes the changes it hears of once, newest only.
    #[tokio::test]
    async fn any_node_takes_a_calls_next_step_and_hears_the_others() {
        let (edges, _clock, mut sent) = test_edges().await;
        let (one, mut one_queue) = service(edges.clone(), Arc::default()).await;
        let (two, _) = service(edges.clone(), Arc::default()).await;
        let (sid, callee): (Sid, Id) = (SID.parse().unwrap(), CALLEE.parse().unwrap());
        call(&one).await.unwrap();
        assert!(!two.participant(&sid, &callee), "not heard of yet");
        two.recall(&sid, false).await;
        assert!(two.participant(&sid, &callee), "read from the store");
        let accept = br#"{"action":"accept"}"#;
        two.act(&sid, &callee_phone(), accept).await.unwrap();
        assert_eq!(two.media_devices(&sid), Some([phone(), callee_phone()]));
        assert_eq!(one.media_devices(&sid), None, "one has not heard yet");
        one.recall(&sid, true).await;
        assert_eq!(one.media_devices(&sid), Some([phone(), callee_phone()]));

        // What one queued for its subscribers: each version it learned,
        // once; news older than what it knows changes nothing.
        let versions = |queue: &mut Inbox<Box<Call>>| {
            let mut v = Vec::new();
            while let Some(call) = queue.try_next() {
                v.push(call.version);
            }
            v
        };
        assert_eq!(versions(&mut one_queue), [1, 2]);
        let first = store_version(&edges, &sid).await;
        one.learn(first);
        assert!(versions(&mut one_queue).is_empty());
        let hangup = br#"{"action":"hangup"}"#;
        two.act(&sid, &phone(), hangup).await.unwrap();
        let ended = edges.store.call(&sid).await.unwrap().unwrap();
        let news = serde_json::to_vec(&ended).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(News::Changed(news.clone().into())).unwrap();
        tx.send(News::Changed(news.into())).unwrap();
        tx.send(News::Changed(Bytes::from_static(b"not a call")))
            .unwrap();
        drop(tx);
        one.clone().hear(rx).await;
        assert_eq!(versions(&mut one_queue), [3]);
        assert_eq!(one.live_parties(&sid), None, "ended");
        assert!(
            sent.try_recv().is_err(),
            "nothing published without the publisher"
        );
    }

    async fn store_version(edges: &Edges, sid: &Sid) -> Call {
        let mut call = edges.store.call(sid).await.unwrap().unwrap();
        call.version = 1;
        call
    }

    #[tokio::test]
    async fn refused_invites_and_actions_change_nothing() {
        let (edges, _clock, _sent) = test_edges().await;
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
        let none = calls.act(&sid, &phone(), accept).await.unwrap_err();
        assert_eq!(
            (none.code, none.message.as_str()),
            (ErrorCode::NotFound, "no such call")
        );
        calls
            .invite(&phone(), callee, sid.clone(), invite(SID).as_bytes())
            .await
            .unwrap();
        let stored = calls.edges.store.call(&sid).await.unwrap();
        let bad: Vec<(&[u8], ErrorCode)> = vec![
            (b"{", ErrorCode::BadRequest),
            (br#"{"action":"hangup"}"#, ErrorCode::Conflict),
            (br#"{"action":"accept"}"#, ErrorCode::Conflict),
        ];
        for (payload, code) in bad {
            let refused = calls.act(&sid, &phone(), payload).await.unwrap_err();
            assert_eq!(refused.code, code, "{}", String::from_utf8_lossy(payload));
        }
        assert_eq!(
            calls.edges.store.call(&sid).await.unwrap(),
            stored,
            "unchanged"
        );
    }
}

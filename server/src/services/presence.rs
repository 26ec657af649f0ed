//! Presence: connections the broker sees go into the tracker (pure logic
//! in the presence crate), which says when this node's devices of a user
//! change. One task stores each change and merges the user's presence
//! over every node in the store (each node keeps its own devices there,
//! one `seq` for all), then publishes what was stored, in order. A node
//! says it is alive every few seconds; one that went silent has its
//! devices removed by another, whose users it published.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use switchboard_presence::{Cause, Event, Publication, Tracker};
use switchboard_protocol::payload::{is_connected_payload, Presence};
use switchboard_protocol::{ClientId, Id, Topic};

use super::queue::Latest;
use super::Edges;
use crate::batched::Batched;
use crate::store::{Change, Merged};

/// Presence changes stored in one transaction at most: a connect storm
/// costs a write per batch rather than per device.
const BATCH: usize = 256;
/// How long a change waits for others to be stored with it. Phones that
/// connect one at a time would otherwise cost a transaction each, about
/// 40% of a lone connect's CPU (docs/benchmarks.md); watchers hear of
/// a change this much later.
const GATHER: Duration = Duration::from_millis(50);
/// How often a node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a node may stay silent before another removes its devices:
/// its users go offline this long after it died (plus a takeover's wait).
pub const NODE_TTL_MS: i64 = 10_000;
/// How long after a failed store of presence it is tried again.
const STORE_AGAIN_AFTER: Duration = Duration::from_secs(1);
/// Tries to store one user's change before it is given up (logged): the
/// next change of the user stores all its devices here again.
const STORE_TRIES: u32 = 10;

/// A user whose presence must be stored and merged again.
#[derive(Debug, Clone)]
struct Pending {
    /// This node's devices of the user now; `None`: unchanged here, but
    /// other nodes' rows changed.
    devices: Option<Vec<String>>,
    at: i64,
    /// The tracker's seq of the change, to let the user go once stored.
    tracker_seq: Option<u64>,
    /// Tries to store it that failed.
    failures: u32,
}

impl Pending {
    fn new(devices: Option<Vec<String>>, at: i64, tracker_seq: Option<u64>) -> Pending {
        Pending {
            devices,
            at,
            tracker_seq,
            failures: 0,
        }
    }

    /// `newer` in place of `self`, which was never stored.
    fn then(self, newer: Pending) -> Pending {
        Pending {
            devices: newer.devices.or(self.devices),
            at: newer.at,
            tracker_seq: newer.tracker_seq.or(self.tracker_seq),
            failures: self.failures.max(newer.failures),
        }
    }
}

pub struct PresenceService {
    tracker: Mutex<Tracker>,
    /// This node's name in the store.
    node: String,
    /// Each user's change waiting to be stored: however fast devices come
    /// and go the queue holds at most one entry per user.
    out: Latest<Id, Pending>,
    /// Stored presences, read together for subscribers asking at once.
    stored: Batched<Id, Presence>,
    /// What the start stored (the users the last run left online), to
    /// publish once the broker runs.
    started: Mutex<Vec<Merged>>,
    edges: Edges,
}

/// The retained messages of one stored presence.
fn messages(m: &Merged) -> Vec<(Topic, Vec<u8>)> {
    payloads(&m.user, &m.presence, m.is_connected.is_some())
}

/// `user`'s `presence` message, after its `isConnected` message when
/// `with_is_connected`.
pub fn payloads(user: &Id, presence: &Presence, with_is_connected: bool) -> Vec<(Topic, Vec<u8>)> {
    let mut out = Vec::with_capacity(2);
    if with_is_connected {
        out.push((
            Topic::UserIsConnected(user.clone()),
            is_connected_payload(presence.online).as_bytes().to_vec(),
        ));
    }
    let payload = serde_json::to_vec(presence).expect("presence serializes");
    out.push((Topic::UserPresence(user.clone()), payload));
    out
}

impl PresenceService {
    /// Starts the tickers and the task that stores and publishes each
    /// change.
    pub fn start(self: &Arc<Self>) {
        let service = self.clone();
        self.edges.every(Duration::from_secs(1), move || {
            let service = service.clone();
            async move { service.tick() }
        });
        let service = self.clone();
        self.edges.every(HEARTBEAT, move || {
            let service = service.clone();
            async move { service.heartbeat().await }
        });
        self.edges.tasks.spawn(self.clone().run_publisher());
    }

    /// Node `node` starting, before any client can ask: users left online
    /// with no device anywhere are set offline; the devices this node's
    /// last run left are removed and those users merged again (offline
    /// unless another node holds them), to be published once the broker
    /// runs.
    pub async fn new(edges: Edges, node: String) -> Result<Arc<Self>> {
        let now = edges.now_ms();
        let (orphans, left) = edges.store.start_node(&node, now).await?;
        let again: Vec<Change> = (left.into_iter())
            .map(|user| Change {
                user,
                devices: None,
                at: now,
            })
            .collect();
        let started = edges.store.merge_presences(&node, &again).await?;
        let ended = orphans + started.iter().filter(|m| !m.presence.online).count() as u64;
        if ended > 0 {
            tracing::info!(users = ended, "users online at the last stop are offline");
        }
        let stored = Batched::new(edges.store.clone(), |store, users| async move {
            store.presences(&users).await
        });
        Ok(Arc::new(PresenceService {
            tracker: Mutex::new(Tracker::new()),
            node,
            out: Latest::new(BATCH, GATHER),
            stored,
            started: Mutex::new(started),
            edges,
        }))
    }

    /// A device's connection `connection` (the broker's creation time of
    /// it) began.
    pub async fn connected(&self, client: ClientId, connection: i64) {
        let at = self.edges.now_ms();
        self.event(Event::Connected {
            client,
            connection,
            at,
        });
    }

    pub fn disconnected(&self, client: ClientId, connection: i64, cause: Cause) {
        let at = self.edges.now_ms();
        self.event(Event::Disconnected {
            client,
            connection,
            at,
            cause,
        });
    }

    fn event(&self, event: Event) {
        let mut tracker = self.tracker.lock().expect("presence lock");
        if let Some(p) = tracker.apply(event) {
            self.emit(&tracker, p);
        }
    }

    fn emit(&self, tracker: &Tracker, p: Publication) {
        let (users, devices) = tracker.counts();
        let metrics = &self.edges.metrics;
        metrics.users_online.set(users as i64);
        metrics.devices_online.set(devices as i64);
        metrics.presence_changes.inc();
        let at = p.presence.last_seen.unwrap_or_else(|| self.edges.now_ms());
        let pending = Pending::new(Some(p.presence.devices), at, Some(p.presence.seq));
        // Queued under the tracker's lock: a newer change replaces an older.
        self.out
            .push(p.user, pending, |older, newer| older.then(newer));
    }

    /// Queues `users` to be merged again: other nodes' rows of them changed.
    fn merge_again(&self, users: Vec<Id>, at: i64) {
        for user in users {
            let pending = Pending::new(None, at, None);
            self.out
                .push(user, pending, |older, newer| older.then(newer));
        }
    }

    /// Whether any device of `user` is connected to this node.
    fn online_here(&self, user: &Id) -> bool {
        let tracker = self.tracker.lock().expect("presence lock");
        tracker.get(user).is_some_and(|p| p.online)
    }

    /// Whether any device of `user` is connected anywhere: this node's as
    /// they are now (the store has them up to `GATHER` later, so a phone
    /// just lost here is not read as online), other nodes' as stored.
    pub async fn online(&self, user: &Id) -> Result<bool> {
        if self.online_here(user) {
            return Ok(true);
        }
        self.edges.store.online_elsewhere(user, &self.node).await
    }

    /// `user`'s presence as stored, over every node: offline with seq 0
    /// for a user who never connected.
    pub async fn current(&self, user: &Id) -> Result<Presence> {
        let stored = self.stored.get(user.clone()).await?;
        Ok(stored.unwrap_or(Presence {
            online: false,
            devices: Vec::new(),
            last_seen: None,
            seq: 0,
        }))
    }

    /// Expires takeovers whose new connection never came (once a second).
    fn tick(&self) {
        let mut tracker = self.tracker.lock().expect("presence lock");
        for p in tracker.tick(self.edges.now_ms()) {
            self.emit(&tracker, p);
        }
    }

    /// Says this node is alive, and removes the devices of nodes silent
    /// past `NODE_TTL_MS`, merging their users again. A node found swept
    /// itself (it was silent too long) stores its devices again.
    async fn heartbeat(&self) {
        let (store, now) = (&self.edges.store, self.edges.now_ms());
        match store.heartbeat(&self.node, now).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("this node was silent too long and its devices were removed: storing them again");
                // Queued under the tracker's lock, as every change is: a
                // device that leaves meanwhile is queued after.
                let tracker = self.tracker.lock().expect("presence lock");
                for (user, devices) in tracker.held() {
                    let pending = Pending::new(Some(devices), now, None);
                    self.out
                        .push(user, pending, |older, newer| older.then(newer));
                }
            }
            Err(e) => tracing::warn!("presence heartbeat: {e:#}"),
        }
        match store.sweep_nodes(&self.node, now - NODE_TTL_MS).await {
            Ok(users) if !users.is_empty() => {
                tracing::info!(users = users.len(), "a silent node's devices removed");
                self.merge_again(users, now);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("removing silent nodes: {e:#}"),
        }
    }

    /// Stores and publishes what is queued now (the task does this until
    /// the stop).
    #[cfg(test)]
    pub async fn run_once(self: Arc<Self>) {
        let now = tokio_util::sync::CancellationToken::new();
        now.cancel();
        let batch = self.out.next_batch(&now).await;
        self.store_and_publish(batch).await;
    }

    /// Stores presence changes, merged over every node, and publishes
    /// what was stored, in order, until the stop.
    async fn run_publisher(self: Arc<Self>) {
        let started = std::mem::take(&mut *self.started.lock().expect("started lock"));
        self.published(&started, &[]).await;
        loop {
            let batch = self.out.next_batch(&self.edges.stop).await;
            if batch.is_empty() {
                return;
            }
            self.store_and_publish(batch).await;
        }
    }

    async fn store_and_publish(&self, batch: Vec<(Id, Pending)>) {
        let change = |(user, p): &(Id, Pending)| Change {
            user: user.clone(),
            devices: p.devices.clone(),
            at: p.at,
        };
        let changes: Vec<Change> = batch.iter().map(change).collect();
        // Stored before published: a watcher never sees a seq the store
        // does not have, and any node serves what it saw.
        match self.edges.store.merge_presences(&self.node, &changes).await {
            Ok(merged) => self.published(&merged, &batch).await,
            Err(e) => {
                // One at a time, so one that cannot be stored holds up no
                // other; those that fail are tried again a little later.
                tracing::warn!(users = changes.len(), "storing presence: {e:#}");
                let mut again = false;
                for one in batch {
                    let single = [change(&one)];
                    let stored = self.edges.store.merge_presences(&self.node, &single);
                    match stored.await {
                        Ok(merged) => self.published(&merged, std::slice::from_ref(&one)).await,
                        Err(e) if one.1.failures + 1 >= STORE_TRIES => {
                            tracing::error!(user = %one.0, "presence not stored, given up: {e:#}");
                        }
                        Err(_) => {
                            let (user, mut p) = one;
                            p.failures += 1;
                            self.out.push(user, p, |newer, failed| failed.then(newer));
                            again = true;
                        }
                    }
                }
                if again {
                    tokio::time::sleep(STORE_AGAIN_AFTER).await;
                }
            }
        }
    }

    /// Publishes what was stored, in order; a user with no device here is
    /// let go.
    async fn published(&self, merged: &[Merged], batch: &[(Id, Pending)]) {
        for m in merged {
            for (topic, payload) in messages(m) {
                if let Err(e) = self.edges.publish.publish(&topic, payload, true).await {
                    tracing::error!(%topic, "publishing presence: {e:#}");
                }
            }
        }
        let mut tracker = self.tracker.lock().expect("presence lock");
        for (user, p) in batch {
            if let Some(seq) = p.tracker_seq {
                tracker.forget(user, seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock as _;
    use crate::services::test_edges;
    use switchboard_protocol::acl::PrincipalKind;

    const USER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn phone() -> ClientId {
        format!("{USER}:phone").parse().unwrap()
    }

    /// Stores and publishes what is queued, as the publisher task does
    /// until the stop.
    async fn drain(presence: &Arc<PresenceService>) {
        presence.edges.stop.cancel();
        presence.clone().run_publisher().await;
    }

    #[tokio::test]
    async fn a_device_online_then_lost_is_stored_then_published_in_order() {
        let (edges, clock, mut sent) = test_edges().await;
        let store = edges.store.clone();
        let user: Id = USER.parse().unwrap();
        store.ensure_user(&user, PrincipalKind::User).await.unwrap();
        let presence = PresenceService::new(edges, "n1".into()).await.unwrap();
        presence.connected(phone(), 1).await;
        assert!(presence.online_here(&user));
        clock.advance(5_000);
        presence.disconnected(phone(), 1, Cause::Lost);
        let lost_at = clock.now_ms();
        drain(&presence).await;
        let mut topics = Vec::new();
        while let Ok((topic, payload, retain)) = sent.try_recv() {
            assert!(retain);
            topics.push((topic.to_string(), String::from_utf8(payload).unwrap()));
        }
        // Both changes waited together: the newest state went out, saying
        // the online status changed (the user was never published).
        assert_eq!(topics.len(), 2, "{topics:?}");
        assert_eq!(
            topics[0],
            (format!("users/{USER}/isConnected"), "false".into())
        );
        let published: Presence = serde_json::from_str(&topics[1].1).unwrap();
        let want = Presence {
            online: false,
            devices: Vec::new(),
            last_seen: Some(lost_at),
            seq: 1,
        };
        assert_eq!(published, want);
        assert_eq!(presence.current(&user).await.unwrap(), want, "as stored");
        assert!(!presence.tracker.lock().unwrap().knows(&user), "let go");
    }

    /// A push asks whether a callee is online: this node's devices count
    /// as they are now, before their change is stored; other nodes' as
    /// stored.
    #[tokio::test]
    async fn online_is_this_nodes_devices_now_and_the_others_as_stored() {
        let (edges, _clock, _sent) = test_edges().await;
        let user: Id = USER.parse().unwrap();
        (edges.store.ensure_user(&user, PrincipalKind::User).await).unwrap();
        let one = PresenceService::new(edges.clone(), "n1".into())
            .await
            .unwrap();
        let two = PresenceService::new(edges, "n2".into()).await.unwrap();
        one.connected(phone(), 1).await;
        assert!(one.online(&user).await.unwrap(), "here, not yet stored");
        assert!(!two.online(&user).await.unwrap(), "not yet stored");
        one.clone().run_once().await;
        assert!(two.online(&user).await.unwrap(), "stored");
        one.disconnected(phone(), 1, Cause::Lost);
        assert!(one.current(&user).await.unwrap().online, "still stored");
        assert!(!one.online(&user).await.unwrap(), "gone from here");
        assert!(two.online(&user).await.unwrap(), "as stored");
        one.clone().run_once().await;
        assert!(!two.online(&user).await.unwrap(), "stored gone");
    }

    #[tokio::test]
    async fn a_takeover_whose_new_connection_never_comes_ends_offline_on_a_tick() {
        let (edges, clock, _sent) = test_edges().await;
        let presence = PresenceService::new(edges, "n1".into()).await.unwrap();
        let user: Id = USER.parse().unwrap();
        presence.connected(phone(), 1).await;
        presence.disconnected(phone(), 1, Cause::TakenOver);
        clock.advance(switchboard_presence::TAKEOVER_WAIT_MS - 1);
        presence.tick();
        assert!(
            presence.online_here(&user),
            "waiting for the new connection"
        );
        clock.advance(1);
        presence.tick();
        assert!(!presence.online_here(&user));
    }

    /// Two nodes on one store: a user is online while either holds a
    /// device; a node that restarts clears what its last run left; a
    /// node that goes silent has its devices removed by the other.
    #[tokio::test]
    async fn nodes_merge_a_users_devices_and_clear_a_silent_nodes() {
        let (edges, clock, mut sent) = test_edges().await;
        let store = edges.store.clone();
        let user: Id = USER.parse().unwrap();
        store.ensure_user(&user, PrincipalKind::User).await.unwrap();
        let stored = |p: &Presence| (p.online, p.devices.clone(), p.seq);
        let one = PresenceService::new(edges.clone(), "n1".into())
            .await
            .unwrap();
        one.connected(phone(), 1).await;
        one.clone().run_once().await;
        let tablet: ClientId = format!("{USER}:tablet").parse().unwrap();
        let two = PresenceService::new(edges.clone(), "n2".into())
            .await
            .unwrap();
        two.connected(tablet.clone(), 1).await;
        two.clone().run_once().await;
        let now = two.current(&user).await.unwrap();
        assert_eq!(
            stored(&now),
            (true, vec!["phone".into(), "tablet".into()], 2)
        );
        // The phone leaves node 1: still online on node 2.
        one.disconnected(phone(), 1, Cause::Lost);
        one.clone().run_once().await;
        let now = one.current(&user).await.unwrap();
        assert_eq!(stored(&now), (true, vec!["tablet".into()], 3));
        // Node 2 dies without a word; node 1 is alive past the TTL and
        // removes its devices.
        clock.advance(NODE_TTL_MS + 1);
        one.heartbeat().await;
        one.clone().run_once().await;
        let now = one.current(&user).await.unwrap();
        assert_eq!(stored(&now), (false, vec![], 4));
        while sent.try_recv().is_ok() {}
        // Node 2 comes back: it was removed, so it stores its device again.
        two.heartbeat().await;
        two.clone().run_once().await;
        let now = two.current(&user).await.unwrap();
        assert_eq!(stored(&now), (true, vec!["tablet".into()], 5));
        let (topic, payload, _) = sent.try_recv().unwrap();
        assert_eq!(
            (topic, payload),
            (Topic::UserIsConnected(user.clone()), b"true".to_vec())
        );
        // Node 2 restarts: its last run's device is cleared at start.
        let again = PresenceService::new(edges, "n2".into()).await.unwrap();
        again.clone().run_once().await;
        let now = again.current(&user).await.unwrap();
        assert_eq!(stored(&now), (false, vec![], 6));
    }

    #[tokio::test]
    async fn a_user_the_last_stop_left_online_starts_offline_and_goes_on_from_its_seq() {
        let (edges, _clock, _sent) = test_edges().await;
        let store = edges.store.clone();
        let (user, other): (Id, Id) = (USER.parse().unwrap(), "b".repeat(32).parse().unwrap());
        for id in [&user, &other] {
            store.ensure_user(id, PrincipalKind::User).await.unwrap();
        }
        // The last run: the user came and went twice, then came (seq 5);
        // the other came and went.
        let before = PresenceService::new(edges.clone(), "n1".into())
            .await
            .unwrap();
        for i in 0..2 {
            before.connected(phone(), i).await;
            before.clone().run_once().await;
            before.disconnected(phone(), i, Cause::Lost);
            before.clone().run_once().await;
        }
        before.connected(phone(), 2).await;
        let other_phone: ClientId = format!("{other}:phone").parse().unwrap();
        before.connected(other_phone.clone(), 9).await;
        before.disconnected(other_phone, 9, Cause::Lost);
        before.clone().run_once().await;
        drop(before);
        // The crash: the user's device still stored. The next run starts.
        let presence = PresenceService::new(edges, "n1".into()).await.unwrap();
        presence.clone().run_once().await;
        let now = presence.current(&user).await.unwrap();
        assert_eq!((now.online, now.seq), (false, 6), "one more than before");
        assert!(!presence.current(&other).await.unwrap().online);
        let never: Id = "c".repeat(32).parse().unwrap();
        let p = presence.current(&never).await.unwrap();
        assert_eq!((p.online, p.seq, p.last_seen), (false, 0, None));
        presence.connected(phone(), 1).await;
        presence.clone().run_once().await;
        let now = presence.current(&user).await.unwrap();
        assert_eq!((now.online, now.seq), (true, 7));
    }
}

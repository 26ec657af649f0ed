//! Presence: connections the broker sees go into the tracker (pure logic
//! in the presence crate), and what it says to publish goes out, in order,
//! through one task that also keeps seq and lastSeen in the store. Only
//! users online or just changed are held in memory; the store answers for
//! everyone else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use switchboard_presence::{Cause, Event, Publication, Tracker};
use switchboard_protocol::payload::{is_connected_payload, Presence};
use switchboard_protocol::{ClientId, Id, Topic};

use super::queue::Latest;
use super::Edges;
use crate::batched::Batched;
use crate::store::Stored;

/// Presence changes stored in one transaction at most: a connect storm
/// costs a write per batch rather than per device.
const BATCH: usize = 256;

pub struct PresenceService {
    tracker: Mutex<Tracker>,
    /// Each user's newest publication waiting to leave: a watcher never
    /// sees an older state after a newer one, and however fast devices
    /// come and go the queue holds at most one entry per user.
    out: Latest<Id, Publication>,
    /// Stored presences, read together for connections and subscribers
    /// asking at once.
    stored: Batched<Id, Stored>,
    edges: Edges,
}

/// The retained messages of one publication.
fn messages(p: &Publication) -> Vec<(Topic, Vec<u8>)> {
    payloads(&p.user, &p.presence, p.is_connected.is_some())
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
    /// Starts the ticker and the task that stores and publishes each
    /// change.
    pub fn start(self: &Arc<Self>) {
        let service = self.clone();
        self.edges.every(Duration::from_secs(1), move || {
            let service = service.clone();
            async move { service.tick() }
        });
        self.edges.tasks.spawn(self.clone().run_publisher());
    }

    /// Ends, in the store, the presence of users the last stop left
    /// online. Nothing is published: nobody is subscribed yet, and a
    /// subscriber is served the current state (`current`).
    pub async fn new(edges: Edges) -> Result<Arc<Self>> {
        let ended = edges.store.end_presences_left_online().await?;
        if ended > 0 {
            tracing::info!(users = ended, "users online at the last stop are offline");
        }
        let stored = Batched::new(edges.store.clone(), |store, users| async move {
            store.stored_presences(&users).await
        });
        Ok(Arc::new(PresenceService {
            tracker: Mutex::new(Tracker::new()),
            out: Latest::default(),
            stored,
            edges,
        }))
    }

    /// A device's connection `connection` (the broker's creation time of
    /// it) began. A user the tracker does not hold goes on from its stored
    /// seq.
    pub async fn connected(&self, client: ClientId, connection: i64) {
        let user = &client.id;
        if !self.tracker.lock().expect("presence lock").knows(user) {
            let (seq, last_seen) = match self.stored.get(user.clone()).await {
                Ok(stored) => stored.unwrap_or_default(),
                Err(e) => {
                    // Going on from 0 would publish seqs watchers take for
                    // old ones: better no news than wrong news.
                    tracing::error!(%user, "reading stored presence: {e:#}");
                    return;
                }
            };
            let mut tracker = self.tracker.lock().expect("presence lock");
            tracker.learn(user.clone(), seq, last_seen);
        }
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
        // Queued under the tracker's lock: a newer seq replaces an older.
        self.out
            .push(p.user.clone(), p, |older, newer| newer.replacing(older));
    }

    /// Whether any device of `user` is connected.
    pub fn is_online(&self, user: &Id) -> bool {
        let tracker = self.tracker.lock().expect("presence lock");
        tracker.get(user).is_some_and(|p| p.online)
    }

    /// `user`'s presence now: the tracker holds everyone online or just
    /// changed, the store everyone else (offline; seq 0 for a user who
    /// never connected).
    pub async fn current(&self, user: &Id) -> Result<Presence> {
        if let Some(p) = self.tracker.lock().expect("presence lock").get(user) {
            return Ok(p);
        }
        let (seq, last_seen) = self.stored.get(user.clone()).await?.unwrap_or_default();
        Ok(Presence {
            online: false,
            devices: Vec::new(),
            last_seen,
            seq,
        })
    }

    /// Expires takeovers whose new connection never came (once a second).
    fn tick(&self) {
        let mut tracker = self.tracker.lock().expect("presence lock");
        for p in tracker.tick(self.edges.now_ms()) {
            self.emit(&tracker, p);
        }
    }

    /// Records presence changes and publishes them, in order.
    async fn run_publisher(self: Arc<Self>) {
        let (store, publish) = (&self.edges.store, &self.edges.publish);
        loop {
            let batch = self.out.next_batch(&self.edges.stop, BATCH).await;
            if batch.is_empty() {
                return;
            }
            // Stored before published, in one transaction: after a crash
            // the rebuilt seq is larger than any a watcher has seen.
            let rows: Vec<_> = (batch.iter())
                .map(|(user, p)| {
                    let seq = i64::try_from(p.presence.seq).unwrap_or(i64::MAX);
                    (user.clone(), seq, p.presence.last_seen, p.presence.online)
                })
                .collect();
            let saved = store.save_presences(&rows).await;
            if let Err(e) = &saved {
                tracing::warn!(users = rows.len(), "saving presence: {e:#}");
            }
            for (_, p) in &batch {
                for (topic, payload) in messages(p) {
                    if let Err(e) = publish.publish(&topic, payload, true).await {
                        tracing::error!(%topic, "publishing presence: {e:#}");
                    }
                }
            }
            // Stored, an offline user is served from the store from now on.
            if saved.is_ok() {
                let mut tracker = self.tracker.lock().expect("presence lock");
                for (user, p) in &batch {
                    tracker.forget(user, p.presence.seq);
                }
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

    #[tokio::test]
    async fn a_device_online_then_lost_is_published_in_order_and_its_seq_stored() {
        let (edges, clock, mut sent) = test_edges().await;
        let (store, stop) = (edges.store.clone(), edges.stop.clone());
        let user: Id = USER.parse().unwrap();
        store.ensure_user(&user, PrincipalKind::User).await.unwrap();
        let presence = PresenceService::new(edges).await.unwrap();
        presence.connected(phone(), 1).await;
        let online_at = clock.now_ms();
        clock.advance(5_000);
        presence.disconnected(phone(), 1, Cause::Lost);
        let now = presence.current(&user).await.unwrap();
        assert!(!now.online);
        assert_eq!(now.last_seen, Some(online_at + 5_000), "the clock's time");
        stop.cancel();
        presence.clone().run_publisher().await;
        let mut topics = Vec::new();
        while let Ok((topic, payload, retain)) = sent.try_recv() {
            assert!(retain);
            topics.push((topic.to_string(), String::from_utf8(payload).unwrap()));
        }
        // Both changes waited together: the newest state went out, saying
        // the online status changed.
        assert_eq!(topics.len(), 2, "{topics:?}");
        assert_eq!(
            topics[0],
            (format!("users/{USER}/isConnected"), "false".into())
        );
        let published: Presence = serde_json::from_str(&topics[1].1).unwrap();
        assert_eq!(published, now);
        let stored = store
            .stored_presences(std::slice::from_ref(&user))
            .await
            .unwrap();
        assert_eq!(stored.get(&user), Some(&(now.seq, now.last_seen)));
        // Stored offline, the user is served from the store.
        assert_eq!(presence.current(&user).await.unwrap(), now);
    }

    #[tokio::test]
    async fn a_takeover_whose_new_connection_never_comes_ends_offline_on_a_tick() {
        let (edges, clock, _sent) = test_edges().await;
        let presence = PresenceService::new(edges).await.unwrap();
        let user: Id = USER.parse().unwrap();
        presence.connected(phone(), 1).await;
        presence.disconnected(phone(), 1, Cause::TakenOver);
        clock.advance(switchboard_presence::TAKEOVER_WAIT_MS - 1);
        presence.tick();
        assert!(presence.is_online(&user), "waiting for the new connection");
        clock.advance(1);
        presence.tick();
        assert!(!presence.is_online(&user));
    }

    #[tokio::test]
    async fn a_user_the_last_stop_left_online_starts_offline_and_goes_on_from_its_seq() {
        let (edges, _clock, _sent) = test_edges().await;
        let store = edges.store.clone();
        let (user, other): (Id, Id) = (USER.parse().unwrap(), "b".repeat(32).parse().unwrap());
        for id in [&user, &other] {
            store.ensure_user(id, PrincipalKind::User).await.unwrap();
        }
        let saved = [
            (user.clone(), 4, Some(10), true),
            (other.clone(), 7, Some(20), false),
        ];
        store.save_presences(&saved).await.unwrap();
        let presence = PresenceService::new(edges).await.unwrap();
        let offline = |seq, last_seen| Presence {
            online: false,
            devices: Vec::new(),
            last_seen,
            seq,
        };
        assert_eq!(presence.current(&user).await.unwrap(), offline(5, Some(10)));
        assert_eq!(
            presence.current(&other).await.unwrap(),
            offline(7, Some(20)),
            "unchanged"
        );
        let never: Id = "c".repeat(32).parse().unwrap();
        assert_eq!(presence.current(&never).await.unwrap(), offline(0, None));
        presence.connected(phone(), 1).await;
        let now = presence.current(&user).await.unwrap();
        assert_eq!((now.online, now.seq), (true, 6));
    }

    #[tokio::test]
    async fn changes_waiting_together_are_stored_together_then_forgotten() {
        let (edges, _clock, _sent) = test_edges().await;
        let (store, stop) = (edges.store.clone(), edges.stop.clone());
        let presence = PresenceService::new(edges).await.unwrap();
        let users: Vec<Id> = ["a", "b", "c"]
            .iter()
            .map(|c| c.repeat(32).parse().unwrap())
            .collect();
        for user in &users {
            store.ensure_user(user, PrincipalKind::User).await.unwrap();
            let phone: ClientId = format!("{user}:phone").parse().unwrap();
            presence.connected(phone.clone(), 1).await;
            presence.disconnected(phone, 1, Cause::Lost);
        }
        stop.cancel();
        presence.clone().run_publisher().await;
        for user in &users {
            let stored = store.stored_presences(&users).await.unwrap();
            assert_eq!(stored.get(user).map(|(seq, _)| *seq), Some(2), "{user}");
            assert!(
                !presence.tracker.lock().unwrap().knows(user),
                "{user} let go"
            );
        }
    }
}

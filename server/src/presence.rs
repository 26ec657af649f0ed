//! Presence at the edges: broker events go into the tracker (pure logic in
//! the presence crate), and what it says to publish goes out, in order,
//! through one task that also keeps seq and lastSeen in the store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use switchboard_presence::{Event, Publication, Tracker};
use switchboard_protocol::payload::{is_connected_payload, Presence};
use switchboard_protocol::{Id, Topic};
use tokio_util::sync::CancellationToken;

use crate::broker::Publisher;
use crate::metrics::Metrics;
use crate::queue::Latest;
use crate::store::{now_ms, Store};

pub struct PresenceService {
    tracker: Mutex<Tracker>,
    /// Each user's newest publication waiting to leave: a watcher never
    /// sees an older state after a newer one, and however fast devices
    /// come and go the queue holds at most one entry per user.
    out: Arc<Latest<Id, Publication>>,
    metrics: Arc<Metrics>,
}

/// The retained messages of one publication.
pub fn messages(p: &Publication) -> Vec<(Topic, Vec<u8>)> {
    let mut out = Vec::with_capacity(2);
    if let Some(online) = p.is_connected {
        out.push((
            Topic::UserIsConnected(p.user.clone()),
            is_connected_payload(online).as_bytes().to_vec(),
        ));
    }
    let presence = serde_json::to_vec(&p.presence).expect("presence serializes");
    out.push((Topic::UserPresence(p.user.clone()), presence));
    out
}

impl PresenceService {
    /// Everyone offline, from the stored seqs. Returns the service, the
    /// retained messages to put in place before the broker accepts anyone,
    /// and the queue for `run_publisher`.
    pub async fn start(
        store: &Store,
        metrics: Arc<Metrics>,
    ) -> Result<(
        Arc<Self>,
        Vec<(Topic, Vec<u8>)>,
        Arc<Latest<Id, Publication>>,
    )> {
        let stored = store.presence_rows().await?;
        let stored = stored.into_iter().filter_map(|(id, seq, last_seen)| {
            let id: Id = id.parse().ok()?;
            Some((id, u64::try_from(seq).unwrap_or(0), last_seen))
        });
        let mut tracker = Tracker::new();
        let offline = tracker.rebuild(stored);
        store.bump_presence_seqs().await?;
        let retained = offline.iter().flat_map(messages).collect();
        let out = Arc::new(Latest::default());
        let service = PresenceService {
            tracker: Mutex::new(tracker),
            out: out.clone(),
            metrics,
        };
        Ok((Arc::new(service), retained, out))
    }

    pub fn event(&self, event: Event) {
        let mut tracker = self.tracker.lock().expect("presence lock");
        if let Some(p) = tracker.apply(event) {
            self.emit(&tracker, p);
        }
    }

    fn emit(&self, tracker: &Tracker, p: Publication) {
        let (users, devices) = tracker.counts();
        self.metrics.users_online.set(users as i64);
        self.metrics.devices_online.set(devices as i64);
        self.metrics.presence_changes.inc();
        // Queued under the tracker's lock: a newer seq replaces an older.
        self.out
            .push(p.user.clone(), p, |older, newer| newer.replacing(older));
    }

    pub fn get(&self, user: &Id) -> Option<Presence> {
        self.tracker.lock().expect("presence lock").get(user)
    }

    /// Expires takeovers whose new connection never came, once a second.
    pub fn spawn_ticker(self: &Arc<Self>) {
        let service = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let mut tracker = service.tracker.lock().expect("presence lock");
                for p in tracker.tick(now_ms()) {
                    service.emit(&tracker, p);
                }
            }
        });
    }
}

/// Records presence changes and publishes them, in order.
pub async fn run_publisher(
    queue: Arc<Latest<Id, Publication>>,
    publisher: Publisher,
    store: Store,
    stop: CancellationToken,
) {
    while let Some((_, p)) = queue.next(&stop).await {
        // Stored before it is published: after a crash the rebuilt seq is
        // larger than any a watcher has seen.
        let seq = i64::try_from(p.presence.seq).unwrap_or(i64::MAX);
        if let Err(e) = store
            .save_presence(p.user.as_str(), seq, p.presence.last_seen)
            .await
        {
            tracing::warn!(user = %p.user, "saving presence: {e:#}");
        }
        for (topic, payload) in messages(&p) {
            if let Err(e) = publisher.publish(&topic, payload, true).await {
                tracing::error!(%topic, "publishing presence: {e:#}");
            }
        }
    }
}

//! The services: what the server decides about clients' messages and its
//! own deadlines, between the pure crates (protocol, presence, signalling,
//! pairing) and the adapters (broker hooks, HTTP). Each keeps a pure core
//! behind a lock, reads time from a `Clock`, publishes through the
//! `Publish` port, and never imports the broker.

pub mod calls;
pub mod presence;
pub mod profiles;
mod queue;
pub mod robots;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use switchboard_protocol::Topic;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::outbound::Publish;
use crate::store::Store;

/// The services the adapters (broker hooks, HTTP) hand work to.
#[derive(Clone)]
pub struct Services {
    pub presence: Arc<presence::PresenceService>,
    pub calls: Arc<calls::CallService>,
    pub robots: Arc<robots::RobotService>,
    pub profiles: Arc<profiles::ProfileService>,
    /// The media relay, when it is enabled.
    pub relay: Option<switchboard_relay::Relay>,
}

impl Services {
    /// The current values of user topics (profile, presence), whose state
    /// the services hold rather than the broker: what a new subscriber is
    /// sent, flagged retained. A topic with nothing to send (no profile),
    /// or not a user topic, is left out; presence is read once for all.
    pub async fn current(&self, topics: &[Topic]) -> Result<Vec<(Topic, Vec<u8>)>> {
        let mut out = Vec::with_capacity(topics.len());
        let mut presence = None;
        for topic in topics {
            match topic {
                Topic::UserInfo(id) => {
                    if let Some(p) = self.profiles.current(id).await? {
                        let payload = serde_json::to_vec(&p).expect("profile serializes");
                        out.push((topic.clone(), payload));
                    }
                }
                Topic::UserIsConnected(id) | Topic::UserPresence(id) => {
                    if presence.is_none() {
                        let p = self.presence.current(id).await?;
                        presence = Some(presence::payloads(id, &p, true));
                    }
                    let found = presence.iter().flatten().find(|(t, _)| t == topic);
                    out.extend(found.cloned());
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// What every service works with at its edges.
#[derive(Clone)]
pub struct Edges {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub publish: Arc<dyn Publish>,
    /// To the other nodes, beneath `publish`; the services use it
    /// directly only to say who-sees-whom changed.
    pub bus: Bus,
    pub metrics: Arc<Metrics>,
    /// Every task a service starts, so the shutdown waits for them.
    pub tasks: TaskTracker,
    /// Cancelled at shutdown, once the broker closed every connection:
    /// tickers end; the presence and call publishers store and publish
    /// what was queued before it, then end; the relay's ends at once.
    pub stop: CancellationToken,
}

impl Edges {
    /// Runs `tick` every `period` until the stop; one tick at a time.
    pub fn every<F, Fut>(&self, period: Duration, mut tick: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = every.tick() => tick().await,
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// Edges for unit tests: a fresh SQLite store, a clock set by hand, and
/// what is published readable in order.
#[cfg(test)]
pub async fn test_edges() -> (Edges, Arc<crate::clock::ManualClock>, crate::outbound::Sent) {
    let store = crate::store::tests::temp_store().await;
    let clock = crate::clock::ManualClock::at(1_000_000);
    let (publish, sent) = tokio::sync::mpsc::unbounded_channel();
    let edges = Edges {
        store,
        clock: clock.clone(),
        publish: Arc::new(publish),
        bus: Bus::for_tests(),
        metrics: Arc::new(Metrics::new()),
        tasks: TaskTracker::new(),
        stop: CancellationToken::new(),
    };
    (edges, clock, sent)
}

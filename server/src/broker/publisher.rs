//! Publishing as the server: state the services own (presence, call
//! states, pairing results, refusals reported to clients), to this node's
//! subscribers and over the bus to other nodes'; and what other nodes
//! send this one.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use switchboard_broker::{Message, QoS};
use switchboard_protocol::payload::ClientError;
use switchboard_protocol::{ClientId, ErrorCode, Id, Topic};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::watchers::News;
use super::Core;
use crate::bus::{Arrivals, Bus, Carried};
use crate::outbound;
use crate::services::calls;

/// The broker core once it started.
#[derive(Clone, Default)]
pub struct Attached(Arc<OnceLock<Core>>);

/// Made before the broker (the services it starts with publish through
/// it); publishing works once the broker is attached.
#[derive(Clone)]
pub struct Publisher {
    core: Attached,
    bus: Bus,
}

impl Publisher {
    pub fn new(core: Attached, bus: Bus) -> Publisher {
        Publisher { core, bus }
    }

    pub(super) fn core(&self) -> Option<&Core> {
        self.core.0.get()
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub(super) fn attach(&self, core: Core) {
        if self.core.0.set(core).is_err() {
            tracing::error!("a second broker attached to the publisher");
        }
    }

    pub async fn report(&self, client: &ClientId, topic: &str, code: ErrorCode, message: String) {
        let body = ClientError {
            topic: topic.to_string(),
            code,
            message,
        };
        let payload = serde_json::to_vec(&body).expect("error report serializes");
        if let Err(e) =
            outbound::Publish::publish(self, &Topic::ClientErrors(client.clone()), payload, false)
                .await
        {
            tracing::warn!(%client, "could not report a refusal: {e}");
        }
    }
}

/// A message of the server's own, at QoS 1.
pub fn message(topic: &Topic, payload: Vec<u8>, retain: bool) -> Message {
    let mut message = Message::new(topic.to_string().into(), payload.into(), QoS::AtLeastOnce);
    message.retain = retain;
    message
}

/// `message` as it goes to other nodes.
pub fn carried(message: &Message, now: Instant) -> Carried {
    let left = |at: Instant| at.saturating_duration_since(now).as_millis();
    Carried {
        topic: message.topic.to_string(),
        payload: message.payload.clone(),
        qos: message.qos as u8,
        retain: message.retain,
        expires_in_ms: message
            .expires
            .map(|at| u64::try_from(left(at)).unwrap_or(u64::MAX)),
    }
}

/// A message from another node, as this node's broker routes it: to the
/// subscribers here now, never kept as retained (once this node no longer
/// wants its key it would not hear of the message that clears it).
fn landed(c: Carried, now: Instant) -> Message {
    let qos = match c.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let mut message = Message::new(c.topic.into(), c.payload, qos);
    // Past what an instant holds: as good as never.
    message.expires = (c.expires_in_ms).and_then(|ms| now.checked_add(Duration::from_millis(ms)));
    message
}

#[async_trait::async_trait]
impl outbound::Publish for Publisher {
    async fn publish(&self, topic: &Topic, payload: Vec<u8>, retain: bool) -> Result<()> {
        let core = self.core().context("the broker has not started")?;
        let message = message(topic, payload, retain);
        let (topic, now) = (message.topic.clone(), Instant::now());
        self.bus.send(&topic, || carried(&message, now));
        core.publish(message);
        Ok(())
    }

    async fn publish_here(&self, topic: &Topic, payload: Vec<u8>, retain: bool) -> Result<()> {
        let core = self.core().context("the broker has not started")?;
        core.publish(message(topic, payload, retain));
        Ok(())
    }
}

/// What other nodes send this one: messages go to this node's
/// subscribers as they were routed there (the rules ran on the node that
/// took them); who-sees-whom news is handed to the task that reads the
/// graph again (`Watchers::follow`), calls' news to the call service.
pub struct Landing {
    pub core: Attached,
    pub graph_news: mpsc::UnboundedSender<News>,
    pub call_news: mpsc::UnboundedSender<calls::News>,
    /// Work for the calls this node holds (`holder`).
    pub held: mpsc::UnboundedSender<Bytes>,
}

impl Arrivals for Landing {
    fn message(&self, message: Carried) {
        // Before the broker starts no client is here to get it.
        if let Some(core) = self.core.0.get() {
            core.publish(landed(message, Instant::now()));
        }
    }

    fn graph_changed(&self, users: Vec<Id>) {
        let _ = self.graph_news.send(News::Users(users));
    }

    fn call_changed(&self, call: Bytes) {
        let _ = self.call_news.send(calls::News::Changed(call));
    }

    fn for_holder(&self, work: Bytes) {
        let _ = self.held.send(work);
    }

    fn connected_elsewhere(&self, client_id: String, at: std::time::SystemTime) {
        let core = self.core.0.get();
        let closed = core.is_some_and(|core| core.take_over(&client_id, at));
        if closed {
            tracing::info!(
                client_id,
                "connection closed: the client connected to another node"
            );
        }
    }

    fn resync(&self) {
        let _ = self.graph_news.send(News::All);
        let _ = self.call_news.send(calls::News::All);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message crossing nodes keeps its topic, payload, QoS and the
    /// expiry it has left; the node it lands on does not keep it retained.
    #[test]
    fn a_message_lands_as_it_left_but_not_kept() {
        let now = Instant::now();
        let topic = Topic::UserInfo("a".repeat(32).parse().unwrap());
        let mut sent = message(&topic, b"{}".to_vec(), true);
        sent.expires = Some(now + Duration::from_secs(5));
        let c = carried(&sent, now);
        assert_eq!((c.expires_in_ms, c.retain, c.qos), (Some(5_000), true, 1));
        let later = now + Duration::from_secs(1);
        let got = landed(c.clone(), later);
        assert_eq!(&got.topic[..], &sent.topic[..]);
        assert_eq!(&got.payload[..], b"{}");
        assert_eq!((got.qos, got.retain), (QoS::AtLeastOnce, false));
        assert_eq!(got.expires, Some(later + Duration::from_secs(5)));
        let forever = Carried {
            expires_in_ms: Some(u64::MAX),
            ..c
        };
        // A garbage expiry from another node does not panic: never, or
        // as good as never.
        let far = later + Duration::from_secs(100 * 365 * 86_400);
        let expires = landed(forever, later).expires;
        assert!(expires.is_none_or(|at| at > far), "{expires:?}");
    }
}

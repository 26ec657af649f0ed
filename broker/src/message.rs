//! A message as the broker holds it between its publisher and its
//! subscribers: shared by every queue it is in, its expiry absolute.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use bytestring::ByteString;
use rmqtt_codec::types::Publish;
use rmqtt_codec::v5::PublishProperties;
use tokio::time::Instant;

use crate::queue::Queued;
use crate::QoS;

#[derive(Debug)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// When it is no longer worth delivering: its publisher's Message
    /// Expiry Interval (MQTT 5).
    pub expires: Option<Instant>,
    /// The MQTT 5 properties passed on to subscribers (content type,
    /// response topic, correlation data, user properties), if any.
    pub properties: Option<Box<PublishProperties>>,
    /// When the broker took it.
    pub received: Instant,
    /// The publishing session (for No Local); 0 for the broker's own.
    pub(crate) from: u64,
}

impl Message {
    /// A message of the broker's own (e.g. a state the embedder publishes).
    pub fn new(topic: ByteString, payload: Bytes, qos: QoS) -> Message {
        Message {
            topic,
            payload,
            qos,
            retain: false,
            expires: None,
            properties: None,
            received: Instant::now(),
            from: 0,
        }
    }

    /// A client's PUBLISH, or its Will (as a PUBLISH it did not send).
    pub(crate) fn published(p: Publish, from: u64, now: Instant) -> Message {
        let mut properties = p.properties.unwrap_or_default();
        let expires = (properties.message_expiry_interval.take())
            .map(|s| now + std::time::Duration::from_secs(u64::from(s.get())));
        // Both are per hop: the subscriber's connection sets its own.
        properties.topic_alias = None;
        properties.subscription_ids.clear();
        Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            expires,
            properties: (properties != PublishProperties::default()).then(|| Box::new(properties)),
            received: now,
            from,
        }
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    /// The PUBLISH that carries it to one subscriber. MQTT 5 subscribers
    /// get the properties, and the expiry as what is left of it.
    pub(crate) fn to_publish(
        &self,
        queued: &Queued,
        packet_id: Option<NonZeroU16>,
        v5: bool,
        now: Instant,
    ) -> Publish {
        let (qos, retain) = (queued.qos, queued.retain);
        let properties = v5.then(|| {
            let mut pp = self.properties.as_deref().cloned().unwrap_or_default();
            pp.subscription_ids = queued.subscription_ids.clone();
            pp.message_expiry_interval = self.expires.map(|e| {
                let left = e.saturating_duration_since(now).as_secs();
                NonZeroU32::new(left.clamp(1, u64::from(u32::MAX)) as u32)
                    .unwrap_or(NonZeroU32::MIN)
            });
            pp
        });
        Publish {
            dup: false,
            retain,
            qos,
            topic: self.topic.clone(),
            packet_id,
            payload: self.payload.clone(),
            properties,
        }
    }
}

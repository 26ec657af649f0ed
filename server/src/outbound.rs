//! The port the services publish through. The broker implements it; the
//! services never import the broker.

use anyhow::Result;
use async_trait::async_trait;
use switchboard_protocol::Topic;

#[async_trait]
pub trait Publish: Send + Sync + 'static {
    /// Publishes at QoS 1 to the topic's current subscribers; a retained
    /// message also waits for later ones (an empty one clears it).
    async fn publish(&self, topic: &Topic, payload: Vec<u8>, retain: bool) -> Result<()>;

    /// Publishes to this node's subscribers only, for what every node
    /// publishes itself as it learns of it (call states).
    async fn publish_here(&self, topic: &Topic, payload: Vec<u8>, retain: bool) -> Result<()>;
}

/// What a service published, for its unit tests to read in order.
#[cfg(test)]
pub type Sent = tokio::sync::mpsc::UnboundedReceiver<(Topic, Vec<u8>, bool)>;

#[cfg(test)]
#[async_trait]
impl Publish for tokio::sync::mpsc::UnboundedSender<(Topic, Vec<u8>, bool)> {
    async fn publish(&self, topic: &Topic, payload: Vec<u8>, retain: bool) -> Result<()> {
        self.send((topic.clone(), payload, retain))?;
        Ok(())
    }

    async fn publish_here(&self, topic: &Topic, payload: Vec<u8>, retain: bool) -> Result<()> {
        self.publish(topic, payload, retain).await
    }
}

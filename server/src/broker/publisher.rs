//! Publishing as the server: state the services own (presence, call
//! states, pairing results, refusals reported to clients).

use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use switchboard_broker::{Message, QoS};
use switchboard_protocol::payload::ClientError;
use switchboard_protocol::{ClientId, ErrorCode, Topic};

use super::Core;
use crate::outbound;

/// Made before the broker (the services it starts with publish through
/// it); publishing works once the broker is attached.
#[derive(Clone, Default)]
pub struct Publisher {
    core: Arc<OnceLock<Core>>,
}

impl Publisher {
    pub(super) fn core(&self) -> Option<&Core> {
        self.core.get()
    }

    pub(super) fn attach(&self, core: Core) {
        if self.core.set(core).is_err() {
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

#[async_trait::async_trait]
impl outbound::Publish for Publisher {
    async fn publish(&self, topic: &Topic, payload: Vec<u8>, retain: bool) -> Result<()> {
        let core = self.core.get().context("the broker has not started")?;
        core.publish(message(topic, payload, retain));
        Ok(())
    }
}

//! Messages the server itself publishes: retained state (profiles) and
//! error reports to one client.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{CodecPublish, From, Id, Publish, QoS};
use switchboard_protocol::payload::ClientError;
use switchboard_protocol::{ClientId, ErrorCode, Topic};

use crate::outbound::{self, Publish as _};

/// rmqtt's client id for messages the server sends: `$` cannot begin a
/// real client id of ours.
const SERVER_CLIENT_ID: &str = "$switchboard";

#[derive(Clone)]
pub struct Publisher {
    scx: ServerContext,
}

impl Publisher {
    pub fn new(scx: ServerContext) -> Self {
        Publisher { scx }
    }

    /// The broker's context it publishes into.
    pub fn context(&self) -> ServerContext {
        self.scx.clone()
    }

    /// Tells a client why its publish was refused, on
    /// `clients/<clientId>/errors` (MQTT 3.1.1 has no other way to say it).
    pub async fn report(&self, client: &ClientId, topic: &str, code: ErrorCode, message: String) {
        let body = ClientError {
            topic: topic.to_string(),
            code,
            message,
        };
        let payload = serde_json::to_vec(&body).expect("error report serializes");
        if let Err(e) = self
            .publish(&Topic::ClientErrors(client.clone()), payload, false)
            .await
        {
            tracing::warn!(%client, "could not report a refusal: {e}");
        }
    }
}

#[async_trait::async_trait]
impl outbound::Publish for Publisher {
    /// Retained messages are stored by the retainer (which never expires
    /// them) and go to current subscribers too.
    async fn publish(&self, topic: &Topic, payload: Vec<u8>, retain: bool) -> Result<()> {
        let message = CodecPublish {
            dup: false,
            retain,
            qos: QoS::AtLeastOnce,
            topic: topic.to_string().into(),
            packet_id: None,
            payload: Bytes::from(payload),
            // Never `None`: see `with_properties` in the hooks.
            properties: Some(Default::default()),
        };
        let message = Publish::from(message).create_time(rmqtt::utils::timestamp_millis());
        let from = From::from_system(Id::from(self.scx.node.id(), SERVER_CLIENT_ID.into()));
        SessionState::forwards(&self.scx, from, message, false, None::<Duration>).await?;
        Ok(())
    }
}

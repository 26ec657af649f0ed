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
    /// Goes to current subscribers; a retained one is also kept for later
    /// ones (`retained.rs`), unless the services already hold its state.
    async fn publish(&self, topic: &Topic, payload: Vec<u8>, retain: bool) -> Result<()> {
        let message = message(topic, payload, retain);
        SessionState::forwards(
            &self.scx,
            from_server(&self.scx),
            message,
            false,
            None::<Duration>,
        )
        .await?;
        Ok(())
    }
}

/// A message of the server's, at QoS 1.
pub fn message(topic: &Topic, payload: Vec<u8>, retain: bool) -> Publish {
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
    Publish::from(message).create_time(rmqtt::utils::timestamp_millis())
}

/// Who the server's messages are from.
pub fn from_server(scx: &ServerContext) -> From {
    From::from_system(Id::from(scx.node.id(), SERVER_CLIENT_ID.into()))
}

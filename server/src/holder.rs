//! Work for the node that holds a call (`Call::node`, placed at accept),
//! sent there on the bus by the node a device is connected to: WebRTC
//! signalling for the call's relay room, and robot commands, which the
//! holding node checks against the call's open requests and publishes,
//! so every request, answer and deadline of a call is decided in one
//! place.

use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use switchboard_protocol::payload::WebRtcSignal;
use switchboard_protocol::topic::Direction;
use switchboard_protocol::{ClientId, ErrorCode, Sid, Topic};
use switchboard_relay::{Relay, RelayError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::Publisher;
use crate::bus::Bus;
use crate::outbound::Publish as _;
use crate::refused::Refused;
use crate::services::calls::CallService;
use crate::services::robots::RobotService;

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Held {
    /// A participant's `up` message for the relay room.
    Signal {
        sid: Sid,
        client: ClientId,
        signal: WebRtcSignal,
    },
    /// A request or response on `session/<sid>/<command>/...`, valid
    /// JSON, that passed the topic rules on the sender's node.
    Command {
        from: ClientId,
        topic: String,
        payload: String,
    },
}

impl Held {
    /// Sends it to `node`, the call's; refused when it cannot be sent
    /// (NATS away, or its queue full).
    pub fn send(&self, node: &str, bus: &Bus) -> Result<(), Refused> {
        let bytes = serde_json::to_vec(self).expect("held work serializes");
        match bus.to_holder(node, bytes.into()) {
            true => Ok(()),
            false => Err(Refused::new(
                ErrorCode::Unavailable,
                "the server holding this call cannot be reached now; try again",
            )),
        }
    }
}

/// The services that do the held work on this node.
pub struct Holder {
    pub relay: Option<Relay>,
    pub calls: Arc<CallService>,
    pub robots: Arc<RobotService>,
    pub publisher: Publisher,
}

impl Holder {
    /// Does what other nodes send for the calls this node holds, in
    /// arrival order, until the stop. A refusal is reported to its sender.
    pub async fn run(self, mut queue: mpsc::UnboundedReceiver<Bytes>, stop: CancellationToken) {
        while let Some(bytes) = stop.run_until_cancelled(queue.recv()).await.flatten() {
            match serde_json::from_slice(&bytes) {
                Ok(held) => self.handle(held).await,
                Err(e) => {
                    tracing::warn!("work from another node that does not read ({e}), ignored")
                }
            }
        }
    }

    async fn handle(&self, held: Held) {
        let (from, topic, refused) = match held {
            Held::Signal {
                sid,
                client,
                signal,
            } => {
                let Some(relay) = &self.relay else {
                    return tracing::warn!(
                        "signalling for a relay this node does not run, ignored"
                    );
                };
                let mut signalled = relay.signal(&sid, &client, signal.clone());
                if signalled == Err(RelayError::NoRoom) {
                    // The accept may have reached the device before this
                    // node heard of it: read it, which opens the room.
                    self.calls.recall(&sid, true).await;
                    signalled = relay.signal(&sid, &client, signal);
                }
                let Err(e) = signalled else {
                    return;
                };
                let topic = Topic::WebRtc {
                    sid,
                    client: client.clone(),
                    direction: Direction::Up,
                };
                (client, topic.to_string(), crate::media::refused(e))
            }
            Held::Command {
                from,
                topic,
                payload,
            } => {
                let parsed = Topic::from_str(&topic);
                let Ok(whole @ Topic::Command { sid, command, part }) = &parsed else {
                    return tracing::warn!(
                        topic,
                        "a command from another node on no command topic, ignored"
                    );
                };
                let checked =
                    (self.robots).command_published(sid, command, *part, payload.as_bytes());
                match checked {
                    Ok(()) => {
                        let published = self.publisher.publish(whole, payload.into_bytes(), false);
                        if let Err(e) = published.await {
                            tracing::warn!(topic, "publishing a command: {e:#}");
                        }
                        return;
                    }
                    Err(refused) => (from, topic, refused),
                }
            }
        };
        (self.publisher)
            .report(&from, &topic, refused.code, refused.message)
            .await;
    }
}

//! The media relay at the edges: its settings, the calls it follows,
//! devices' signalling into it, and publishing what it says to devices on
//! `session/<sid>/webrtc/<clientId>/down`.

use switchboard_protocol::payload::CallStateKind;
use switchboard_protocol::topic::Direction;
use switchboard_protocol::{validate, ClientId, ErrorCode, Sid, Topic};
use switchboard_relay::{Outgoing, Relay, RelayError};
use switchboard_signalling::Call;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Publisher;
use crate::bus::Bus;
use crate::holder::Held;
use crate::outbound::Publish as _;
use crate::refused::Refused;
use crate::services::calls::Follow;

/// The relay follows the calls: an accepted call placed on this node
/// opens its room for its two devices, an ended call's closes.
pub struct Rooms {
    pub relay: Relay,
    /// This node's name.
    pub node: String,
    pub tasks: TaskTracker,
}

impl Follow for Rooms {
    fn call_changed(&self, call: &Call) {
        let here = call.node.as_ref() == Some(&self.node);
        match (&call.state, &call.accepted_by) {
            (CallStateKind::Accepted, Some(callee)) if here => self
                .relay
                .open(&call.sid, [call.caller.clone(), callee.clone()]),
            (CallStateKind::Ended, _) => {
                // Closing waits for the connections; the other calls'
                // states need not.
                let (relay, sid) = (self.relay.clone(), call.sid.clone());
                self.tasks.spawn(async move { relay.close(&sid).await });
            }
            _ => {}
        }
    }
}

/// A device's offer, answer or candidate for the relay (the topic rules
/// already made sure it is a participant's own `up`): to this node's
/// relay, or over the bus to `elsewhere`, the node holding the room.
pub fn signal(
    relay: Option<&Relay>,
    elsewhere: Option<(String, &Bus)>,
    sid: &Sid,
    client: &ClientId,
    payload: &[u8],
) -> Result<(), Refused> {
    let signal = validate::webrtc_signal(payload)?;
    let Some(relay) = relay else {
        return Err(Refused::new(
            ErrorCode::NotFound,
            "this server runs no media relay",
        ));
    };
    if let Some((node, bus)) = elsewhere {
        let held = Held::Signal {
            sid: sid.clone(),
            client: client.clone(),
            signal,
        };
        return held.send(&node, bus);
    }
    relay.signal(sid, client, signal).map_err(refused)
}

/// A relay's refusal, as its device is told.
pub fn refused(e: RelayError) -> Refused {
    let code = match e {
        RelayError::Busy => ErrorCode::RateLimited,
        RelayError::NoRoom | RelayError::NotParticipant => ErrorCode::Conflict,
    };
    Refused::new(code, e.to_string())
}

/// Publishes the relay's answers, offers and candidates, and its refusals
/// on the device's error topic, in the order the relay made them, until
/// the stop (no device is connected then).
pub async fn run_publisher(
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    publisher: Publisher,
    stop: CancellationToken,
) {
    while let Some(out) = stop.run_until_cancelled(queue.recv()).await.flatten() {
        match out {
            Outgoing::Signal {
                sid,
                client,
                signal,
            } => {
                let topic = Topic::WebRtc {
                    sid,
                    client,
                    direction: Direction::Down,
                };
                let payload = serde_json::to_vec(&signal).expect("signal serializes");
                if let Err(e) = publisher.publish(&topic, payload, false).await {
                    tracing::warn!(%topic, "publishing a relay message: {e:#}");
                }
            }
            Outgoing::Refused {
                sid,
                client,
                reason,
            } => {
                let topic = Topic::WebRtc {
                    sid,
                    client: client.clone(),
                    direction: Direction::Up,
                };
                publisher
                    .report(&client, &topic.to_string(), ErrorCode::BadRequest, reason)
                    .await;
            }
        }
    }
}

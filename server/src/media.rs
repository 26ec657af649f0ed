//! The media relay at the edges: its settings, and publishing what it says
//! to devices on `session/<sid>/webrtc/<clientId>/down`.

use switchboard_protocol::topic::Direction;
use switchboard_protocol::{ErrorCode, Topic};
use switchboard_relay::{Outgoing, RelayConfig};
use tokio::sync::mpsc;

use crate::broker::Publisher;
use crate::config::Config;

pub fn relay_config(config: &Config) -> RelayConfig {
    RelayConfig {
        bind_ip: config.relay_bind_ip,
        ports: config.relay_port_min.zip(config.relay_port_max),
        nat_1to1_ip: config.relay_nat_1to1_ip,
    }
}

/// Publishes the relay's answers, offers and candidates, and its refusals
/// on the device's error topic, in the order the relay made them.
pub async fn run_publisher(mut queue: mpsc::UnboundedReceiver<Outgoing>, publisher: Publisher) {
    while let Some(out) = queue.recv().await {
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

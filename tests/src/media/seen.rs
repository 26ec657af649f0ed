//! What a `MediaPeer` records for its waits: the events of its peer
//! connection (its candidates, the connection coming up, the tracks the
//! relay forwards to it and the numbered packets on them).

use std::sync::{Arc, Mutex};

use rumqttc::{AsyncClient, QoS};
use serde_json::Value;
use switchboard_sdk::media::candidate_signal;
use tokio::sync::watch;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

use super::wire;

/// What the peer saw, shared with its tasks.
#[derive(Default)]
pub(super) struct Seen {
    /// Numbers of the packets received, in arrival order.
    pub(super) received: Vec<u64>,
    /// Microseconds each took from the sender's write to arrival.
    pub(super) latencies_us: Vec<u64>,
    /// The types of the local candidates (`host`, `relay`, ...).
    pub(super) candidate_types: Vec<String>,
    /// Keyframe requests that reached the sending track.
    pub(super) keyframe_requests: u64,
    /// Error reports on `clients/<me>/errors`.
    pub(super) errors: Vec<Value>,
    /// Answers the relay sent.
    pub(super) answers: u64,
    /// The relay's offers: each one a track the first answer did not carry.
    pub(super) offers: u64,
    /// The tracks the relay forwards to this peer.
    pub(super) tracks: Vec<Arc<dyn TrackRemote>>,
    /// The kinds of the forwarded tracks media arrived on, in order.
    pub(super) media_kinds: Vec<String>,
}

/// The handler of the peer connection's events: it records them in
/// `seen` and sends the local candidates up.
pub(super) struct Events {
    pub(super) mqtt: AsyncClient,
    pub(super) up: String,
    pub(super) seen: Arc<Mutex<Seen>>,
    pub(super) changed: Arc<watch::Sender<u64>>,
    pub(super) connected: watch::Sender<bool>,
}

/// Send times are microseconds since this instant: sender and receiver
/// run in one process, so they share it.
pub(super) fn now_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// Wakes the waits up: `seen` changed.
pub(super) fn bump(changed: &watch::Sender<u64>) {
    changed.send_modify(|n| *n += 1);
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Some(signal) = candidate_signal(&event) else {
            return;
        };
        self.seen
            .lock()
            .unwrap()
            .candidate_types
            .push(event.candidate.typ.to_string());
        let _ = self
            .mqtt
            .publish(&self.up, QoS::AtLeastOnce, false, wire(signal))
            .await;
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(true);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.seen.lock().unwrap().tracks.push(track.clone());
        let seen = self.seen.clone();
        let changed = self.changed.clone();
        tokio::spawn(async move {
            let mut first = true;
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    if std::mem::take(&mut first) {
                        let kind = track.kind().await.to_string();
                        seen.lock().unwrap().media_kinds.push(kind);
                        bump(&changed);
                    }
                    if packet.payload.len() >= 16 {
                        let n = u64::from_be_bytes(packet.payload[..8].try_into().unwrap());
                        let sent = u64::from_be_bytes(packet.payload[8..16].try_into().unwrap());
                        let mut seen = seen.lock().unwrap();
                        seen.received.push(n);
                        seen.latencies_us.push(now_us().saturating_sub(sent));
                        drop(seen);
                        bump(&changed);
                    }
                }
            }
        });
    }
}

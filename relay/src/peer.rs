//! Building one PeerConnection for one participant device, and turning its
//! callbacks into events for the room.

use std::net::SocketAddr;
use std::sync::Arc;

use rtc::interceptor::Slot;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::RTCIceCandidateType;
use switchboard_protocol::payload::IceCandidate;
use switchboard_protocol::ClientId;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, Registry,
};

use crate::feedback::KeyframeFeedback;
use crate::RelayConfig;

/// Past the default interceptors, so they have all read an inbound RTCP
/// packet before this one decides whether the relay sees it.
const FEEDBACK_SLOT: usize = 14_000;

pub enum PeerEvent {
    /// A local candidate to trickle to the device; `None` when gathering
    /// is complete.
    Candidate(ClientId, Option<IceCandidate>),
    Track(ClientId, Arc<dyn TrackRemote>),
    Failed(ClientId),
}

struct Events {
    client: ClientId,
    tx: mpsc::UnboundedSender<PeerEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let candidate = IceCandidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_m_line_index: init.sdp_mline_index,
                };
                let _ = self
                    .tx
                    .send(PeerEvent::Candidate(self.client.clone(), Some(candidate)));
            }
            Err(e) => tracing::warn!(client = %self.client, "unserializable candidate: {e}"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self
                .tx
                .send(PeerEvent::Candidate(self.client.clone(), None));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(client = %self.client, %state, "relay peer connection");
        if state == RTCPeerConnectionState::Failed {
            let _ = self.tx.send(PeerEvent::Failed(self.client.clone()));
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(PeerEvent::Track(self.client.clone(), track));
    }
}

/// A PeerConnection bound to `port` (0: any) on the configured address.
pub async fn build(
    config: &RelayConfig,
    port: u16,
    client: ClientId,
    tx: mpsc::UnboundedSender<PeerEvent>,
) -> Result<Arc<dyn PeerConnection>, webrtc::error::Error> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?
        .with(Slot::from(FEEDBACK_SLOT), KeyframeFeedback::default());
    let mut settings = SettingEngineBuilder::new();
    if let Some(ip) = config.nat_1to1_ip {
        settings = settings.with_nat_1to1_ips(vec![ip.to_string()], RTCIceCandidateType::Host);
    }
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings.build())
        .with_handler(Arc::new(Events { client, tx }))
        .with_udp_addrs(vec![SocketAddr::new(config.bind_ip, port)])
        .build()
        .await?;
    Ok(Arc::new(pc))
}

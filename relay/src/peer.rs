//! Opening one PeerConnection for one participant device on a port from
//! the relay's range, and turning its callbacks into events for the room.

use std::net::SocketAddr;
use std::sync::Arc;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Slot;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{RTCDtlsRole, RTCIceCandidateType};
use switchboard_keyframe_feedback::KeyframeFeedback;
use switchboard_protocol::payload::IceCandidate;
use switchboard_protocol::ClientId;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, Registry,
};

use crate::error::SignalError;
use crate::{RelayConfig, Shared};

/// Something one PeerConnection did. `generation` tells a device's
/// current connection from one it replaced, whose late events are ignored.
pub struct PeerEvent {
    pub client: ClientId,
    pub generation: u64,
    pub what: What,
}

pub enum What {
    /// A local candidate to trickle to the device; `None` when gathering
    /// is complete.
    Candidate(Option<IceCandidate>),
    Track(Arc<dyn TrackRemote>),
    /// Connected (again): media written before this was lost.
    Connected,
    Failed,
}

struct Events {
    client: ClientId,
    generation: u64,
    tx: mpsc::UnboundedSender<PeerEvent>,
}

impl Events {
    fn send(&self, what: What) {
        let _ = self.tx.send(PeerEvent {
            client: self.client.clone(),
            generation: self.generation,
            what,
        });
    }
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
                    username_fragment: init.username_fragment,
                };
                self.send(What::Candidate(Some(candidate)));
            }
            Err(e) => tracing::warn!(client = %self.client, "unserializable candidate: {e}"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.send(What::Candidate(None));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(client = %self.client, %state, "relay peer connection");
        match state {
            RTCPeerConnectionState::Connected => self.send(What::Connected),
            RTCPeerConnectionState::Failed => self.send(What::Failed),
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.send(What::Track(track));
    }
}

/// Opens a device's connection on a port from the relay's range (any port
/// when it has none), and returns it with its port. A port another process
/// holds is skipped: up to 8 tries, fewer in a smaller range.
pub async fn open(
    shared: &Shared,
    who: (ClientId, u64),
    events: &mpsc::UnboundedSender<PeerEvent>,
) -> Result<(Arc<dyn PeerConnection>, Option<u16>), SignalError> {
    let ports = &shared.ports;
    let mut attempts = ports
        .lock()
        .expect("ports lock")
        .as_ref()
        .map_or(1, |r| r.size().min(8));
    loop {
        let port = match ports.lock().expect("ports lock").as_mut() {
            Some(range) => Some(range.take().ok_or(SignalError::NoFreePort)?),
            None => None,
        };
        let built = build(
            &shared.config,
            port.unwrap_or(0),
            who.clone(),
            events.clone(),
        );
        match built.await {
            Ok(pc) => return Ok((pc, port)),
            Err(e) => {
                tracing::warn!(?port, "relay peer connection: {e}");
                release_port(shared, port);
                attempts -= 1;
                if attempts == 0 {
                    return Err(SignalError::CannotConnect(e));
                }
            }
        }
    }
}

/// Gives a closed connection's port back to the range.
pub fn release_port(shared: &Shared, port: Option<u16>) {
    if let (Some(port), Some(range)) = (port, shared.ports.lock().expect("ports lock").as_mut()) {
        range.release(port);
    }
}

/// A PeerConnection bound to `port` (0: any) on the configured address.
async fn build(
    config: &RelayConfig,
    port: u16,
    (client, generation): (ClientId, u64),
    tx: mpsc::UnboundedSender<PeerEvent>,
) -> Result<Arc<dyn PeerConnection>, webrtc::error::Error> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?.with(
        Slot::from(switchboard_keyframe_feedback::SLOT),
        KeyframeFeedback::default(),
    );
    // mDNS would open a multicast socket on every interface per
    // connection, outside the port range; the relay's candidates are IPs.
    // The device starts DTLS as soon as its ICE check succeeds; as the
    // client, webrtc 0.21 held its first flight until its next ICE tick
    // (about 140 ms on loopback).
    let mut settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_answering_dtls_role(RTCDtlsRole::Server);
    if let Some(ip) = config.nat_1to1_ip {
        settings = settings.with_nat_1to1_ips(vec![ip.to_string()], RTCIceCandidateType::Host);
    }
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings.build())
        .with_handler(Arc::new(Events {
            client,
            generation,
            tx,
        }))
        .with_udp_addrs(vec![SocketAddr::new(config.bind_ip, port)])
        .build()
        .await?;
    Ok(Arc::new(pc))
}

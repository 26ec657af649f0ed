//! A headless WebRTC peer on the webrtc crate (feature `media`), for robots
//! and tests: it joins a call's media through the relay with the session's
//! signalling, sends RTP on a VP8 track and hands over what it receives.
//! Mobile apps use their platform's WebRTC with `Session::send_signal` and
//! `Event::Signal` instead.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rtc::interceptor::Slot;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use switchboard_keyframe_feedback::{asks_for_keyframe, KeyframeFeedback};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, Registry,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::error::SdkError;
use crate::session::Session;
use crate::types::{IceCandidate, IceServer, Signal};

fn media_error(e: impl std::fmt::Display) -> SdkError {
    SdkError::Server {
        reason: format!("webrtc: {e}"),
    }
}

#[derive(Default, Clone)]
pub struct PeerOptions {
    pub ice_servers: Vec<RTCIceServer>,
    /// Only relayed (TURN) candidates, as behind a strict NAT.
    pub relay_only: bool,
    /// The local UDP address to gather host candidates on (`ip:0`).
    pub bind: Option<String>,
}

/// The session's ICE servers (`Session::ice_servers`) as the webrtc
/// crate takes them.
pub fn ice_servers(servers: &[IceServer]) -> Vec<RTCIceServer> {
    servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect()
}

/// A PeerConnection with the default codecs and interceptors, plus one that
/// hands keyframe requests (PLI, FIR) to the sending track.
pub async fn peer_connection(
    options: &PeerOptions,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>, SdkError> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().map_err(media_error)?;
    let registry = register_default_interceptors(Registry::new(), &mut media)
        .map_err(media_error)?
        .with(
            Slot::from(switchboard_keyframe_feedback::SLOT),
            KeyframeFeedback::default(),
        );
    let mut config = RTCConfigurationBuilder::new().with_ice_servers(options.ice_servers.clone());
    if options.relay_only {
        config = config.with_ice_transport_policy(RTCIceTransportPolicy::Relay);
    }
    let bind = options.bind.clone().unwrap_or_else(|| "0.0.0.0:0".into());
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config.build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![bind])
        .build()
        .await
        .map_err(media_error)?;
    Ok(Arc::new(pc))
}

/// A VP8 track with its own SSRC.
pub fn video_track(name: &str, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("{name}-stream"),
        format!("{name}-video"),
        "camera".into(),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90_000,
                ..Default::default()
            },
            ..Default::default()
        }],
    )))
}

/// Applies one signal from the relay; returns the answer to send back when
/// it was an offer.
pub async fn apply(
    pc: &Arc<dyn PeerConnection>,
    signal: Signal,
) -> Result<Option<Signal>, SdkError> {
    match signal {
        Signal::Answer { sdp } => {
            let answer = RTCSessionDescription::answer(sdp).map_err(media_error)?;
            pc.set_remote_description(answer)
                .await
                .map_err(media_error)?;
            Ok(None)
        }
        Signal::Offer { sdp } => {
            let offer = RTCSessionDescription::offer(sdp).map_err(media_error)?;
            pc.set_remote_description(offer)
                .await
                .map_err(media_error)?;
            let answer = pc.create_answer(None).await.map_err(media_error)?;
            pc.set_local_description(answer.clone())
                .await
                .map_err(media_error)?;
            Ok(Some(Signal::Answer { sdp: answer.sdp }))
        }
        // The end of the relay's candidates needs nothing.
        Signal::Candidate { candidate: None } => Ok(None),
        Signal::Candidate { candidate: Some(c) } => {
            let init = RTCIceCandidateInit {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_m_line_index,
                username_fragment: c.username_fragment,
                ..Default::default()
            };
            pc.add_ice_candidate(init).await.map_err(media_error)?;
            Ok(None)
        }
    }
}

/// A local candidate as a signal for the relay.
pub fn candidate_signal(event: &RTCPeerConnectionIceEvent) -> Option<Signal> {
    let init = event.candidate.to_json().ok()?;
    Some(Signal::Candidate {
        candidate: Some(IceCandidate {
            candidate: init.candidate,
            sdp_mid: init.sdp_mid,
            sdp_m_line_index: init.sdp_mline_index,
            username_fragment: init.username_fragment,
        }),
    })
}

/// What the peer reports.
#[derive(Debug)]
pub enum MediaEvent {
    /// The connection to the relay is up.
    Connected,
    /// The connection to the relay failed.
    Failed,
    /// A packet of the other device's media; `kind` is `video` or `audio`.
    Rtp { kind: String, packet: rtp::Packet },
    /// The relay asks for a keyframe of the video this peer sends.
    KeyframeRequested,
}

struct Handler {
    session: Arc<Session>,
    sid: String,
    events: mpsc::UnboundedSender<MediaEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Some(signal) = candidate_signal(&event) {
            let _ = self.session.send_signal(self.sid.clone(), signal);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let event = match state {
            RTCPeerConnectionState::Connected => MediaEvent::Connected,
            RTCPeerConnectionState::Failed => MediaEvent::Failed,
            _ => return,
        };
        let _ = self.events.send(event);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let events = self.events.clone();
        tokio::spawn(async move {
            let kind = track.kind().await.to_string();
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    let rtp = MediaEvent::Rtp {
                        kind: kind.clone(),
                        packet,
                    };
                    if events.send(rtp).is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// This device's media in one call: a VP8 track out, the other device's
/// tracks in.
pub struct MediaPeer {
    pc: Arc<dyn PeerConnection>,
    session: Arc<Session>,
    sid: String,
    video: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    sequence: AtomicU16,
}

impl MediaPeer {
    /// Joins the media of the accepted call `sid` and offers at once. Feed
    /// it the session's `Event::Signal`s for this call with `on_signal`.
    pub async fn join(
        session: Arc<Session>,
        sid: String,
        options: PeerOptions,
    ) -> Result<(MediaPeer, mpsc::UnboundedReceiver<MediaEvent>), SdkError> {
        let (events, received) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler {
            session: session.clone(),
            sid: sid.clone(),
            events: events.clone(),
        });
        let pc = peer_connection(&options, handler).await?;
        let ssrc = rand::random::<u32>();
        let video = video_track(&session.client_id(), ssrc);
        let sender = pc
            .add_track(video.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(media_error)?;
        {
            // Keyframe requests from the relay reach the sending track.
            let video = video.clone();
            tokio::spawn(async move {
                while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = video.poll().await {
                    if packets.iter().any(|p| asks_for_keyframe(p.as_ref()))
                        && events.send(MediaEvent::KeyframeRequested).is_err()
                    {
                        return;
                    }
                }
            });
        }
        let offer = pc.create_offer(None).await.map_err(media_error)?;
        pc.set_local_description(offer.clone())
            .await
            .map_err(media_error)?;
        session.send_signal(sid.clone(), Signal::Offer { sdp: offer.sdp })?;
        let peer = MediaPeer {
            pc,
            session,
            sid,
            video,
            sender,
            ssrc,
            sequence: AtomicU16::new(0),
        };
        Ok((peer, received))
    }

    /// Follows one of the relay's signals (answering its offers).
    pub async fn on_signal(&self, signal: Signal) -> Result<(), SdkError> {
        if let Some(answer) = apply(&self.pc, signal).await? {
            self.session.send_signal(self.sid.clone(), answer)?;
        }
        Ok(())
    }

    /// Sends one VP8 RTP packet (`timestamp` in the 90 kHz clock).
    pub async fn send_video(
        &self,
        payload: Bytes,
        timestamp: u32,
        marker: bool,
    ) -> Result<(), SdkError> {
        let payload_type = self
            .sender
            .get_parameters()
            .await
            .map_err(media_error)?
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.payload_type)
            .ok_or_else(|| media_error("no codec negotiated yet"))?;
        let packet = rtp::Packet {
            header: rtp::Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: self.sequence.fetch_add(1, Ordering::Relaxed),
                timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload,
        };
        self.video.write_rtp(packet).await.map_err(media_error)
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

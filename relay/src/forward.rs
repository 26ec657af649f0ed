//! Forwarding RTP between devices. Each inbound track is read onto a
//! broadcast bus (a `Source`); each device receiving it has its own track
//! (an `Outbound`) with a writer task that takes packets off the bus,
//! rewrites SSRC and payload type, and writes them, and a reader that turns
//! the device's keyframe requests into one to the sender. A slow receiver
//! skips ahead (the bus drops its oldest packets) instead of slowing the
//! sender's other receivers.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use switchboard_keyframe_feedback::asks_for_keyframe;
use switchboard_protocol::ClientId;
use tokio::sync::broadcast;
use tokio::task::{AbortHandle, JoinSet};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::RtpSender;

use crate::pli::Pli;
use crate::Shared;

/// Packets a slow receiver may fall behind before it skips ahead.
const BUS_DEPTH: usize = 512;

/// A track a device sends, fanned out to the others through `bus`.
pub struct Source {
    pub id: u64,
    pub from: ClientId,
    pub kind: RtpCodecKind,
    pub codec: RTCRtpCodec,
    bus: broadcast::Sender<rtp::Packet>,
    pli: Arc<Pli>,
}

impl Source {
    /// A device's track, not yet read: `forward` starts that, once its
    /// receivers are subscribed to the bus, so they get its first packets
    /// (a keyframe). `None` for a track that tells no SSRC or codec.
    pub async fn new(
        id: u64,
        from: ClientId,
        track: &Arc<dyn TrackRemote>,
        shared: &Arc<Shared>,
    ) -> Option<Source> {
        let media_ssrc = track.ssrcs().await.first().copied()?;
        let codec = track.codec(media_ssrc).await?;
        let kind = track.kind().await;
        let (bus, _) = broadcast::channel(BUS_DEPTH);
        let pli = Pli::new(track.clone(), media_ssrc, shared.clone());
        Some(Source {
            id,
            from,
            kind,
            codec,
            bus,
            pli,
        })
    }

    /// Reads the track onto the bus.
    pub fn forward(&self, track: Arc<dyn TrackRemote>, tasks: &mut JoinSet<()>) {
        let onto_bus = self.bus.clone();
        tasks.spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    // No receiver yet is not an error: nobody is watching.
                    let _ = onto_bus.send(packet);
                }
            }
        });
    }

    /// Asks the sender for a keyframe, for a receiver that cannot decode
    /// without one (audio has none).
    pub async fn ask_keyframe(&self) {
        if self.kind == RtpCodecKind::Video {
            self.pli.ask().await;
        }
    }

    pub fn mime(&self) -> &str {
        &self.codec.mime_type
    }
}

/// A track on a receiving device's connection, carrying one source.
/// One made for a device's first offer carries none until a source of
/// its kind and codec comes.
pub struct Outbound {
    sender: Arc<dyn RtpSender>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    kind: RtpCodecKind,
    mime: String,
    /// Set once the receiver agreed to the track: packets before that
    /// would reach it as an undeclared stream.
    ready: Arc<AtomicBool>,
    /// Its writer and its keyframe-request reader, once it carries a source.
    tasks: Vec<AbortHandle>,
}

impl Outbound {
    /// Adds a track of `kind` in `codec`, from the device `from`, to a
    /// receiver's connection, with its own SSRC. It carries nothing yet.
    pub async fn add(
        pc: &dyn PeerConnection,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        from: &ClientId,
    ) -> Result<Outbound, webrtc::error::Error> {
        let ssrc = next_ssrc();
        let stream = from.to_string();
        let mime = codec.mime_type.clone();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream.clone(),
            format!("{stream}-{ssrc:x}"),
            stream,
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
        Ok(Outbound {
            sender,
            track,
            ssrc,
            kind,
            mime,
            ready: Arc::default(),
            tasks: Vec::new(),
        })
    }

    pub fn kind(&self) -> RtpCodecKind {
        self.kind
    }

    /// Whether it can carry `source`: the kind and codec the receiver
    /// agreed to.
    pub fn fits(&self, source: &Source) -> bool {
        self.kind == source.kind && self.mime.eq_ignore_ascii_case(source.mime())
    }

    /// Forwards `source` on it from now on, rewriting SSRC and payload
    /// type to the receiver's; nothing is written before `ready`.
    pub fn carry(&mut self, source: &Source, shared: &Arc<Shared>, tasks: &mut JoinSet<()>) {
        let ssrc = self.ssrc;
        let mime = source.codec.mime_type.clone();
        let mut packets = source.bus.subscribe();
        let shared = shared.clone();
        let writer = self.track.clone();
        let negotiated = self.sender.clone();
        let is_ready = self.ready.clone();
        let writing = tasks.spawn(async move {
            let mut payload_type = None;
            loop {
                let mut packet = match packets.recv().await {
                    Ok(packet) => packet,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if !is_ready.load(Ordering::Relaxed) {
                    continue;
                }
                if payload_type.is_none() {
                    payload_type = negotiated_payload_type(&negotiated, &mime).await;
                }
                let Some(pt) = payload_type else {
                    continue; // not negotiated yet
                };
                let bytes = packet.payload.len() as u64;
                rewrite(&mut packet, ssrc, pt);
                if writer.write_rtp(packet).await.is_ok() {
                    shared.metrics.packets_forwarded.inc();
                    shared.metrics.bytes_forwarded.inc_by(bytes);
                }
            }
        });
        let pli = source.pli.clone();
        let out = self.track.clone();
        let asking = tasks.spawn(async move {
            while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = out.poll().await {
                if packets.iter().any(|p| asks_for_keyframe(p.as_ref())) {
                    pli.ask().await;
                }
            }
        });
        self.tasks = vec![writing, asking];
    }

    /// The receiver agreed to the track: its packets flow from now on.
    pub fn ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.tasks.iter().for_each(AbortHandle::abort);
    }

    /// Stops forwarding and takes the track off the receiver's connection.
    pub async fn remove(self, pc: &dyn PeerConnection) {
        self.stop();
        let _ = pc.remove_track(&self.sender).await;
    }
}

/// The payload type `sender`'s device chose for `mime`.
async fn negotiated_payload_type(sender: &Arc<dyn RtpSender>, mime: &str) -> Option<u8> {
    let parameters = sender.get_parameters().await.ok()?;
    parameters
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
}

/// Makes a sender's packet the relay's own for one receiver: its SSRC and
/// payload type, and no header extensions (their ids were negotiated with
/// the sender, not the receiver; the relay's own interceptors add theirs).
fn rewrite(packet: &mut rtp::Packet, ssrc: u32, payload_type: u8) {
    packet.header.ssrc = ssrc;
    packet.header.payload_type = payload_type;
    packet.header.extension = false;
    packet.header.extensions.clear();
    packet.header.extensions_padding = 0;
}

fn next_ssrc() -> u32 {
    // Unique within the process, which is all a receiver needs: each of
    // its incoming streams has a distinct SSRC.
    static NEXT: AtomicU32 = AtomicU32::new(0x5b00_0000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn rewrite_takes_the_receivers_ssrc_and_payload_type_and_keeps_the_media() {
        let mut packet = rtp::Packet {
            header: rtp::Header {
                version: 2,
                marker: true,
                payload_type: 96,
                sequence_number: 7,
                timestamp: 9000,
                ssrc: 1111,
                ..Default::default()
            },
            payload: Bytes::from_static(b"frame"),
        };
        packet
            .header
            .set_extension(3, Bytes::from_static(&[1, 2]))
            .unwrap();
        rewrite(&mut packet, 2222, 102);
        assert_eq!(packet.header.ssrc, 2222);
        assert_eq!(packet.header.payload_type, 102);
        assert!(!packet.header.extension && packet.header.extensions.is_empty());
        assert_eq!(
            (
                packet.header.sequence_number,
                packet.header.timestamp,
                packet.header.marker
            ),
            (7, 9000, true)
        );
        assert_eq!(&packet.payload[..], b"frame");
    }
}

//! A headless WebRTC peer (the webrtc crate) that takes part in a call's
//! media through the relay, signalling over MQTT as a phone would: it
//! offers on `session/<sid>/webrtc/<me>/up`, follows the relay's answers,
//! offers and candidates on `.../down`, sends one VP8 track of numbered RTP
//! packets and records the numbers it receives. It checks the wire
//! contract, so it signals with a plain MQTT client; the PeerConnection and
//! the signal handling are the SDK's (`switchboard_sdk::media`).

mod seen;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};
use switchboard_keyframe_feedback::asks_for_keyframe;
use switchboard_protocol::payload::WebRtcSignal;
pub use switchboard_sdk::media::PeerOptions;
use switchboard_sdk::media::{apply, peer_connection, video_track};
use switchboard_sdk::Signal;
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::RtpSender;

use crate::mqtt::{granted, Client, Incoming, WAIT};
use seen::{bump, now_us, Events, Seen};

pub struct MediaPeer {
    pc: Arc<dyn PeerConnection>,
    mqtt: AsyncClient,
    up: String,
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    seen: Arc<Mutex<Seen>>,
    /// Bumped on every change of `seen`, so waits are for events.
    changed: watch::Receiver<u64>,
    connected: watch::Receiver<bool>,
    signalling: tokio::task::JoinHandle<()>,
}

/// Where device `client_id` sends its signals for call `sid`.
pub fn up_topic(sid: &str, client_id: &str) -> String {
    format!("session/{sid}/webrtc/{client_id}/up")
}

/// Where the relay sends its signals for device `client_id` in call `sid`.
pub fn down_topic(sid: &str, client_id: &str) -> String {
    format!("session/{sid}/webrtc/{client_id}/down")
}

impl MediaPeer {
    /// Joins the media of the accepted call `sid` as the device logged in
    /// on `mqtt` (whose client id is `client_id`), and offers at once.
    pub async fn join(
        mut mqtt: Client,
        sid: &str,
        client_id: &str,
        options: PeerOptions,
    ) -> Result<MediaPeer> {
        let up = up_topic(sid, client_id);
        let down = down_topic(sid, client_id);
        let errors = format!("clients/{client_id}/errors");
        for filter in [&down, &errors] {
            let codes = mqtt.subscribe(filter).await?;
            if !granted(&codes) {
                bail!("subscribing {filter}: {codes:?}");
            }
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (changed_tx, changed) = watch::channel(0);
        let changed_tx = Arc::new(changed_tx);
        let (connected_tx, connected) = watch::channel(false);

        let events = Events {
            mqtt: mqtt.client.clone(),
            up: up.clone(),
            seen: seen.clone(),
            changed: changed_tx.clone(),
            connected: connected_tx,
        };
        let options = PeerOptions {
            bind: Some("127.0.0.1:0".into()),
            ..options
        };
        let pc = peer_connection(&options, Arc::new(events)).await?;
        let ssrc = rand::random::<u32>();
        let track = video_track(client_id, ssrc);
        let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
        {
            // Keyframe requests the relay forwards reach the sending track.
            let track = track.clone();
            let seen = seen.clone();
            let changed = changed_tx.clone();
            tokio::spawn(async move {
                while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = track.poll().await {
                    if packets.iter().any(|p| asks_for_keyframe(p.as_ref())) {
                        seen.lock().unwrap().keyframe_requests += 1;
                        bump(&changed);
                    }
                }
            });
        }

        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer.clone()).await?;
        let message = json!({"type": "offer", "sdp": offer.sdp});
        mqtt.publish_json(&up, &message).await?;

        let mqtt_sender = mqtt.client.clone();
        let up_topic = up.clone();
        let signalling = {
            let pc = pc.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(incoming) = mqtt.recv().await {
                    let Incoming::Publish { topic, payload, .. } = incoming else {
                        continue;
                    };
                    let message: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                    if topic == errors {
                        seen.lock().unwrap().errors.push(message);
                    } else if topic == down {
                        if let Err(e) = follow(&pc, &mqtt, &up, &message, &seen).await {
                            seen.lock()
                                .unwrap()
                                .errors
                                .push(json!({"peer": e.to_string()}));
                        }
                    }
                    bump(&changed_tx);
                }
            })
        };
        Ok(MediaPeer {
            pc,
            mqtt: mqtt_sender,
            up: up_topic,
            track,
            sender,
            ssrc,
            seen,
            changed,
            connected,
            signalling,
        })
    }

    pub async fn connected(&mut self) -> Result<()> {
        tokio::time::timeout(WAIT, self.connected.wait_for(|c| *c))
            .await
            .map_err(|_| anyhow!("not connected within {WAIT:?}"))??;
        Ok(())
    }

    /// Waits until `done` holds for what the peer saw.
    async fn until<T>(&mut self, within: Duration, done: impl Fn(&Seen) -> Option<T>) -> Result<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(t) = done(&self.seen.lock().unwrap()) {
                return Ok(t);
            }
            tokio::time::timeout_at(deadline, self.changed.changed())
                .await
                .map_err(|_| anyhow!("not seen within {within:?}"))??;
        }
    }

    /// Sends packets numbered `numbers`, one every `gap`.
    pub async fn send_numbered(&self, numbers: std::ops::Range<u64>, gap: Duration) -> Result<()> {
        let payload_type = self
            .sender
            .get_parameters()
            .await?
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.payload_type)
            .context("no codec negotiated")?;
        let filler = [0x5au8; 900];
        now_us();
        let mut tick = tokio::time::interval(gap);
        for n in numbers {
            tick.tick().await;
            let mut payload = BytesMut::with_capacity(16 + filler.len());
            payload.put_u64(n);
            payload.put_u64(now_us());
            payload.put_slice(&filler);
            let packet = rtp::Packet {
                header: rtp::Header {
                    version: 2,
                    marker: true,
                    payload_type,
                    sequence_number: n as u16,
                    timestamp: (n * 3000) as u32,
                    ssrc: self.ssrc,
                    ..Default::default()
                },
                payload: Bytes::from(payload),
            };
            self.track.write_rtp(packet).await?;
        }
        Ok(())
    }

    /// The numbers received from `first` on, once `last` arrived or after
    /// `within`.
    pub async fn received_through(&mut self, first: u64, last: u64, within: Duration) -> Vec<u64> {
        let _ = self
            .until(within, |s| s.received.contains(&last).then_some(()))
            .await;
        let seen = self.seen.lock().unwrap();
        seen.received
            .iter()
            .copied()
            .filter(|n| *n >= first)
            .collect()
    }

    /// Arrival latencies so far, taken away.
    pub fn take_latencies_us(&self) -> Vec<u64> {
        std::mem::take(&mut self.seen.lock().unwrap().latencies_us)
    }

    /// Whether a packet numbered `first` or more arrived.
    pub fn received_from(&self, first: u64) -> bool {
        self.seen
            .lock()
            .unwrap()
            .received
            .iter()
            .any(|n| *n >= first)
    }

    pub fn received_count(&self) -> usize {
        self.seen.lock().unwrap().received.len()
    }

    pub async fn received_any(&mut self) -> Result<()> {
        self.until(WAIT, |s| (!s.received.is_empty()).then_some(()))
            .await
    }

    /// Keyframe requests that reached the sending track so far.
    pub fn keyframe_requests(&self) -> u64 {
        self.seen.lock().unwrap().keyframe_requests
    }

    /// Waits until more than `after` keyframe requests reached the sending
    /// track, and returns how many did.
    pub async fn keyframe_requests_above(&mut self, after: u64) -> Result<u64> {
        self.until(WAIT, |s| {
            (s.keyframe_requests > after).then_some(s.keyframe_requests)
        })
        .await
    }

    /// Adds an Opus track mid-call and offers it to the relay, as an app
    /// that turns its microphone on does.
    pub async fn add_audio_and_offer(&self) -> Result<()> {
        let ssrc = rand::random::<u32>();
        let audio = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "microphone-stream".into(),
            "microphone".into(),
            "microphone".into(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.to_owned(),
                    clock_rate: 48_000,
                    channels: 2,
                    ..Default::default()
                },
                ..Default::default()
            }],
        )));
        let sender = self
            .pc
            .add_track(audio.clone() as Arc<dyn TrackLocal>)
            .await?;
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer.clone()).await?;
        self.publish(&self.up, json!({"type": "offer", "sdp": offer.sdp}))
            .await?;
        // Once answered, send a little audio so the relay sees the track.
        let answers = self.answers();
        let seen = self.seen.clone();
        let mut changed = self.changed.clone();
        tokio::spawn(async move {
            while seen.lock().unwrap().answers == answers {
                if changed.changed().await.is_err() {
                    return;
                }
            }
            let Ok(parameters) = sender.get_parameters().await else {
                return;
            };
            let Some(pt) = parameters
                .rtp_parameters
                .codecs
                .first()
                .map(|c| c.payload_type)
            else {
                return;
            };
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for n in 0..250u16 {
                tick.tick().await;
                let packet = rtp::Packet {
                    header: rtp::Header {
                        version: 2,
                        payload_type: pt,
                        sequence_number: n,
                        timestamp: u32::from(n) * 960,
                        ssrc,
                        ..Default::default()
                    },
                    payload: Bytes::from_static(&[0xf8, 0xff, 0xfe]),
                };
                if audio.write_rtp(packet).await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// The kinds of the forwarded tracks media arrived on, once it arrived
    /// on `count` of them.
    pub async fn forwarded_kinds(&mut self, count: usize) -> Result<Vec<String>> {
        let mut kinds = self
            .until(WAIT, |s| {
                (s.media_kinds.len() >= count).then(|| s.media_kinds.clone())
            })
            .await?;
        kinds.sort();
        Ok(kinds)
    }

    /// Asks the relay for a keyframe of every track it forwards here, as a
    /// decoder that lost its picture does.
    pub async fn ask_for_keyframes(&self) -> Result<()> {
        let tracks = self.seen.lock().unwrap().tracks.clone();
        if tracks.is_empty() {
            bail!("no forwarded track to ask about");
        }
        for track in tracks {
            for ssrc in track.ssrcs().await {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
                track.write_rtcp(vec![Box::new(pli)]).await?;
            }
        }
        Ok(())
    }

    /// Everything refused so far: the server's reports and the relay
    /// messages this peer could not take.
    pub fn errors(&self) -> Vec<Value> {
        self.seen.lock().unwrap().errors.clone()
    }

    pub async fn next_error(&mut self) -> Result<Value> {
        self.until(WAIT, |s| s.errors.first().cloned()).await
    }

    pub fn answers(&self) -> u64 {
        self.seen.lock().unwrap().answers
    }

    pub fn offers(&self) -> u64 {
        self.seen.lock().unwrap().offers
    }

    pub fn candidate_types(&self) -> Vec<String> {
        self.seen.lock().unwrap().candidate_types.clone()
    }

    /// Publishes on the peer's MQTT connection (a call action, say).
    pub async fn publish(&self, topic: &str, payload: Value) -> Result<()> {
        self.mqtt
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await?;
        Ok(())
    }

    pub async fn close(self) {
        self.signalling.abort();
        let _ = self.pc.close().await;
    }
}

/// A signal as the wire carries it.
fn wire(signal: Signal) -> String {
    serde_json::to_string(&WebRtcSignal::from(signal)).unwrap_or_default()
}

/// Applies one message from the relay, answering its offers.
async fn follow(
    pc: &Arc<dyn PeerConnection>,
    mqtt: &Client,
    up: &str,
    message: &Value,
    seen: &Mutex<Seen>,
) -> Result<()> {
    let signal = Signal::from(serde_json::from_value::<WebRtcSignal>(message.clone())?);
    if let Signal::Candidate { candidate: Some(c) } = &signal {
        // A browser refuses a candidate whose mid names no m-section.
        anyhow::ensure!(
            c.sdp_mid.as_deref().is_some_and(|mid| !mid.is_empty()),
            "the relay sent a candidate without a valid sdpMid: {message}"
        );
    }
    let (is_answer, is_offer) = (
        matches!(signal, Signal::Answer { .. }),
        matches!(signal, Signal::Offer { .. }),
    );
    if let Some(answer) = apply(pc, signal).await? {
        mqtt.publish(up, wire(answer).as_bytes(), false).await?;
    }
    let mut seen = seen.lock().unwrap();
    seen.answers += u64::from(is_answer);
    seen.offers += u64::from(is_offer);
    Ok(())
}

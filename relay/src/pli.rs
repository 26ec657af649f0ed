//! Asking one sender for a keyframe: an RTCP PLI on its track, no more
//! often than `keyframes::KeyframeRequests` allows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::media_stream::track_remote::TrackRemote;

use crate::keyframes::{KeyframeRequests, Verdict};
use crate::Shared;

/// Keyframes cost many packets: ask one sender at most twice a second.
const KEYFRAME_GAP_MS: u64 = 500;

/// Keyframe requests for one inbound track.
pub struct Pli {
    track: Arc<dyn TrackRemote>,
    media_ssrc: u32,
    limit: Mutex<KeyframeRequests>,
    /// The pure limit counts milliseconds from here.
    started: Instant,
    shared: Arc<Shared>,
}

impl Pli {
    pub fn new(track: Arc<dyn TrackRemote>, media_ssrc: u32, shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Pli {
            track,
            media_ssrc,
            limit: Mutex::new(KeyframeRequests::new(KEYFRAME_GAP_MS)),
            started: Instant::now(),
            shared,
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn send(&self) {
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: self.media_ssrc,
        };
        if self.track.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
            self.shared.metrics.keyframe_requests.inc();
        }
    }

    /// Asks now, or once the gap since the last request has passed.
    pub async fn ask(self: &Arc<Self>) {
        let verdict = self.limit.lock().expect("keyframe lock").ask(self.now_ms());
        match verdict {
            Verdict::Send => self.send().await,
            Verdict::Later(at) => {
                let me = self.clone();
                tokio::spawn(async move {
                    let wait = at.saturating_sub(me.now_ms());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let due = me.limit.lock().expect("keyframe lock").due(me.now_ms());
                    if due {
                        me.send().await;
                    }
                });
            }
        }
    }
}

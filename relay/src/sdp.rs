//! The offer/answer and candidate steps on one device's PeerConnection,
//! each failure named as the refusal the device is sent. Which step comes
//! when is `negotiation`'s to say.

use switchboard_protocol::payload::IceCandidate;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

use crate::error::SignalError;

/// Applies a device's offer, after rolling the relay's own offer back when
/// `roll_back`.
pub async fn apply_offer(
    pc: &dyn PeerConnection,
    offer: RTCSessionDescription,
    roll_back: bool,
) -> Result<(), SignalError> {
    if roll_back {
        let rollback = RTCSessionDescription::rollback(None).map_err(SignalError::RollBack)?;
        pc.set_local_description(rollback)
            .await
            .map_err(SignalError::RollBack)?;
    }
    pc.set_remote_description(offer)
        .await
        .map_err(SignalError::OfferNotApplicable)
}

/// Makes the relay's answer to the applied offer and sets it.
pub async fn answer(pc: &dyn PeerConnection) -> Result<String, SignalError> {
    let answer = pc
        .create_answer(None)
        .await
        .map_err(SignalError::NoAnswer)?;
    pc.set_local_description(answer.clone())
        .await
        .map_err(SignalError::Answering)?;
    Ok(answer.sdp)
}

/// Applies the device's answer to the relay's offer.
pub async fn apply_answer(
    pc: &dyn PeerConnection,
    answer: RTCSessionDescription,
) -> Result<(), SignalError> {
    pc.set_remote_description(answer)
        .await
        .map_err(SignalError::AnswerNotApplicable)
}

/// Makes the relay's offer and sets it; the room only logs a failure, as
/// no device message caused it.
pub async fn offer(pc: &dyn PeerConnection) -> Result<String, webrtc::error::Error> {
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer.clone()).await?;
    Ok(offer.sdp)
}

pub async fn add_candidate(
    pc: &dyn PeerConnection,
    candidate: IceCandidate,
) -> Result<(), SignalError> {
    let init = RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_m_line_index,
        username_fragment: candidate.username_fragment,
        ..Default::default()
    };
    pc.add_ice_candidate(init)
        .await
        .map_err(SignalError::BadCandidate)
}

/// webrtc-rs leaves a local candidate's `sdpMid` empty, which is no valid
/// mid: the relay bundles every track on one transport, so its candidates
/// belong to the first m-section of its description.
pub async fn with_mid(pc: &dyn PeerConnection, mut c: IceCandidate) -> IceCandidate {
    if c.sdp_mid.as_deref().is_some_and(|mid| !mid.is_empty()) {
        return c;
    }
    if let Some(local) = pc.local_description().await {
        c.sdp_mid = first_mid(&local.sdp).map(str::to_string);
        c.sdp_m_line_index = Some(0);
    }
    c
}

/// The first DTLS fingerprint an SDP names (session or media level):
/// which keys, so which of the device's connections, it comes from.
pub fn fingerprint(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=fingerprint:"))
}

/// The mid of an SDP's first m-section.
fn first_mid(sdp: &str) -> Option<&str> {
    sdp.lines()
        .skip_while(|l| !l.starts_with("m="))
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_fingerprint() {
        let cases = [
            ("v=0\r\na=fingerprint:sha-256 AB:CD\r\nm=audio 9 UDP 111\r\n", Some("sha-256 AB:CD")),
            ("v=0\r\nm=audio 9 UDP 111\r\na=fingerprint:sha-256 01:02\r\nm=video 9 UDP 96\r\na=fingerprint:sha-256 03:04\r\n", Some("sha-256 01:02")),
            ("v=0\r\nm=audio 9 UDP 111\r\n", None),
        ];
        for (sdp, want) in cases {
            assert_eq!(fingerprint(sdp), want, "{sdp:?}");
        }
    }

    #[test]
    fn the_first_m_sections_mid() {
        let cases = [
            ("v=0\r\na=group:BUNDLE 0 1\r\nm=video 9 UDP 96\r\na=mid:0\r\nm=audio 9 UDP 111\r\na=mid:1\r\n", Some("0")),
            ("v=0\na=mid:x\nm=video 9 UDP 96\na=sendrecv\na=mid:video\n", Some("video")),
            ("v=0\r\nm=video 9 UDP 96\r\n", None),
            ("", None),
        ];
        for (sdp, want) in cases {
            assert_eq!(first_mid(sdp), want, "{sdp:?}");
        }
    }
}

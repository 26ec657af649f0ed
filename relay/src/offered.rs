//! What a device's offer asks to receive: each audio or video m-line it
//! can receive on, with its media codecs in the device's order of
//! preference. The relay answers a new connection with a sending track on
//! each of them, so the other device's media needs no second offer.

use std::io::Cursor;

use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rtc::sdp::description::session::SessionDescription;

/// One m-line the device receives on.
#[derive(Debug)]
pub struct Line {
    pub kind: RtpCodecKind,
    /// Its media codecs, most preferred first; formats that only carry
    /// others' packets (retransmission, redundancy, FEC) or no media
    /// (comfort noise, DTMF) are left out.
    pub codecs: Vec<RTCRtpCodec>,
}

/// Formats that are no codec to send a track in.
const NOT_MEDIA: [&str; 7] = [
    "rtx",
    "red",
    "ulpfec",
    "flexfec-03",
    "cn",
    "telephone-event",
    "flexfec",
];

/// The m-lines of `offer` the device receives on, in order; none for an
/// offer that does not parse (applying it fails anyway).
pub fn receiving_lines(offer: &str) -> Vec<Line> {
    let Ok(description) = SessionDescription::unmarshal(&mut Cursor::new(offer.as_bytes())) else {
        return Vec::new();
    };
    description
        .media_descriptions
        .iter()
        .filter_map(|media| {
            let kind = match media.media_name.media.as_str() {
                "audio" => RtpCodecKind::Audio,
                "video" => RtpCodecKind::Video,
                _ => return None,
            };
            // A rejected line (port 0, unless bundled: it then shares the
            // first line's transport), or one the device only sends on or
            // not at all.
            let rejected = media.media_name.port.value == 0 && !media.has_attribute("bundle-only");
            let sends_only = ["sendonly", "inactive"]
                .iter()
                .any(|d| media.has_attribute(d));
            if rejected || sends_only {
                return None;
            }
            let codecs = media.codecs();
            let codecs = media
                .media_name
                .formats
                .iter()
                .filter_map(|format| codecs.get(&format.parse::<u8>().ok()?))
                .filter(|c| !NOT_MEDIA.contains(&c.name.to_ascii_lowercase().as_str()))
                .map(|c| RTCRtpCodec {
                    mime_type: format!("{}/{}", media.media_name.media, c.name),
                    clock_rate: c.clock_rate,
                    channels: c.encoding_parameters.parse().unwrap_or(0),
                    sdp_fmtp_line: c.fmtp.clone(),
                    rtcp_feedback: Vec::new(),
                })
                .collect();
            Some(Line { kind, codecs })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

    fn offer(lines: &[&str]) -> String {
        let mut sdp = SESSION.to_string();
        for line in lines {
            sdp.push_str(line);
            sdp.push_str("\r\n");
        }
        sdp
    }

    fn mimes(lines: &[Line]) -> Vec<(RtpCodecKind, Vec<String>)> {
        lines
            .iter()
            .map(|l| {
                let mimes = l.codecs.iter().map(|c| c.mime_type.clone()).collect();
                (l.kind, mimes)
            })
            .collect()
    }

    /// Each line's kind and codecs' mime types.
    type Kinds = Vec<(RtpCodecKind, Vec<&'static str>)>;

    #[test]
    fn the_lines_a_device_receives_on() {
        use RtpCodecKind::{Audio, Video};
        let opus = "a=rtpmap:111 opus/48000/2";
        let red = "a=rtpmap:63 red/48000/2";
        let vp8 = "a=rtpmap:96 VP8/90000";
        let rtx = "a=rtpmap:97 rtx/90000";
        let h264 = "a=rtpmap:102 H264/90000";
        let cases: Vec<(&str, String, Kinds)> = vec![
            (
                "a browser's audio and video, sendrecv by default",
                offer(&[
                    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63",
                    opus,
                    red,
                    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102",
                    vp8,
                    rtx,
                    h264,
                    "a=sendrecv",
                ]),
                vec![
                    (Audio, vec!["audio/opus"]),
                    (Video, vec!["video/VP8", "video/H264"]),
                ],
            ),
            (
                "the m-line's order is the device's preference, not the rtpmaps'",
                offer(&["m=video 9 UDP/TLS/RTP/SAVPF 102 96", vp8, h264]),
                vec![(Video, vec!["video/H264", "video/VP8"])],
            ),
            (
                "receive only",
                offer(&["m=video 9 UDP/TLS/RTP/SAVPF 96", vp8, "a=recvonly"]),
                vec![(Video, vec!["video/VP8"])],
            ),
            (
                "send only, inactive and rejected lines are not received on",
                offer(&[
                    "m=video 9 UDP/TLS/RTP/SAVPF 96",
                    vp8,
                    "a=sendonly",
                    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
                    opus,
                    "a=inactive",
                    "m=video 0 UDP/TLS/RTP/SAVPF 96",
                    vp8,
                ]),
                vec![],
            ),
            (
                "a bundle-only line has port 0 and is received on",
                offer(&["m=video 0 UDP/TLS/RTP/SAVPF 96", vp8, "a=bundle-only"]),
                vec![(Video, vec!["video/VP8"])],
            ),
            (
                "a data channel carries no track",
                offer(&["m=application 9 UDP/DTLS/SCTP webrtc-datachannel"]),
                vec![],
            ),
            ("not SDP", "hello".to_string(), vec![]),
        ];
        for (name, sdp, want) in cases {
            let want: Vec<(RtpCodecKind, Vec<String>)> = want
                .into_iter()
                .map(|(k, m)| (k, m.into_iter().map(String::from).collect()))
                .collect();
            assert_eq!(mimes(&receiving_lines(&sdp)), want, "{name}");
        }
    }

    #[test]
    fn a_codec_keeps_its_rate_channels_and_parameters() {
        let sdp = offer(&[
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1",
        ]);
        let lines = receiving_lines(&sdp);
        let opus = &lines[0].codecs[0];
        assert_eq!(
            (opus.clock_rate, opus.channels, opus.sdp_fmtp_line.as_str()),
            (48000, 2, "minptime=10;useinbandfec=1")
        );
    }
}

//! Receivers ask for keyframes with RTCP PLI or FIR. webrtc 0.21 keeps
//! inbound RTCP inside its interceptor chain unless an interceptor marks a
//! packet for the application; this one marks keyframe requests, the only
//! RTCP the relay (and the SDK's sending peer) acts on, and lets everything
//! else end there. Its own crate, so the SDK needs no part of the relay.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// The interceptor's place in a registry (`Slot::from(SLOT)`): past the
/// default interceptors, so they have all read an inbound RTCP packet
/// before this one decides whether the application sees it.
pub const SLOT: usize = 14_000;

#[derive(Default)]
pub struct KeyframeFeedback {
    inbound: VecDeque<TaggedPacket>,
    outbound: VecDeque<TaggedPacket>,
}

/// Whether an RTCP packet asks for a keyframe (PLI or FIR).
pub fn asks_for_keyframe(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeFeedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if !packets.iter().any(|p| asks_for_keyframe(p.as_ref())) {
                return Ok(());
            }
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.inbound.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inbound.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.outbound.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.outbound.pop_front()
    }
}

impl Interceptor for KeyframeFeedback {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::shared::TransportMessage;

    fn tagged(packet: Packet) -> TaggedPacket {
        TransportMessage {
            now: Instant::now(),
            transport: Default::default(),
            message: AttributedPacket::new(packet),
        }
    }

    fn pli() -> Box<dyn rtc::rtcp::Packet> {
        Box::new(PictureLossIndication::default())
    }

    fn fir() -> Box<dyn rtc::rtcp::Packet> {
        Box::new(FullIntraRequest::default())
    }

    fn report() -> Box<dyn rtc::rtcp::Packet> {
        Box::new(ReceiverReport::default())
    }

    /// What reading one packet yields: `None` when it ends here, else
    /// whether it is marked for the application.
    fn read(packet: Packet) -> Option<bool> {
        let mut feedback = KeyframeFeedback::default();
        feedback
            .handle_read(tagged(packet))
            .expect("reading never fails");
        let out = feedback.poll_read()?;
        assert!(feedback.poll_read().is_none(), "one packet in, one out");
        Some(out.message.has(&Attribute::DeliverToApplication))
    }

    #[test]
    fn keyframe_requests_reach_the_application_and_other_rtcp_ends_here() {
        let cases: Vec<(&str, Packet, Option<bool>)> = vec![
            ("a PLI", Packet::Rtcp(vec![pli()]), Some(true)),
            ("a FIR", Packet::Rtcp(vec![fir()]), Some(true)),
            (
                "a report with a PLI",
                Packet::Rtcp(vec![report(), pli()]),
                Some(true),
            ),
            ("a report alone", Packet::Rtcp(vec![report()]), None),
            ("an empty compound packet", Packet::Rtcp(vec![]), None),
            (
                "RTP passes unmarked",
                Packet::Rtp(Default::default()),
                Some(false),
            ),
        ];
        for (name, packet, want) in cases {
            assert_eq!(read(packet), want, "{name}");
        }
    }

    #[test]
    fn writes_pass_through_in_order() {
        let mut feedback = KeyframeFeedback::default();
        for packet in [
            Packet::Rtcp(vec![report()]),
            Packet::Rtp(Default::default()),
        ] {
            feedback
                .handle_write(tagged(packet))
                .expect("writing never fails");
        }
        let first = feedback.poll_write().expect("the report");
        assert!(
            matches!(first.message.packet, Packet::Rtcp(_)),
            "report first"
        );
        let second = feedback.poll_write().expect("the RTP packet");
        assert!(
            matches!(second.message.packet, Packet::Rtp(_)),
            "RTP second"
        );
        assert!(feedback.poll_write().is_none(), "nothing else");
    }
}

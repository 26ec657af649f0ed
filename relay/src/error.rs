//! What the relay refuses. `RelayError` is returned to the server at once;
//! `SignalError` is found by a room later and reaches the device as the
//! text of an `Outgoing::Refused`, so its wording is part of the protocol.

use webrtc::error::Error;

/// Why `Relay::signal` took no message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("the call has no media room: it is not accepted or it has ended")]
    NoRoom,
    #[error("this device is not a participant of the call")]
    NotParticipant,
    #[error("too many signalling messages waiting for this call; slow down")]
    Busy,
}

/// Why a room refused a device's offer, answer or candidate.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SignalError {
    #[error("bad offer: {0}")]
    BadOffer(Error),
    #[error("bad answer: {0}")]
    BadAnswer(Error),
    #[error("bad candidate: {0}")]
    BadCandidate(Error),
    #[error("rolling back the relay's offer: {0}")]
    RollBack(Error),
    #[error("offer not applicable: {0}")]
    OfferNotApplicable(Error),
    #[error("no answer to that offer: {0}")]
    NoAnswer(Error),
    #[error("answering: {0}")]
    Answering(Error),
    #[error("answer not applicable: {0}")]
    AnswerNotApplicable(Error),
    #[error("no offer was made to you")]
    NoConnection,
    #[error("no offer awaits an answer")]
    NoOfferAwaits,
    #[error("offer before sending candidates")]
    CandidateBeforeOffer,
    #[error("the relay has no free UDP port")]
    NoFreePort,
    #[error("the relay could not open a connection: {0}")]
    CannotConnect(Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Devices read these texts: a change here is a protocol change.
    #[test]
    fn refusals_read_as_before() {
        let e = || Error::Other("why".into());
        let cases: Vec<(SignalError, &str)> = vec![
            (SignalError::BadOffer(e()), "bad offer: why"),
            (SignalError::BadAnswer(e()), "bad answer: why"),
            (SignalError::BadCandidate(e()), "bad candidate: why"),
            (
                SignalError::RollBack(e()),
                "rolling back the relay's offer: why",
            ),
            (
                SignalError::OfferNotApplicable(e()),
                "offer not applicable: why",
            ),
            (SignalError::NoAnswer(e()), "no answer to that offer: why"),
            (SignalError::Answering(e()), "answering: why"),
            (
                SignalError::AnswerNotApplicable(e()),
                "answer not applicable: why",
            ),
            (SignalError::NoConnection, "no offer was made to you"),
            (SignalError::NoOfferAwaits, "no offer awaits an answer"),
            (
                SignalError::CandidateBeforeOffer,
                "offer before sending candidates",
            ),
            (SignalError::NoFreePort, "the relay has no free UDP port"),
            (
                SignalError::CannotConnect(e()),
                "the relay could not open a connection: why",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text, "{error:?}");
        }
    }
}

//! One device's offer/answer exchange with the relay, with no IO: the room
//! tells it what the device sent and what the relay did to the connection,
//! and it says what to do next. The device offers first; after that the
//! relay offers whenever the tracks it sends the device change, because
//! only it knows when the other device's tracks come and go. A device that
//! offers while the relay's offer is out (glare) wins: the relay rolls its
//! offer back, answers, and offers again.

use std::collections::BTreeSet;

use crate::error::SignalError;

/// Where the exchange stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum State {
    /// Made for the device's first offer, which is not answered yet: the
    /// relay has nothing to renegotiate.
    #[default]
    New,
    /// The last offer was answered.
    Stable,
    /// The relay's offer awaits the device's answer.
    Offering,
}

/// What the device sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Offer,
    Answer,
}

/// What the relay did to the device's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Applied the device's answer, once `Sent::Answer` allowed it.
    AppliedAnswer,
    /// Set its own offer and sent it, once `wants_offer` asked for one.
    Offered,
    /// Added a track carrying this source for the device to receive.
    AddedTrack(u64),
    /// Took the track of this source off.
    RemovedTrack(u64),
}

/// What the relay must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Apply the device's offer and answer it.
    Answer,
    /// Roll the relay's own offer back first, then answer.
    RollBackAndAnswer,
    /// Apply the device's answer.
    ApplyAnswer,
    /// The device has now agreed to receive these sources: forward them,
    /// and ask their senders for a keyframe it can start decoding from.
    Ready(Vec<u64>),
}

#[derive(Debug, Default)]
pub struct Negotiation {
    state: State,
    /// Tracks were added or removed since the relay's last offer.
    stale: bool,
    /// Sources added that no offer has carried yet.
    unoffered: BTreeSet<u64>,
    /// Sources an offer carried, not yet ready: packets sent before the
    /// device's answer would reach it as an undeclared stream.
    offered: BTreeSet<u64>,
}

impl Negotiation {
    /// The device's offer or answer: what to do with it, or why not.
    pub fn received(&mut self, sent: Sent) -> Result<Action, SignalError> {
        match (self.state, sent) {
            (State::Offering, Sent::Offer) => {
                // The relay offers again once it has answered. A device
                // offer it cannot apply ends the connection (and this
                // exchange with it), so the state moves on at once.
                self.state = State::Stable;
                self.stale = true;
                Ok(Action::RollBackAndAnswer)
            }
            (_, Sent::Offer) => {
                self.state = State::Stable;
                Ok(Action::Answer)
            }
            // The state moves when the answer is applied: one that fails
            // leaves the offer open for another.
            (State::Offering, Sent::Answer) => Ok(Action::ApplyAnswer),
            (_, Sent::Answer) => Err(SignalError::NoOfferAwaits),
        }
    }

    pub fn done(&mut self, done: Done) -> Action {
        match done {
            Done::AppliedAnswer => {
                self.state = State::Stable;
                Action::Ready(std::mem::take(&mut self.offered).into_iter().collect())
            }
            Done::Offered => {
                self.state = State::Offering;
                self.stale = false;
                self.offered.append(&mut self.unoffered);
                Action::Nothing
            }
            Done::AddedTrack(source) => {
                self.unoffered.insert(source);
                self.stale = true;
                Action::Nothing
            }
            Done::RemovedTrack(source) => {
                self.unoffered.remove(&source);
                self.offered.remove(&source);
                self.stale = true;
                Action::Nothing
            }
        }
    }

    /// Whether the relay should offer now: its tracks changed since its
    /// last offer, the device has been answered, and no offer is out.
    pub fn wants_offer(&self) -> bool {
        self.state == State::Stable && self.stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Step {
        Sent(Sent),
        Done(Done),
    }

    type Steps = Vec<(Step, Result<Action, SignalError>)>;

    const OFFER: Step = Step::Sent(Sent::Offer);
    const ANSWER: Step = Step::Sent(Sent::Answer);
    const APPLIED: Step = Step::Done(Done::AppliedAnswer);
    const OFFERED: Step = Step::Done(Done::Offered);
    const NOTHING: Result<Action, SignalError> = Ok(Action::Nothing);

    fn added(source: u64) -> Step {
        Step::Done(Done::AddedTrack(source))
    }

    fn removed(source: u64) -> Step {
        Step::Done(Done::RemovedTrack(source))
    }

    fn ready(sources: &[u64]) -> Result<Action, SignalError> {
        Ok(Action::Ready(sources.to_vec()))
    }

    /// The device's first offer answered, then sources 1 and 2 added and
    /// offered to it, and `more`.
    fn offering(more: Steps) -> Steps {
        let mut steps = vec![
            (OFFER, Ok(Action::Answer)),
            (added(1), NOTHING),
            (added(2), NOTHING),
            (OFFERED, NOTHING),
        ];
        steps.extend(more);
        steps
    }

    #[test]
    fn offers_and_answers() {
        let refused = || Err(SignalError::NoOfferAwaits);
        // (case, steps with what each returns, state after, wants an offer)
        let cases: Vec<(&str, Steps, State, bool)> = vec![
            // The device's offer.
            (
                "the device's first offer is answered",
                vec![(OFFER, Ok(Action::Answer))],
                State::Stable,
                false,
            ),
            (
                "tracks added before the first answer wait for it",
                vec![(added(1), NOTHING)],
                State::New,
                false,
            ),
            (
                "and are offered once the device is answered",
                vec![(added(1), NOTHING), (OFFER, Ok(Action::Answer))],
                State::Stable,
                true,
            ),
            (
                "a device offers again once answered",
                vec![(OFFER, Ok(Action::Answer)), (OFFER, Ok(Action::Answer))],
                State::Stable,
                false,
            ),
            // The relay's offer.
            (
                "the relay's offer is out",
                offering(vec![]),
                State::Offering,
                false,
            ),
            (
                "its answer readies what it carried",
                offering(vec![
                    (ANSWER, Ok(Action::ApplyAnswer)),
                    (APPLIED, ready(&[1, 2])),
                ]),
                State::Stable,
                false,
            ),
            (
                "a track added while an offer is out waits for the next",
                offering(vec![
                    (added(3), NOTHING),
                    (ANSWER, Ok(Action::ApplyAnswer)),
                    (APPLIED, ready(&[1, 2])),
                ]),
                State::Stable,
                true,
            ),
            (
                "and is ready after the next answer",
                offering(vec![
                    (added(3), NOTHING),
                    (ANSWER, Ok(Action::ApplyAnswer)),
                    (APPLIED, ready(&[1, 2])),
                    (OFFERED, NOTHING),
                    (ANSWER, Ok(Action::ApplyAnswer)),
                    (APPLIED, ready(&[3])),
                ]),
                State::Stable,
                false,
            ),
            (
                "a track removed before the answer is never ready, and is offered away",
                offering(vec![
                    (removed(2), NOTHING),
                    (ANSWER, Ok(Action::ApplyAnswer)),
                    (APPLIED, ready(&[1])),
                ]),
                State::Stable,
                true,
            ),
            (
                "an answer that failed to apply leaves the offer open",
                offering(vec![
                    (ANSWER, Ok(Action::ApplyAnswer)),
                    (ANSWER, Ok(Action::ApplyAnswer)),
                    (APPLIED, ready(&[1, 2])),
                ]),
                State::Stable,
                false,
            ),
            // Rollback on glare.
            (
                "glare: the relay rolls back, answers, and wants to offer again",
                offering(vec![(OFFER, Ok(Action::RollBackAndAnswer))]),
                State::Stable,
                true,
            ),
            (
                "after glare the next answer readies what the rolled-back offer carried",
                offering(vec![
                    (OFFER, Ok(Action::RollBackAndAnswer)),
                    (OFFERED, NOTHING),
                    (ANSWER, Ok(Action::ApplyAnswer)),
                    (APPLIED, ready(&[1, 2])),
                ]),
                State::Stable,
                false,
            ),
            // A stale answer.
            (
                "an answer to the rolled-back offer is refused",
                offering(vec![
                    (OFFER, Ok(Action::RollBackAndAnswer)),
                    (ANSWER, refused()),
                ]),
                State::Stable,
                true,
            ),
            (
                "a second answer to an answered offer is refused",
                offering(vec![
                    (ANSWER, Ok(Action::ApplyAnswer)),
                    (APPLIED, ready(&[1, 2])),
                    (ANSWER, refused()),
                ]),
                State::Stable,
                false,
            ),
            (
                "an answer before any offer is refused",
                vec![(ANSWER, refused())],
                State::New,
                false,
            ),
        ];
        for (name, steps, state, wants_offer) in cases {
            let mut n = Negotiation::default();
            for (i, (step, want)) in steps.into_iter().enumerate() {
                let got = match step {
                    Step::Sent(sent) => n.received(sent),
                    Step::Done(done) => Ok(n.done(done)),
                };
                assert_eq!(got, want, "{name}: step {i} ({step:?})");
            }
            assert_eq!(n.state, state, "{name}: state");
            assert_eq!(n.wants_offer(), wants_offer, "{name}: wants an offer");
        }
    }
}

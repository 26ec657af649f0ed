//! When to ask a sender for a keyframe. Every receiver that joins or loses
//! its picture wants one, but a keyframe costs many packets, so requests to
//! one sender are spaced at least `min_gap_ms` apart; one asked for inside
//! the gap is sent when the gap ends, so the latest asker is still served.

#[derive(Debug)]
pub struct KeyframeRequests {
    min_gap_ms: u64,
    last_sent: Option<u64>,
    pending: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send a PLI now.
    Send,
    /// Already asked recently; call `due` at this instant.
    Later(u64),
}

impl KeyframeRequests {
    pub fn new(min_gap_ms: u64) -> Self {
        KeyframeRequests {
            min_gap_ms,
            last_sent: None,
            pending: false,
        }
    }

    pub fn ask(&mut self, now_ms: u64) -> Verdict {
        match self.last_sent {
            Some(at) if now_ms < at + self.min_gap_ms => {
                self.pending = true;
                Verdict::Later(at + self.min_gap_ms)
            }
            _ => {
                self.last_sent = Some(now_ms);
                self.pending = false;
                Verdict::Send
            }
        }
    }

    /// Whether a postponed request should go out now.
    pub fn due(&mut self, now_ms: u64) -> bool {
        match self.last_sent {
            Some(at) if self.pending && now_ms >= at + self.min_gap_ms => {
                self.last_sent = Some(now_ms);
                self.pending = false;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_goes_out_at_once() {
        let mut k = KeyframeRequests::new(500);
        assert_eq!(k.ask(1_000), Verdict::Send);
    }

    #[test]
    fn a_burst_becomes_one_request_now_and_one_later() {
        let mut k = KeyframeRequests::new(500);
        assert_eq!(k.ask(1_000), Verdict::Send);
        assert_eq!(k.ask(1_100), Verdict::Later(1_500));
        assert_eq!(k.ask(1_200), Verdict::Later(1_500));
        assert!(!k.due(1_499));
        assert!(k.due(1_500));
        assert!(!k.due(1_600), "the postponed request is sent once");
    }

    #[test]
    fn nothing_is_due_without_a_postponed_request() {
        let mut k = KeyframeRequests::new(500);
        assert!(!k.due(0));
        assert_eq!(k.ask(0), Verdict::Send);
        assert!(!k.due(10_000));
    }

    #[test]
    fn after_the_gap_requests_go_out_at_once_again() {
        let mut k = KeyframeRequests::new(500);
        assert_eq!(k.ask(0), Verdict::Send);
        assert_eq!(k.ask(500), Verdict::Send);
    }
}

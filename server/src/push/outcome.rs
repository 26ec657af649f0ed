//! What a push service's answer means to the sender, and how long it
//! waits before sending again.

use std::time::Duration;

/// A service's answer to one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The token will never work again: it is forgotten.
    DeadToken,
    /// The sender's credentials expired: renewed, then sent again.
    Renew,
    /// Busy or failing for now: sent again, after `after` if the service
    /// said how long.
    Retry {
        after: Option<Duration>,
    },
    /// Sending it again would not help (a bad payload or configuration).
    Failed(String),
}

impl Outcome {
    /// An HTTP answer that no service's own rule placed: 429 and 5xx are
    /// worth another try, anything else is not.
    pub fn from_status(status: u16, retry_after: Option<Duration>, why: String) -> Outcome {
        match status {
            200..=299 => Outcome::Sent,
            429 | 500..=599 => Outcome::Retry { after: retry_after },
            _ => Outcome::Failed(why),
        }
    }
}

impl Outcome {
    /// A request that got no answer: the network may come back, unless
    /// the request could not even be made.
    pub fn unanswered(service: &str, e: &reqwest::Error) -> Outcome {
        if e.is_builder() {
            return Outcome::Failed(format!("{service}: {e}"));
        }
        tracing::debug!("{service}: {e:#}");
        Outcome::Retry { after: None }
    }
}

/// The wait before retry `attempt` (1 for the first): what the service
/// asked for, else 0.5 s doubling up to 8 s.
pub fn backoff(attempt: u32, asked: Option<Duration>) -> Duration {
    asked.unwrap_or_else(|| {
        let doublings = attempt.saturating_sub(1).min(4);
        Duration::from_millis(500 << doublings)
    })
}

/// An answer's `Retry-After` header in seconds (an HTTP date is not used
/// by the push services, and is ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    seconds(headers.get("retry-after")?.to_str().ok()?)
}

fn seconds(value: &str) -> Option<Duration> {
    value.trim().parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_or_as_asked() {
        let s = Duration::from_millis;
        for (attempt, asked, wait) in [
            (1, None, s(500)),
            (2, None, s(1_000)),
            (3, None, s(2_000)),
            (5, None, s(8_000)),
            (50, None, s(8_000)),
            (1, Some(s(3_000)), s(3_000)),
            (4, Some(s(0)), s(0)),
        ] {
            assert_eq!(backoff(attempt, asked), wait, "{attempt} {asked:?}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        for (header, after) in [
            ("3", Some(Duration::from_secs(3))),
            (" 10 ", Some(Duration::from_secs(10))),
            ("Wed, 21 Oct 2026 07:28:00 GMT", None),
            ("-1", None),
        ] {
            assert_eq!(seconds(header), after, "{header:?}");
        }
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
    }

    #[test]
    fn plain_statuses_retry_only_when_it_may_help() {
        for (status, retry) in [
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (404, false),
        ] {
            let outcome = Outcome::from_status(status, None, "why".into());
            assert_eq!(matches!(outcome, Outcome::Retry { .. }), retry, "{status}");
        }
        assert_eq!(
            Outcome::from_status(200, None, String::new()),
            Outcome::Sent
        );
    }
}

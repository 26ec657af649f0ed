//! In-memory rate limits per client address, for the things an attacker
//! would hammer: asking for one-time codes and guessing them. Each node
//! counts the addresses it serves. Per-user limits (invites and profile
//! changes, `Store::spend`), per-number code limits, the daily discovery
//! quota and the pairing guess budgets live in the database, where every
//! node counts the same and restarts forget nothing.

/// Invites a caller may send a minute, all at once if it likes.
pub const INVITES_PER_MINUTE: u32 = 30;
/// Profile changes (HTTP or MQTT) a user may make a minute.
pub const PROFILE_CHANGES_PER_MINUTE: u32 = 30;

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// A limit per key, on clock `C`.
pub type Keyed<K, C = DefaultClock> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

pub struct Limits<C: Clock = DefaultClock> {
    /// `POST /v1/auth/otp` per client address.
    pub otp_per_address: Keyed<IpAddr, C>,
    /// `POST /v1/auth/verify` and `/v1/auth/robot` per client address.
    pub sign_in_per_address: Keyed<IpAddr, C>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).expect("a positive rate"))
}

fn keyed<K: Hash + Eq + Clone, C: Clock + Clone>(quota: Quota, clock: &C) -> Keyed<K, C> {
    RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone())
}

/// Forgets `limit`'s keys that are full again; gives back their room
/// only when that halved them (a shrink rehashes every key left).
fn forget_idle<K: Hash + Eq + Clone, C: Clock>(limit: &Keyed<K, C>) {
    let before = limit.len();
    limit.retain_recent();
    if limit.len() < before / 2 {
        limit.shrink_to_fit();
    }
}

impl Limits {
    pub fn new() -> Self {
        Limits::with_clock(&DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limits<C> {
    pub fn with_clock(clock: &C) -> Self {
        Limits {
            otp_per_address: keyed(per_minute(10), clock),
            sign_in_per_address: keyed(per_minute(30), clock),
        }
    }

    /// Forgets the keys whose limit is back to full, and the room they
    /// took: each address that ever signed in would otherwise stay in
    /// memory for good. Run once a minute.
    pub fn forget_idle(&self) {
        forget_idle(&self.otp_per_address);
        forget_idle(&self.sign_in_per_address);
    }

    /// Keys held, over all the limits.
    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.otp_per_address.len() + self.sign_in_per_address.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn keys_are_forgotten_once_their_limit_is_full_again() {
        let clock = FakeRelativeClock::default();
        let limits = Limits::with_clock(&clock);
        let (asker, guesser): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        limits.otp_per_address.check_key(&asker).unwrap();
        for _ in 0..30 {
            limits.sign_in_per_address.check_key(&guesser).unwrap();
        }
        assert!(limits.sign_in_per_address.check_key(&guesser).is_err());
        assert_eq!(limits.keys(), 2);
        limits.forget_idle();
        assert_eq!(limits.keys(), 2, "both still count");
        // One request comes back in 6 s (10 a minute); a key goes once it
        // has been full again that long: the asker, not the guesser who
        // used up its minute.
        clock.advance(Duration::from_secs(12));
        limits.forget_idle();
        assert_eq!(limits.keys(), 1);
        assert!(limits.sign_in_per_address.check_key(&guesser).is_ok());
        clock.advance(Duration::from_secs(60));
        limits.forget_idle();
        assert_eq!(limits.keys(), 0);
    }
}

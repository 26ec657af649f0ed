//! In-memory rate limits for the things an attacker would hammer: asking
//! for one-time codes and guessing them from one address, and profile
//! updates of one user. (Per-number code limits and the daily discovery
//! quota live in the database, where they survive restarts.)

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct Limits {
    /// `POST /v1/auth/otp` per client address.
    pub otp_per_address: DefaultKeyedRateLimiter<IpAddr>,
    /// `POST /v1/auth/verify` and `/v1/auth/robot` per client address.
    pub sign_in_per_address: DefaultKeyedRateLimiter<IpAddr>,
    /// Profile changes (HTTP or MQTT) per user.
    pub profile_per_user: DefaultKeyedRateLimiter<String>,
    /// Invites per caller.
    pub invites_per_user: DefaultKeyedRateLimiter<String>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).expect("a positive rate"))
}

impl Limits {
    pub fn new() -> Self {
        Limits {
            otp_per_address: RateLimiter::keyed(per_minute(10)),
            sign_in_per_address: RateLimiter::keyed(per_minute(30)),
            profile_per_user: RateLimiter::keyed(per_minute(30)),
            invites_per_user: RateLimiter::keyed(per_minute(30)),
        }
    }
}

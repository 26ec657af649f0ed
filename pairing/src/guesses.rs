//! Who may still guess a pairing code, from what is stored of past misses
//! (`Misses`). Only wrong look-ups (no live code behind them) count, so a
//! person typing the right code is never held up by the budget; an
//! attacker spends it on nearly every try:
//!
//! - an account may miss `PER_USER` times and a network address
//!   (IPv4, or an IPv6 /64) `PER_ADDRESS` times in `WINDOW_MS`; the same
//!   wrong code again within one code lifetime is a retry, not a guess;
//! - when more than `GUARD_AFTER` misses happen server-wide within one
//!   code's lifetime, the server is on guard for `WINDOW_MS`: an account
//!   or address with any miss in the window is refused outright, so each
//!   fresh address an attacker holds buys one guess.
//!
//! docs/protocol.md ("Pairing a robot") works out the odds.

use std::net::IpAddr;

pub const PER_USER: usize = 5;
pub const PER_ADDRESS: usize = 10;
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;
pub const GUARD_AFTER: usize = 20;

/// An address as the budget counts it: an IPv6 host's /64 is one network.
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

/// What is stored of past misses, as one look-up sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Misses {
    /// This account's misses within the window.
    pub user: usize,
    /// This network's misses within the window (none without an address).
    pub network: usize,
    /// Everyone's misses within the last code lifetime.
    pub recent: usize,
    /// When this account last missed this very code, if within a code
    /// lifetime.
    pub this_code: Option<i64>,
    /// Until when the server is on guard (0: never was).
    pub guarded_until: i64,
}

/// Whether a look-up with these misses behind it may go on at `at`.
pub fn allowed(m: &Misses, at: i64) -> bool {
    if at < m.guarded_until {
        m.user == 0 && m.network == 0
    } else {
        m.user < PER_USER && m.network < PER_ADDRESS
    }
}

/// What a look-up that found no live code changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss {
    /// A new guess, to store (the same wrong code again within a code
    /// lifetime is a retry, and costs nothing).
    pub counts: bool,
    /// The server goes on guard until then.
    pub guard_until: Option<i64>,
}

/// A miss at `at`, codes living `lifetime_ms`.
pub fn miss(m: &Misses, at: i64, lifetime_ms: i64) -> Miss {
    let retry = m.this_code.is_some_and(|t| at - t < lifetime_ms);
    let counts = !retry;
    let guard_until = (counts && m.recent + 1 > GUARD_AFTER).then_some(at + WINDOW_MS);
    Miss {
        counts,
        guard_until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let cases = [
            ("203.0.113.7", "203.0.113.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
        ];
        for (given, want) in cases {
            assert_eq!(
                network(given.parse().unwrap()),
                want.parse::<IpAddr>().unwrap()
            );
        }
    }

    /// Five misses a day per account, ten per network; on guard, any miss
    /// in the window shuts a guesser out, while a clean account and
    /// address still look up at once.
    #[test]
    fn who_may_look_up() {
        let m = |user, network, guarded_until| Misses {
            user,
            network,
            guarded_until,
            ..Misses::default()
        };
        let cases = [
            (m(0, 0, 0), true),
            (m(PER_USER - 1, 0, 0), true),
            (m(PER_USER, 0, 0), false),
            (m(0, PER_ADDRESS - 1, 0), true),
            (m(0, PER_ADDRESS, 0), false),
            (m(0, 0, 2_000), true),
            (m(1, 0, 2_000), false),
            (m(0, 1, 2_000), false),
            (m(1, 1, 1_000), true),
        ];
        for (misses, want) in cases {
            assert_eq!(allowed(&misses, 1_000), want, "{misses:?}");
        }
    }

    #[test]
    fn what_a_miss_changes() {
        const LIFE: i64 = 120_000;
        let m = |recent, this_code| Misses {
            recent,
            this_code,
            ..Misses::default()
        };
        let miss_at = |misses: Misses, at| miss(&misses, at, LIFE);
        let cases = [
            (
                m(0, None),
                10,
                Miss {
                    counts: true,
                    guard_until: None,
                },
            ),
            (
                m(0, Some(0)),
                LIFE - 1,
                Miss {
                    counts: false,
                    guard_until: None,
                },
            ),
            (
                m(0, Some(0)),
                LIFE,
                Miss {
                    counts: true,
                    guard_until: None,
                },
            ),
            (
                m(GUARD_AFTER - 1, None),
                10,
                Miss {
                    counts: true,
                    guard_until: None,
                },
            ),
            (
                m(GUARD_AFTER, None),
                10,
                Miss {
                    counts: true,
                    guard_until: Some(10 + WINDOW_MS),
                },
            ),
            (
                m(GUARD_AFTER, Some(5)),
                10,
                Miss {
                    counts: false,
                    guard_until: None,
                },
            ),
        ];
        for (misses, at, want) in cases {
            assert_eq!(miss_at(misses, at), want, "{misses:?} at {at}");
        }
    }
}

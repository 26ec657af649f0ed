//! Who may still guess a pairing code. Only wrong look-ups (no live code
//! behind them) count, so a person typing the right code is never held up
//! by the budget; an attacker spends it on nearly every try:
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

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

use switchboard_protocol::{Id, PairingCode};

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

/// Miss times per key, oldest first, within the window.
struct Misses<K>(HashMap<K, VecDeque<i64>>);

impl<K: Hash + Eq + Clone> Misses<K> {
    fn count(&self, key: &K, at: i64) -> usize {
        self.0.get(key).map_or(0, |times| {
            times.iter().filter(|t| at - **t < WINDOW_MS).count()
        })
    }

    fn record(&mut self, key: K, at: i64) {
        self.0.entry(key).or_default().push_back(at);
    }

    fn prune(&mut self, now: i64) {
        self.0.retain(|_, times| {
            while times.front().is_some_and(|t| now - t >= WINDOW_MS) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }
}

pub struct Guesses {
    users: Misses<Id>,
    addresses: Misses<IpAddr>,
    /// Server-wide misses within the last code lifetime.
    recent: VecDeque<i64>,
    guarded_until: Option<i64>,
    /// Codes a user missed within the last code lifetime: the same wrong
    /// code again that soon (a retry) costs nothing more; later it is a new
    /// guess, since a code may have been issued under that number since.
    missed: HashMap<(Id, PairingCode), i64>,
    lifetime_ms: i64,
}

impl Guesses {
    /// Guesses for codes that live `lifetime_ms`.
    pub fn new(lifetime_ms: i64) -> Self {
        Guesses {
            users: Misses(HashMap::new()),
            addresses: Misses(HashMap::new()),
            recent: VecDeque::new(),
            guarded_until: None,
            missed: HashMap::new(),
            lifetime_ms,
        }
    }

    /// Whether `user` from `address` may look a code up now.
    pub fn allowed(&self, user: &Id, address: Option<IpAddr>, at: i64) -> bool {
        let user_misses = self.users.count(user, at);
        let address_misses = address.map_or(0, |a| self.addresses.count(&network(a), at));
        let guarded = self.guarded_until.is_some_and(|until| at < until);
        if guarded {
            user_misses == 0 && address_misses == 0
        } else {
            user_misses < PER_USER && address_misses < PER_ADDRESS
        }
    }

    /// A look-up that found no live code.
    pub fn missed(&mut self, user: &Id, address: Option<IpAddr>, code: &PairingCode, at: i64) {
        let key = (user.clone(), code.clone());
        if self
            .missed
            .get(&key)
            .is_some_and(|t| at - t < self.lifetime_ms)
        {
            return;
        }
        self.missed.insert(key, at);
        self.users.record(user.clone(), at);
        if let Some(a) = address {
            self.addresses.record(network(a), at);
        }
        self.recent.push_back(at);
        while self
            .recent
            .front()
            .is_some_and(|t| at - t >= self.lifetime_ms)
        {
            self.recent.pop_front();
        }
        if self.recent.len() > GUARD_AFTER {
            self.guarded_until = Some(at + WINDOW_MS);
        }
    }

    /// Forgets misses older than the window.
    pub fn prune(&mut self, now: i64) {
        self.users.prune(now);
        self.addresses.prune(now);
        self.missed.retain(|_, t| now - *t < self.lifetime_ms);
        while self
            .recent
            .front()
            .is_some_and(|t| now - t >= self.lifetime_ms)
        {
            self.recent.pop_front();
        }
        if self.guarded_until.is_some_and(|until| now >= until) {
            self.guarded_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u8) -> Id {
        format!("{:032x}", u128::from(n) + 0xa000).parse().unwrap()
    }

    fn code(n: u32) -> PairingCode {
        format!("{n:06}").parse().unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

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

    #[test]
    fn an_account_misses_five_times_a_day() {
        let mut g = Guesses::new(120_000);
        for n in 0..PER_USER as u32 {
            assert!(g.allowed(&user(1), ip("10.0.0.1"), 0));
            g.missed(&user(1), ip("10.0.0.1"), &code(n), 0);
        }
        assert!(!g.allowed(&user(1), ip("10.0.0.2"), 1), "from anywhere");
        assert!(g.allowed(&user(2), ip("10.0.0.1"), 1), "others still may");
        assert!(!g.allowed(&user(1), ip("10.0.0.2"), WINDOW_MS - 1));
        assert!(
            g.allowed(&user(1), ip("10.0.0.2"), WINDOW_MS),
            "a day later"
        );
    }

    #[test]
    fn the_same_wrong_code_again_is_a_new_guess_only_after_a_code_lifetime() {
        let mut g = Guesses::new(120_000);
        for at in [0, 1_000, 119_999] {
            g.missed(&user(1), ip("10.0.0.1"), &code(7), at);
        }
        assert_eq!(g.users.count(&user(1), 120_000), 1, "a retry");
        // Polling a number until a robot gets it costs a guess a lifetime.
        g.missed(&user(1), ip("10.0.0.1"), &code(7), 120_000);
        assert_eq!(g.users.count(&user(1), 120_000), 2);
    }

    #[test]
    fn an_address_misses_ten_times_a_day_whatever_the_accounts() {
        let mut g = Guesses::new(120_000);
        // Spread over a day, so the server is never on guard.
        for n in 0..PER_ADDRESS as u8 {
            let at = i64::from(n) * 3_600_000;
            assert!(g.allowed(&user(n), ip("2001:db8::1"), at));
            g.missed(&user(n), ip("2001:db8::1"), &code(1), at);
        }
        let at = 10 * 3_600_000;
        assert!(!g.allowed(&user(99), ip("2001:db8::2"), at), "same /64");
        assert!(g.allowed(&user(99), ip("2001:db9::1"), at));
    }

    #[test]
    fn on_guard_any_miss_in_the_window_shuts_a_guesser_out() {
        let mut g = Guesses::new(120_000);
        // An attack: many accounts and addresses miss within one lifetime.
        for n in 0..=GUARD_AFTER as u8 {
            let address = format!("198.51.100.{n}");
            g.missed(&user(n), ip(&address), &code(1), 1_000);
        }
        assert!(
            !g.allowed(&user(0), ip("203.0.113.9"), 2_000),
            "its account"
        );
        assert!(
            !g.allowed(&user(200), ip("198.51.100.0"), 2_000),
            "its address"
        );
        assert!(
            g.allowed(&user(201), ip("203.0.113.9"), 2_000),
            "a person with a clean account and address still looks up at once"
        );
        g.prune(1_000 + WINDOW_MS);
        assert!(g.allowed(&user(0), ip("198.51.100.0"), 1_000 + WINDOW_MS));
    }
}

//! Robot pairing and robot commands, free of IO.
//!
//! `Codes`: a provisioned robot gets a 6-digit code, unique among live
//! codes, valid for `CODE_TTL_MS`, used at most once. A user who types a
//! code first *looks* at it (subscribes to its `robotID`); wrong look-ups
//! are budgeted per account, per network address and server-wide
//! (`guesses`), so guessing one of a million codes within their two
//! minutes is hopeless. Only a user who looked at a live code may claim it.
//!
//! `Commands`: requests to a robot during a call, each with a deadline for
//! the robot's first answer.

mod commands;
mod guesses;

pub use commands::{CommandRefusal, Commands, Pending, COMMAND_DEADLINE_MS, MAX_OPEN_PER_CALL};

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use switchboard_protocol::{Id, PairingCode};

pub use guesses::{Guesses, GUARD_AFTER, PER_ADDRESS, PER_USER, WINDOW_MS};

/// How long a pairing code lives unless configured otherwise.
pub const CODE_TTL_MS: i64 = 120_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingRefusal {
    #[error("too many wrong pairing codes from this account or network; try again tomorrow")]
    TooManyTries,
    #[error("no such pairing code (it may have expired or been used)")]
    NoSuchCode,
    #[error("look the code up first (subscribe to its robotID)")]
    NotLooked,
    #[error("a robot cannot pair with a robot")]
    RobotClaim,
}

#[derive(Debug, Clone)]
struct Code {
    robot: Id,
    expires_at: i64,
    /// Users who looked at it while it lived.
    lookers: HashSet<Id>,
}

pub struct Codes {
    live: HashMap<PairingCode, Code>,
    guesses: Guesses,
    ttl_ms: i64,
}

impl Codes {
    /// Codes that live `ttl_ms`.
    pub fn new(ttl_ms: i64) -> Self {
        Codes {
            live: HashMap::new(),
            guesses: Guesses::new(ttl_ms),
            ttl_ms,
        }
    }

    /// A new code for `robot`, replacing any live one it had (returned
    /// last, to be finished like an expired one). `random` gives numbers in
    /// 0..1_000_000 (the server passes a CSPRNG).
    pub fn issue(
        &mut self,
        robot: Id,
        at: i64,
        mut random: impl FnMut() -> u32,
    ) -> (PairingCode, i64, Option<PairingCode>) {
        let replaced = self
            .live
            .iter()
            .find(|(_, c)| c.robot == robot)
            .map(|(code, _)| code.clone());
        if let Some(old) = &replaced {
            self.live.remove(old);
        }
        let code = loop {
            let candidate: PairingCode = format!("{:06}", random() % 1_000_000)
                .parse()
                .expect("6 digits");
            if !self.live.contains_key(&candidate) {
                break candidate;
            }
        };
        let expires_at = at + self.ttl_ms;
        self.live.insert(
            code.clone(),
            Code {
                robot,
                expires_at,
                lookers: HashSet::new(),
            },
        );
        (code, expires_at, replaced)
    }

    /// The robot a live code was issued to.
    pub fn robot_of(&self, code: &PairingCode, at: i64) -> Option<&Id> {
        self.live
            .get(code)
            .filter(|c| c.expires_at > at)
            .map(|c| &c.robot)
    }

    /// `user`, connected from `address`, looks a code up. A look-up that
    /// finds no live code counts against the guess budgets (`guesses`).
    pub fn look(
        &mut self,
        user: &Id,
        address: Option<IpAddr>,
        code: &PairingCode,
        at: i64,
    ) -> Result<Id, PairingRefusal> {
        if !self.guesses.allowed(user, address, at) {
            return Err(PairingRefusal::TooManyTries);
        }
        match self.live.get_mut(code).filter(|c| c.expires_at > at) {
            Some(live) => {
                live.lookers.insert(user.clone());
                Ok(live.robot.clone())
            }
            None => {
                self.guesses.missed(user, address, code, at);
                Err(PairingRefusal::NoSuchCode)
            }
        }
    }

    /// Whether `user` looked at this live code (may read its status and
    /// claim it).
    pub fn looked(&self, user: &Id, code: &PairingCode, at: i64) -> bool {
        self.live
            .get(code)
            .is_some_and(|c| c.expires_at > at && c.lookers.contains(user))
    }

    /// `user` claims the robot behind a code it looked at: the code is
    /// burned. Returns the robot.
    pub fn claim(&mut self, user: &Id, code: &PairingCode, at: i64) -> Result<Id, PairingRefusal> {
        let live = self
            .live
            .get(code)
            .filter(|c| c.expires_at > at)
            .ok_or(PairingRefusal::NoSuchCode)?;
        if &live.robot == user {
            return Err(PairingRefusal::RobotClaim);
        }
        if !live.lookers.contains(user) {
            return Err(PairingRefusal::NotLooked);
        }
        Ok(self.live.remove(code).expect("checked above").robot)
    }

    /// Codes that expired unused: `(code, robot)`.
    pub fn tick(&mut self, now: i64) -> Vec<(PairingCode, Id)> {
        let expired: Vec<(PairingCode, Id)> = self
            .live
            .iter()
            .filter(|(_, c)| c.expires_at <= now)
            .map(|(code, c)| (code.clone(), c.robot.clone()))
            .collect();
        for (code, _) in &expired {
            self.live.remove(code);
        }
        self.guesses.prune(now);
        expired
    }
}

#[cfg(test)]
mod tests;

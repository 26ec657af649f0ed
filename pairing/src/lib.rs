//! Robot pairing and robot commands, free of IO.
//!
//! `Codes`: a provisioned robot gets a 6-digit code, unique among live
//! codes, valid for `CODE_TTL_MS`, used at most once. A user who types a
//! code first *looks* at it (subscribes to its `robotID`); each user may
//! look at `LOOKS_PER_WINDOW` distinct codes per `LOOK_WINDOW_MS`, and past
//! that is refused for `LOCKOUT_MS`, so guessing one of a million codes
//! within their two minutes is hopeless. Only a user who looked at a live
//! code may claim it.
//!
//! `Commands`: requests to a robot during a call, each with a deadline for
//! the robot's first answer.

mod commands;

pub use commands::{CommandRefusal, Commands, Pending, COMMAND_DEADLINE_MS, MAX_OPEN_PER_CALL};

use std::collections::{HashMap, HashSet, VecDeque};

use switchboard_protocol::{Id, PairingCode};

/// How long a pairing code lives unless configured otherwise.
pub const CODE_TTL_MS: i64 = 120_000;
pub const LOOKS_PER_WINDOW: usize = 5;
pub const LOOK_WINDOW_MS: i64 = 60_000;
pub const LOCKOUT_MS: i64 = 5 * 60_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingRefusal {
    #[error("too many pairing codes tried; wait a few minutes")]
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

#[derive(Debug, Default)]
struct Tries {
    /// Distinct codes looked at, with when, inside the window.
    recent: VecDeque<(i64, PairingCode)>,
    locked_until: Option<i64>,
}

#[derive(Debug)]
pub struct Codes {
    live: HashMap<PairingCode, Code>,
    tries: HashMap<Id, Tries>,
    ttl_ms: i64,
}

impl Codes {
    /// Codes that live `ttl_ms`.
    pub fn new(ttl_ms: i64) -> Self {
        Codes {
            live: HashMap::new(),
            tries: HashMap::new(),
            ttl_ms,
        }
    }

    /// A new code for `robot`, replacing any live one it had. `random`
    /// gives numbers in 0..1_000_000 (the server passes a CSPRNG).
    pub fn issue(
        &mut self,
        robot: Id,
        at: i64,
        mut random: impl FnMut() -> u32,
    ) -> (PairingCode, i64) {
        self.live.retain(|_, c| c.robot != robot);
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
        (code, expires_at)
    }

    /// The robot a live code was issued to.
    pub fn robot_of(&self, code: &PairingCode, at: i64) -> Option<&Id> {
        self.live
            .get(code)
            .filter(|c| c.expires_at > at)
            .map(|c| &c.robot)
    }

    /// `user` looks a code up. Counts against the user's tries whether or
    /// not the code exists; a code looked at again does not count twice.
    pub fn look(&mut self, user: &Id, code: &PairingCode, at: i64) -> Result<Id, PairingRefusal> {
        let tries = self.tries.entry(user.clone()).or_default();
        if tries.locked_until.is_some_and(|until| at < until) {
            return Err(PairingRefusal::TooManyTries);
        }
        tries.locked_until = None;
        while tries
            .recent
            .front()
            .is_some_and(|(t, _)| at - t >= LOOK_WINDOW_MS)
        {
            tries.recent.pop_front();
        }
        if !tries.recent.iter().any(|(_, c)| c == code) {
            if tries.recent.len() >= LOOKS_PER_WINDOW {
                tries.locked_until = Some(at + LOCKOUT_MS);
                return Err(PairingRefusal::TooManyTries);
            }
            tries.recent.push_back((at, code.clone()));
        }
        match self.live.get_mut(code).filter(|c| c.expires_at > at) {
            Some(live) => {
                live.lookers.insert(user.clone());
                Ok(live.robot.clone())
            }
            None => Err(PairingRefusal::NoSuchCode),
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
        self.tries.retain(|_, t| {
            t.locked_until.is_some_and(|u| u > now)
                || t.recent
                    .back()
                    .is_some_and(|(at, _)| now - at < LOOK_WINDOW_MS)
        });
        expired
    }
}

#[cfg(test)]
mod tests;

//! Robot pairing and robot commands, free of IO.
//!
//! Pairing codes: a provisioned robot gets a 6-digit code, unique among
//! live codes, valid for `CODE_TTL_MS`, used at most once. A user who
//! types a code first *looks* at it (subscribes to its `robotID`); wrong
//! look-ups are budgeted per account, per network address and
//! server-wide (`guesses`), so guessing one of a million codes within
//! their two minutes is hopeless. Only a user who looked at a live code
//! may claim it. The codes, looks and misses are stored (any node may
//! take any step); these are the rules the store's transactions apply.
//!
//! `Commands`: requests to a robot during a call, each with a deadline for
//! the robot's first answer.

mod commands;
mod guesses;

pub use commands::{CommandRefusal, Commands, Pending, COMMAND_DEADLINE_MS, MAX_OPEN_PER_CALL};

use switchboard_protocol::{Id, PairingCode};

pub use guesses::{
    allowed, miss, network, Miss, Misses, GUARD_AFTER, PER_ADDRESS, PER_USER, WINDOW_MS,
};

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

/// A 6-digit code from `random` (numbers in 0..1_000_000; the server
/// passes a CSPRNG).
pub fn code_from(random: u32) -> PairingCode {
    format!("{:06}", random % 1_000_000)
        .parse()
        .expect("6 digits")
}

/// Whether `user` may claim the live code issued to `robot`, having looked
/// at it or not: returns the robot.
pub fn claim(robot: Id, user: &Id, looked: bool) -> Result<Id, PairingRefusal> {
    if &robot == user {
        return Err(PairingRefusal::RobotClaim);
    }
    if !looked {
        return Err(PairingRefusal::NotLooked);
    }
    Ok(robot)
}

#[cfg(test)]
mod tests;

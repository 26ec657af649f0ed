//! Robot commands during a call: each request waits for the robot's first
//! response until its deadline; past it the server answers `timed_out`.
//! The robot may answer a request as often as it likes (`moving`, then
//! `arrived`), but only requests that were made.

use std::collections::HashMap;

use switchboard_protocol::{CommandName, Sid};

/// How long a robot has to answer a request the first time, unless
/// configured otherwise.
pub const COMMAND_DEADLINE_MS: i64 = 10_000;

/// A request identified as the wire identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pending {
    pub sid: Sid,
    pub command: CommandName,
    pub request_id: String,
}

#[derive(Debug)]
pub struct Commands {
    /// Every request of live calls; the deadline until the first answer.
    requests: HashMap<Pending, Option<i64>>,
    deadline_ms: i64,
}

impl Commands {
    /// Robots get `deadline_ms` to answer a request.
    pub fn new(deadline_ms: i64) -> Self {
        Commands {
            requests: HashMap::new(),
            deadline_ms,
        }
    }

    /// A new request. Refused (false) when the same request id is already
    /// in use for that command in that call.
    pub fn request(&mut self, request: Pending, at: i64) -> bool {
        if self.requests.contains_key(&request) {
            return false;
        }
        self.requests.insert(request, Some(at + self.deadline_ms));
        true
    }

    /// A response from the robot; false for a request never made.
    pub fn respond(&mut self, request: &Pending) -> bool {
        match self.requests.get_mut(request) {
            Some(deadline) => {
                *deadline = None;
                true
            }
            None => false,
        }
    }

    /// Requests whose deadline passed without an answer. They stay known,
    /// so a late answer is still delivered.
    pub fn tick(&mut self, now: i64) -> Vec<Pending> {
        let mut late = Vec::new();
        for (request, deadline) in self.requests.iter_mut() {
            if deadline.is_some_and(|d| d <= now) {
                *deadline = None;
                late.push(request.clone());
            }
        }
        late
    }

    /// A call ended: its requests are forgotten.
    pub fn end_call(&mut self, sid: &Sid) {
        self.requests.retain(|r, _| &r.sid != sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str) -> Pending {
        Pending {
            sid: "0123456789abcdef0123456789abcdef".parse().unwrap(),
            command: "moveTo".parse().unwrap(),
            request_id: id.to_string(),
        }
    }

    #[test]
    fn answered_requests_do_not_time_out() {
        let mut c = Commands::new(COMMAND_DEADLINE_MS);
        assert!(c.request(req("r1"), 0));
        assert!(
            !c.request(req("r1"), 1),
            "request ids are unique per command and call"
        );
        assert!(c.respond(&req("r1")));
        assert!(c.respond(&req("r1")), "as often as the robot likes");
        assert!(c.tick(COMMAND_DEADLINE_MS * 2).is_empty());
        assert!(!c.respond(&req("never-made")));
    }

    #[test]
    fn silent_robots_time_out_once() {
        let mut c = Commands::new(COMMAND_DEADLINE_MS);
        c.request(req("r2"), 0);
        assert!(c.tick(COMMAND_DEADLINE_MS - 1).is_empty());
        assert_eq!(c.tick(COMMAND_DEADLINE_MS), vec![req("r2")]);
        assert!(c.tick(COMMAND_DEADLINE_MS * 3).is_empty(), "once");
        assert!(c.respond(&req("r2")), "a late answer still goes through");
        c.end_call(&req("r2").sid);
        assert!(!c.respond(&req("r2")));
    }
}

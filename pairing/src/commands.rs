//! Robot commands during a call: each request waits for the robot's first
//! response until its deadline; past it the server answers `timed_out`.
//! The robot may answer a request as often as it likes (`moving`, then
//! `arrived`), but only requests that were made. A request is forgotten
//! when it gets a final status or its call ends, and a call keeps at most
//! `MAX_OPEN_PER_CALL` requests, so memory never grows with traffic.

use std::collections::{BTreeSet, HashMap};

use switchboard_protocol::payload::is_final_status;
use switchboard_protocol::{CommandName, Sid};

/// How long a robot has to answer a request the first time, unless
/// configured otherwise.
pub const COMMAND_DEADLINE_MS: i64 = 10_000;

/// Requests one call may keep open (not yet answered with a final status).
pub const MAX_OPEN_PER_CALL: usize = 1024;

/// A request identified as the wire identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pending {
    pub sid: Sid,
    pub command: CommandName,
    pub request_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefusal {
    #[error("this requestId is already open in this call")]
    InUse,
    #[error("too many open requests in this call (at most {MAX_OPEN_PER_CALL}); wait for answers")]
    TooMany,
    #[error("no such request (never made, finished, or its call ended)")]
    NoSuchRequest,
}

#[derive(Debug)]
pub struct Commands {
    /// Open requests of each call, with the deadline until the first answer.
    calls: HashMap<Sid, HashMap<(CommandName, String), Option<i64>>>,
    /// Unanswered requests in deadline order: a tick reads only what is due.
    deadlines: BTreeSet<(i64, Pending)>,
    deadline_ms: i64,
}

impl Commands {
    /// Robots get `deadline_ms` to answer a request.
    pub fn new(deadline_ms: i64) -> Self {
        Commands {
            calls: HashMap::new(),
            deadlines: BTreeSet::new(),
            deadline_ms,
        }
    }

    /// A new request; its request id must not be open for that command in
    /// that call.
    pub fn request(&mut self, request: Pending, at: i64) -> Result<(), CommandRefusal> {
        let open = self.calls.entry(request.sid.clone()).or_default();
        let key = (request.command.clone(), request.request_id.clone());
        if open.contains_key(&key) {
            return Err(CommandRefusal::InUse);
        }
        if open.len() >= MAX_OPEN_PER_CALL {
            return Err(CommandRefusal::TooMany);
        }
        let deadline = at + self.deadline_ms;
        open.insert(key, Some(deadline));
        self.deadlines.insert((deadline, request));
        Ok(())
    }

    /// A response from the robot with `status`. A final status closes the
    /// request.
    pub fn respond(&mut self, request: &Pending, status: &str) -> Result<(), CommandRefusal> {
        let open = self
            .calls
            .get_mut(&request.sid)
            .ok_or(CommandRefusal::NoSuchRequest)?;
        let key = (request.command.clone(), request.request_id.clone());
        let deadline = open.get_mut(&key).ok_or(CommandRefusal::NoSuchRequest)?;
        if let Some(d) = deadline.take() {
            self.deadlines.remove(&(d, request.clone()));
        }
        if is_final_status(status) {
            open.remove(&key);
            if open.is_empty() {
                self.calls.remove(&request.sid);
            }
        }
        Ok(())
    }

    /// Requests whose deadline passed without an answer. They stay open,
    /// so a late answer is still delivered.
    pub fn tick(&mut self, now: i64) -> Vec<Pending> {
        let mut late = Vec::new();
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > now {
                break;
            }
            let (_, request) = self.deadlines.pop_first().expect("first exists");
            if let Some(open) = self.calls.get_mut(&request.sid) {
                let key = (request.command.clone(), request.request_id.clone());
                if let Some(d) = open.get_mut(&key) {
                    *d = None;
                }
            }
            late.push(request);
        }
        late
    }

    /// A call ended: its requests are forgotten.
    pub fn end_call(&mut self, sid: &Sid) {
        let Some(open) = self.calls.remove(sid) else {
            return;
        };
        for ((command, request_id), deadline) in open {
            if let Some(d) = deadline {
                let request = Pending {
                    sid: sid.clone(),
                    command,
                    request_id,
                };
                self.deadlines.remove(&(d, request));
            }
        }
    }

    /// Requests kept: open ones, answered or not.
    pub fn len(&self) -> usize {
        self.calls.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "0123456789abcdef0123456789abcdef";

    fn req(id: &str) -> Pending {
        Pending {
            sid: SID.parse().unwrap(),
            command: "moveTo".parse().unwrap(),
            request_id: id.to_string(),
        }
    }

    #[test]
    fn answered_requests_do_not_time_out() {
        let mut c = Commands::new(COMMAND_DEADLINE_MS);
        assert_eq!(c.request(req("r1"), 0), Ok(()));
        assert_eq!(
            c.request(req("r1"), 1),
            Err(CommandRefusal::InUse),
            "request ids are unique among a call's open requests"
        );
        assert_eq!(c.respond(&req("r1"), "moving"), Ok(()));
        assert_eq!(
            c.respond(&req("r1"), "moving"),
            Ok(()),
            "as often as it likes"
        );
        assert!(c.tick(COMMAND_DEADLINE_MS * 2).is_empty());
        assert_eq!(
            c.respond(&req("never-made"), "moving"),
            Err(CommandRefusal::NoSuchRequest)
        );
    }

    #[test]
    fn silent_robots_time_out_once() {
        let mut c = Commands::new(COMMAND_DEADLINE_MS);
        c.request(req("r2"), 0).unwrap();
        assert!(c.tick(COMMAND_DEADLINE_MS - 1).is_empty());
        assert_eq!(c.tick(COMMAND_DEADLINE_MS), vec![req("r2")]);
        assert!(c.tick(COMMAND_DEADLINE_MS * 3).is_empty(), "once");
        assert_eq!(
            c.respond(&req("r2"), "moving"),
            Ok(()),
            "a late answer still goes through"
        );
        c.end_call(&req("r2").sid);
        assert_eq!(
            c.respond(&req("r2"), "arrived"),
            Err(CommandRefusal::NoSuchRequest)
        );
    }

    #[test]
    fn a_final_status_or_the_call_end_frees_a_request() {
        // (statuses answered, kept afterwards)
        let cases: [(&[&str], usize); 5] = [
            (&[], 1),
            (&["moving"], 1),
            (&["moving", "arrived"], 0),
            (&["done"], 0),
            (&["failed"], 0),
        ];
        for (statuses, kept) in cases {
            let mut c = Commands::new(COMMAND_DEADLINE_MS);
            c.request(req("r"), 0).unwrap();
            for status in statuses {
                c.respond(&req("r"), status).unwrap();
            }
            assert_eq!(c.len(), kept, "{statuses:?}");
            assert_eq!(c.deadlines.len(), usize::from(statuses.is_empty()));
            c.end_call(&req("r").sid);
            assert!(c.is_empty() && c.deadlines.is_empty(), "{statuses:?}");
        }
        let mut c = Commands::new(COMMAND_DEADLINE_MS);
        c.request(req("r"), 0).unwrap();
        c.respond(&req("r"), "arrived").unwrap();
        assert_eq!(
            c.respond(&req("r"), "arrived"),
            Err(CommandRefusal::NoSuchRequest),
            "nothing after a final status"
        );
        assert_eq!(
            c.request(req("r"), 1),
            Ok(()),
            "a finished id may be reused"
        );
    }

    #[test]
    fn a_call_keeps_a_bounded_number_of_open_requests() {
        let mut c = Commands::new(COMMAND_DEADLINE_MS);
        for i in 0..MAX_OPEN_PER_CALL {
            c.request(req(&i.to_string()), 0).unwrap();
        }
        assert_eq!(c.request(req("one more"), 0), Err(CommandRefusal::TooMany));
        c.respond(&req("0"), "done").unwrap();
        assert_eq!(c.request(req("one more"), 0), Ok(()));
    }

    #[test]
    fn a_tick_reads_only_what_is_due() {
        let mut c = Commands::new(COMMAND_DEADLINE_MS);
        for i in 0..100 {
            c.request(req(&i.to_string()), i).unwrap();
        }
        let due = c.tick(COMMAND_DEADLINE_MS + 9);
        assert_eq!(due.len(), 10);
        assert_eq!(due[0], req("0"), "in deadline order");
        assert_eq!(c.deadlines.len(), 90);
        assert_eq!(c.len(), 100, "timed-out requests stay open");
    }
}

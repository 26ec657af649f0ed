//! Sessions: what outlives a connection when its client asks (MQTT 3.1.1
//! clean session off, MQTT 5 Session Expiry Interval): subscriptions, the
//! queue, and the messages sent but not acknowledged, which the next
//! connection sends again.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytestring::ByteString;
use tokio::sync::Notify;

use crate::queue::{Queue, Queued};
use crate::wire::{Closing, SubscribeOptions};

/// A Session Expiry Interval that never runs out (MQTT 5).
pub const NEVER: u32 = u32::MAX;

pub(crate) struct Session {
    pub id: u64,
    pub client_id: ByteString,
    pub queue: Queue,
    pub subscriptions: Mutex<Vec<(ByteString, SubscribeOptions)>>,
    /// Whether a connection serves it: an offline session's full queue
    /// drops a message rather than make its publisher wait.
    pub online: AtomicBool,
    /// Set when a publisher gave up waiting for room in its queue: its
    /// client is not reading. Until it reads again, what does not fit is
    /// dropped at once.
    pub stuck: AtomicBool,
    /// The connection serving it, which can be told to close.
    pub serving: Mutex<Option<Serving>>,
    /// Handed from each connection to the next; the serving connection
    /// holds it, so a new one waits until the last has ended.
    pub carried: Arc<tokio::sync::Mutex<Carried>>,
    /// Seconds it outlives a connection: 0 ends it with the connection.
    pub expiry: AtomicU32,
    /// Counts the connections that claimed it: a connection or expiry
    /// timer that is not the latest claim's acts on nothing.
    pub claims: AtomicU64,
}

pub(crate) struct Serving {
    pub connection: u64,
    pub stop: Arc<Stopping>,
    /// When it was made, by the wall clock: another node's connection of
    /// the same client id is compared by it.
    pub since: SystemTime,
}

/// Tells a connection to close, and why (the first reason given wins).
#[derive(Default)]
pub(crate) struct Stopping {
    told: Notify,
    why: Mutex<Option<Closing>>,
}

impl Stopping {
    pub fn stop(&self, why: Closing) {
        self.why.lock().unwrap().get_or_insert(why);
        self.told.notify_one();
    }

    pub async fn stopped(&self) -> Closing {
        self.told.notified().await;
        let why = *self.why.lock().unwrap();
        why.unwrap_or(Closing::ShuttingDown)
    }
}

/// What a session keeps of its conversation with its client.
#[derive(Default)]
pub(crate) struct Carried {
    /// QoS 1 and 2 messages sent and not yet acknowledged, in order.
    pub inflight: VecDeque<Inflight>,
    pub last_packet_id: u16,
    /// QoS 2 messages taken whose PUBREL has not come yet.
    pub released: Vec<NonZeroU16>,
}

impl Session {
    pub fn new(id: u64, client_id: ByteString, max_queue: usize) -> Session {
        Session {
            id,
            client_id,
            queue: Queue::new(max_queue),
            subscriptions: Mutex::new(Vec::new()),
            online: AtomicBool::new(false),
            stuck: AtomicBool::new(false),
            serving: Mutex::new(None),
            carried: Default::default(),
            expiry: AtomicU32::new(0),
            claims: AtomicU64::new(0),
        }
    }

    pub fn online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Whether a publisher should wait for room in its queue: only for a
    /// client that is connected and reading.
    pub fn worth_waiting_for(&self) -> bool {
        self.online() && !self.stuck.load(Ordering::Acquire)
    }

    /// Tells the serving connection a newer one takes its place.
    pub fn take_over(&self) {
        if let Some(serving) = self.serving.lock().unwrap().as_ref() {
            serving.stop.stop(Closing::TakenOver);
        }
    }

    /// Tells the serving connection, if it was made before `made_before`,
    /// that a newer one takes its place; whether it did.
    pub fn take_over_if_made_before(&self, made_before: SystemTime) -> bool {
        let serving = self.serving.lock().unwrap();
        let older = serving.as_ref().filter(|s| s.since < made_before);
        older.inspect(|s| s.stop.stop(Closing::TakenOver)).is_some()
    }

    /// Closes connection `connection` if it serves the session.
    pub fn close(&self, connection: u64, why: Closing) -> bool {
        let serving = self.serving.lock().unwrap();
        match serving.as_ref() {
            Some(s) if s.connection == connection => {
                s.stop.stop(why);
                true
            }
            _ => false,
        }
    }

    pub fn claim(&self) -> u64 {
        self.claims.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub fn claimed_by(&self, claim: u64) -> bool {
        self.claims.load(Ordering::Acquire) == claim
    }

    pub fn serve(&self, serving: Serving) {
        *self.serving.lock().unwrap() = Some(serving);
        self.online.store(true, Ordering::Release);
    }

    pub fn leave(&self, connection: u64) {
        let mut serving = self.serving.lock().unwrap();
        if serving.as_ref().is_some_and(|s| s.connection == connection) {
            *serving = None;
            self.online.store(false, Ordering::Release);
        }
    }
}

pub(crate) struct Inflight {
    pub id: NonZeroU16,
    pub queued: Queued,
    /// QoS 2: its PUBREC came and PUBREL went; PUBCOMP ends it.
    pub released: bool,
}

impl Carried {
    /// Ends the exchange of packet `id` if `done` says this answer ends it.
    pub fn answered(&mut self, id: NonZeroU16, done: impl Fn(&Inflight) -> bool) {
        if let Some(i) = self.inflight.iter().position(|f| f.id == id && done(f)) {
            self.inflight.remove(i);
        }
    }

    /// The next free packet id.
    pub fn next_packet_id(&mut self) -> NonZeroU16 {
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            let Some(id) = NonZeroU16::new(self.last_packet_id) else {
                continue;
            };
            if !self.inflight.iter().any(|f| f.id == id) {
                return id;
            }
        }
    }
}

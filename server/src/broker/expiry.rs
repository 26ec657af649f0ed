//! Connections that must close when their access token expires: one timer
//! queue and one task for all of them. A connection that closes first is
//! taken out of the queue at once, so it leaves nothing behind (a sleeping
//! task per connection stayed until its token's expiry, several KB each).

use std::collections::HashMap;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use bytestring::ByteString;
use switchboard_broker::sparse::shrink_when_sparse;
use switchboard_broker::Closing;
use tokio_util::time::delay_queue::{DelayQueue, Key};

/// The timer wheel holds deadlines up to about two years; a token that
/// lives longer (`switchboard token --ttl`) has its connection closed
/// after a year, and the client logs in again.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Default)]
pub struct Expiry {
    timers: Mutex<Timers>,
}

/// A connection: its client id, and its number in the broker.
type Id = (ByteString, u64);

#[derive(Default)]
struct Timers {
    queue: DelayQueue<Id>,
    keys: HashMap<Id, Key>,
}

impl Timers {
    /// Gives back the room of timers gone, once most are.
    fn shrink_when_sparse(&mut self) {
        if shrink_when_sparse(&mut self.keys) {
            // Compacted, not just shrunk: a slab gives back only its
            // vacant tail, which one connection made after a storm's
            // would keep the whole of (850 KB after 10,000 phones).
            self.queue.compact();
        }
    }
}

impl Expiry {
    /// Closes `connection` after `wait`, unless it is forgotten first.
    pub fn watch(&self, connection: Id, wait: Duration) {
        let mut timers = self.timers.lock().expect("expiry lock");
        let key = timers
            .queue
            .insert(connection.clone(), wait.min(LONGEST_WAIT));
        if let Some(old) = timers.keys.insert(connection, key) {
            timers.queue.remove(&old);
        }
    }

    /// `connection` closed: nothing left to do for it.
    pub fn forget(&self, connection: &Id) {
        let mut timers = self.timers.lock().expect("expiry lock");
        if let Some(key) = timers.keys.remove(connection) {
            timers.queue.remove(&key);
            timers.shrink_when_sparse();
        }
    }

    /// Connections waiting for their token to expire.
    pub fn len(&self) -> usize {
        self.timers.lock().expect("expiry lock").keys.len()
    }

    /// The next connection whose token expired.
    async fn next(&self) -> Id {
        std::future::poll_fn(|cx| {
            let mut timers = self.timers.lock().expect("expiry lock");
            match timers.queue.poll_expired(cx) {
                Poll::Ready(Some(expired)) => {
                    let connection = expired.into_inner();
                    timers.keys.remove(&connection);
                    timers.shrink_when_sparse();
                    Poll::Ready(connection)
                }
                // An empty queue wakes this task on its next insert.
                Poll::Ready(None) | Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Closes each connection whose token expired (MQTT 5 clients hear
    /// "not authorized"): a normal end for presence, not a takeover. The
    /// client is expected to refresh its token and reconnect.
    pub async fn run(&self, core: &super::Core) {
        loop {
            let (client_id, connection) = self.next().await;
            if core.close(&client_id, connection, Closing::NotAuthorized) {
                tracing::info!(%client_id, "closed an MQTT connection whose token expired");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(i: u64) -> Id {
        (ByteString::from(format!("c{i}")), i)
    }

    #[tokio::test]
    async fn the_timers_of_a_storm_give_their_room_back_though_a_later_connection_stays() {
        let expiry = Expiry::default();
        let hour = Duration::from_secs(3600);
        for i in 0..=1000 {
            expiry.watch(connection(i), hour);
        }
        for i in 0..1000 {
            expiry.forget(&connection(i));
        }
        assert!(expiry.timers.lock().unwrap().queue.capacity() < 100);
        // The one left is still known by its key after the compaction:
        // watched again, its old timer goes and the new one fires.
        expiry.watch(connection(1000), Duration::ZERO);
        let next = tokio::time::timeout(Duration::from_secs(10), expiry.next());
        assert_eq!(next.await.unwrap(), connection(1000));
        assert!(expiry.timers.lock().unwrap().queue.is_empty());
    }
}

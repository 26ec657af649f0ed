//! A session's queue of messages on their way to its client: bounded, so
//! a publisher waits for room (flow control) rather than a message being
//! lost, and holding no memory while empty.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use crate::message::Message;
use crate::QoS;

/// A message for one subscriber, at the QoS it gets it with.
#[derive(Clone)]
pub struct Queued {
    pub message: Arc<Message>,
    pub qos: QoS,
    /// The RETAIN flag as the subscriber sees it.
    pub retain: bool,
    /// The MQTT 5 Subscription Identifiers of the subscriptions it matched.
    pub subscription_ids: Vec<NonZeroU32>,
}

pub struct Queue {
    items: Mutex<VecDeque<Queued>>,
    /// A permit per free place.
    room: Semaphore,
    /// Told when a message is pushed (keeps one wake-up if no one waits).
    filled: Notify,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            items: Mutex::new(VecDeque::new()),
            room: Semaphore::new(capacity),
            filled: Notify::new(),
        }
    }

    /// Queues `q` if there is room; gives it back if not.
    pub fn try_push(&self, q: Queued) -> Result<(), Queued> {
        match self.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.put(q);
                Ok(())
            }
            Err(_) => Err(q),
        }
    }

    /// Waits for room, then queues `q`. Cancel-safe: if dropped while
    /// waiting, nothing was queued.
    pub async fn push(&self, q: Queued) {
        // The semaphore is never closed.
        if let Ok(permit) = self.room.acquire().await {
            permit.forget();
            self.put(q);
        }
    }

    fn put(&self, q: Queued) {
        self.items.lock().unwrap().push_back(q);
        self.filled.notify_one();
    }

    pub fn pop(&self) -> Option<Queued> {
        let mut items = self.items.lock().unwrap();
        let q = items.pop_front()?;
        if items.is_empty() {
            // A burst's memory goes back once it is delivered.
            items.shrink_to(0);
        }
        drop(items);
        self.room.add_permits(1);
        Some(q)
    }

    /// Resolves once something may have been pushed since the last pop.
    pub async fn filled(&self) {
        self.filled.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn queued(n: u8) -> Queued {
        Queued {
            message: Arc::new(Message::new(
                "t".into(),
                Bytes::from(vec![n]),
                QoS::AtLeastOnce,
            )),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
        }
    }

    fn payloads(q: &Queue) -> Vec<u8> {
        std::iter::from_fn(|| q.pop())
            .map(|q| q.message.payload[0])
            .collect()
    }

    #[test]
    fn a_full_queue_gives_the_message_back_until_one_is_taken() {
        let q = Queue::new(2);
        assert!(q.try_push(queued(1)).is_ok());
        assert!(q.try_push(queued(2)).is_ok());
        assert!(q.try_push(queued(3)).is_err());
        assert_eq!(q.pop().unwrap().message.payload[0], 1);
        assert!(q.try_push(queued(3)).is_ok());
        assert_eq!(payloads(&q), [2, 3]);
    }

    #[tokio::test]
    async fn a_waiting_push_gets_the_place_a_pop_frees() {
        let q = Queue::new(1);
        q.push(queued(1)).await;
        let mut waiting = std::pin::pin!(q.push(queued(2)));
        tokio::select! {
            biased;
            _ = &mut waiting => panic!("pushed into a full queue"),
            _ = async {} => {}
        }
        assert_eq!(q.pop().unwrap().message.payload[0], 1);
        waiting.await;
        assert_eq!(payloads(&q), [2]);
    }
}

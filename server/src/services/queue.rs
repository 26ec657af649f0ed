//! The services' queues to their publisher tasks, bounded without losing
//! what matters:
//!
//! - `Latest` keeps one value per key, the newest merged with what it
//!   replaces (presence: watchers and the store need only a user's newest
//!   state, and whether its online status changed), so it never holds
//!   more entries than there are keys; it hands them out in batches,
//!   waiting a little for keys that come one at a time;
//! - `outbox` counts what waits, so that new work from clients (invites)
//!   is refused while the publisher falls behind; the server's own events
//!   about work it took on are always queued.
//!
//! Both end at shutdown once what was queued before the stop is out.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_broker::sparse::shrink_when_sparse;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct Latest<K, V> {
    waiting: Mutex<(VecDeque<K>, HashMap<K, V>)>,
    ready: Notify,
    /// The most keys a batch takes.
    batch: usize,
    /// How long the first key waiting waits for others to join its batch.
    gather: Duration,
}

impl<K: Hash + Eq + Clone, V> Latest<K, V> {
    /// A reader takes batches of up to `batch` (at least one: an empty
    /// batch means the stop).
    pub fn new(batch: usize, gather: Duration) -> Self {
        assert!(batch > 0, "a batch holds at least one key");
        Latest {
            waiting: Mutex::new((VecDeque::new(), HashMap::new())),
            ready: Notify::new(),
            batch,
            gather,
        }
    }

    /// Queues `value` for `key`. A value of that key still waiting keeps
    /// its place in line and becomes `merge(waiting, value)`.
    pub fn push(&self, key: K, value: V, merge: impl FnOnce(V, V) -> V) {
        let mut waiting = self.waiting.lock().expect("queue lock");
        let (order, values) = &mut *waiting;
        match values.remove(&key) {
            Some(older) => {
                values.insert(key, merge(older, value));
            }
            None => {
                values.insert(key.clone(), value);
                order.push_back(key);
                // The reader waits for a first key, then for a full batch.
                if order.len() == 1 || order.len() == self.batch {
                    self.ready.notify_one();
                }
            }
        }
    }

    /// The oldest waiting key with its value, out of the queue.
    fn take(waiting: &mut (VecDeque<K>, HashMap<K, V>)) -> Option<(K, V)> {
        let (order, values) = waiting;
        let key = order.pop_front()?;
        let value = values.remove(&key).expect("every key in line has a value");
        // A storm's queue gives its room back once drained.
        if shrink_when_sparse(values) {
            order.shrink_to(order.len() * 2);
        }
        Some((key, value))
    }

    fn len(&self) -> usize {
        self.waiting.lock().expect("queue lock").0.len()
    }

    /// Up to a batch of waiting keys with their newest values, oldest
    /// first: at once when a full batch waits, else once the first key
    /// seen waiting has waited `gather` for others, so that keys coming
    /// one at a time still go in batches. They are taken under one lock,
    /// so a batch holds each key once (one pushed again meanwhile waits
    /// for the next batch). Once `stop` is cancelled, what waits comes out
    /// at once, then an empty batch.
    pub async fn next_batch(&self, stop: &CancellationToken) -> Vec<(K, V)> {
        let mut until = None;
        loop {
            let waiting = self.len();
            if waiting >= self.batch || stop.is_cancelled() {
                return self.take_up_to(self.batch);
            }
            if waiting == 0 {
                tokio::select! {
                    () = self.ready.notified() => {}
                    () = stop.cancelled() => {}
                }
                continue;
            }
            let until = *until.get_or_insert_with(|| Instant::now() + self.gather);
            tokio::select! {
                () = tokio::time::sleep_until(until) => return self.take_up_to(self.batch),
                () = self.ready.notified() => {}
                () = stop.cancelled() => {}
            }
        }
    }

    fn take_up_to(&self, max: usize) -> Vec<(K, V)> {
        let mut waiting = self.waiting.lock().expect("queue lock");
        let mut batch = Vec::new();
        while batch.len() < max {
            match Self::take(&mut waiting) {
                Some(item) => batch.push(item),
                None => break,
            }
        }
        batch
    }
}

/// A queue that tells when it is too long to take new work from clients.
pub fn outbox<T>(limit: usize) -> (Outbox<T>, Inbox<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            waiting: waiting.clone(),
            limit,
        },
        Inbox { rx, waiting },
    )
}

pub struct Outbox<T> {
    tx: mpsc::UnboundedSender<T>,
    waiting: Arc<AtomicUsize>,
    limit: usize,
}

impl<T> Outbox<T> {
    /// Whether new work from clients must wait: `limit` items are queued.
    pub fn full(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) >= self.limit
    }

    pub fn send(&self, item: T) {
        // Counted first: the reader may take the item before this returns.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(item).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pub struct Inbox<T> {
    rx: mpsc::UnboundedReceiver<T>,
    waiting: Arc<AtomicUsize>,
}

impl<T> Inbox<T> {
    /// The next item. Once `stop` is cancelled the queue closes: what is
    /// already in it still comes out, then `None`.
    pub async fn next(&mut self, stop: &CancellationToken) -> Option<T> {
        let item = if stop.is_cancelled() {
            // Closing again is a no-op; nothing sent after the stop comes out.
            self.rx.close();
            self.rx.recv().await
        } else {
            tokio::select! {
                biased;
                item = self.rx.recv() => item,
                () = stop.cancelled() => {
                    self.rx.close();
                    self.rx.recv().await
                }
            }
        };
        if item.is_some() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        item
    }

    /// What is queued now, for tests reading a queue without its task.
    #[cfg(test)]
    pub fn try_next(&mut self) -> Option<T> {
        let item = self.rx.try_recv().ok()?;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn latest_keeps_one_newest_value_per_key_in_first_come_order() {
        let q = Latest::new(1, Duration::ZERO);
        let stop = CancellationToken::new();
        let newest = |_, new| new;
        for (key, value) in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3)] {
            q.push(key, value, newest);
        }
        assert_eq!(q.len(), 3, "bounded by the keys");
        assert_eq!(q.next_batch(&stop).await.pop(), Some(("a", 3)));
        assert_eq!(q.next_batch(&stop).await.pop(), Some(("b", 1)));
        q.push("a", 4, |old, new| old * 10 + new);
        q.push("a", 5, |old, new| old * 10 + new);
        stop.cancel();
        assert_eq!(
            q.next_batch(&stop).await.pop(),
            Some(("c", 1)),
            "drained after the stop"
        );
        assert_eq!(q.next_batch(&stop).await.pop(), Some(("a", 45)), "merged");
        assert_eq!(q.next_batch(&stop).await.pop(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_takes_what_waits_up_to_its_size() {
        let q = Latest::new(2, Duration::from_millis(50));
        let stop = CancellationToken::new();
        for key in ["a", "b", "c"] {
            q.push(key, 1, |_, new| new);
        }
        let started = Instant::now();
        assert_eq!(q.next_batch(&stop).await, vec![("a", 1), ("b", 1)]);
        assert_eq!(started.elapsed(), Duration::ZERO, "full: at once");
        assert_eq!(q.next_batch(&stop).await, vec![("c", 1)]);
        assert_eq!(started.elapsed(), Duration::from_millis(50), "gathered");
        q.push("d", 1, |_, new| new);
        stop.cancel();
        assert_eq!(q.next_batch(&stop).await, vec![("d", 1)], "at once");
        assert_eq!(q.next_batch(&stop).await, vec![]);
        assert_eq!(started.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_wait_at_once() {
        let q = Arc::new(Latest::new(3, Duration::from_millis(50)));
        let cancel_after = |ms| {
            let stop = CancellationToken::new();
            let cancel = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                cancel.cancel();
            });
            stop
        };
        let started = Instant::now();
        let stop = cancel_after(10);
        assert_eq!(q.next_batch(&stop).await, vec![], "waiting for a first key");
        assert_eq!(started.elapsed(), Duration::from_millis(10));
        let stop = cancel_after(10);
        push_later(&q, 5, &["a"]);
        assert_eq!(q.next_batch(&stop).await, vec![("a", 1)], "gathering");
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    /// Pushes `keys` after `after_ms`.
    fn push_later(q: &Arc<Latest<&'static str, i32>>, after_ms: u64, keys: &'static [&str]) {
        let q = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            for key in keys {
                q.push(key, 1, |_, new| new);
            }
        });
    }

    #[tokio::test(start_paused = true)]
    async fn keys_coming_one_at_a_time_go_together() {
        let q = Arc::new(Latest::new(3, Duration::from_millis(50)));
        let stop = CancellationToken::new();
        let started = Instant::now();
        push_later(&q, 5, &["a"]);
        push_later(&q, 20, &["b"]);
        push_later(&q, 60, &["c"]);
        assert_eq!(q.next_batch(&stop).await, vec![("a", 1), ("b", 1)]);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(55),
            "a waited 50 ms"
        );
        assert_eq!(q.next_batch(&stop).await, vec![("c", 1)]);
        assert_eq!(started.elapsed(), Duration::from_millis(110));

        let started = Instant::now();
        push_later(&q, 5, &["d"]);
        push_later(&q, 10, &["e", "f", "g"]);
        let full = vec![("d", 1), ("e", 1), ("f", 1)];
        assert_eq!(q.next_batch(&stop).await, full);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(10),
            "full: at once"
        );
        assert_eq!(q.next_batch(&stop).await, vec![("g", 1)]);
        assert_eq!(started.elapsed(), Duration::from_millis(60));
    }

    #[test]
    fn a_drained_queue_gives_its_room_back() {
        let q = Latest::new(1, Duration::ZERO);
        for key in 0..10_000 {
            q.push(key, key, |_, newer| newer);
        }
        assert_eq!(q.take_up_to(usize::MAX).len(), 10_000);
        let waiting = q.waiting.lock().unwrap();
        assert!(waiting.1.capacity() <= 64, "{}", waiting.1.capacity());
        assert!(waiting.0.capacity() <= 128, "{}", waiting.0.capacity());
    }

    #[tokio::test]
    async fn latest_wakes_its_reader() {
        let q = Arc::new(Latest::new(1, Duration::from_secs(1)));
        let stop = CancellationToken::new();
        let reader = {
            let (q, stop) = (q.clone(), stop.clone());
            tokio::spawn(async move { q.next_batch(&stop).await.pop() })
        };
        // The reader runs first and waits: the push must wake it.
        tokio::task::yield_now().await;
        q.push("a", 1, |_, new| new);
        assert_eq!(reader.await.unwrap(), Some(("a", 1)));
    }

    #[tokio::test]
    async fn an_outbox_is_full_at_its_limit_and_drains_after_the_stop() {
        let (out, mut inbox) = outbox(2);
        let stop = CancellationToken::new();
        out.send(1);
        assert!(!out.full());
        out.send(2);
        assert!(out.full(), "clients wait");
        out.send(3);
        assert_eq!(inbox.next(&stop).await, Some(1));
        assert!(out.full());
        assert_eq!(inbox.next(&stop).await, Some(2));
        assert!(!out.full());
        stop.cancel();
        assert_eq!(inbox.next(&stop).await, Some(3));
        out.send(4);
        assert_eq!(inbox.next(&stop).await, None, "closed at the stop");
    }
}

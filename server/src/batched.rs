//! Reads by key that are asked for while one is running go together in
//! the next query. Each query is a round trip to the database (for SQLite,
//! to sqlx's worker thread, the largest CPU cost of a connect), so a
//! reconnect storm, or a phone subscribing to each contact's presence,
//! costs a query per batch rather than one per key. A lone read goes at
//! once: nothing waits to gather a batch. A read that fails (a malformed
//! row, say) fails every key in its batch.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use tokio::sync::oneshot;

type Answer<V> = Result<Option<V>, String>;

/// The read behind a `Batched`: the values found for some of the keys.
type Read<K, V> = Box<
    dyn Fn(Vec<K>) -> Pin<Box<dyn Future<Output = Result<HashMap<K, V>>> + Send>> + Send + Sync,
>;

pub struct Batched<K, V> {
    /// Keys asked for and not yet taken into a read.
    waiting: Mutex<Vec<(K, oneshot::Sender<Answer<V>>)>>,
    /// Held by whoever is reading: one read at a time, so those who ask
    /// meanwhile wait together for the next.
    reader: tokio::sync::Mutex<()>,
    read: Read<K, V>,
}

impl<K: Eq + Hash + Clone, V: Clone> Batched<K, V> {
    /// Reads with `read`, handed a clone of `source` (the store) and the
    /// keys of one batch.
    pub fn new<S, F, Fut>(source: S, read: F) -> Self
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<K, V>>> + Send + 'static,
    {
        Batched {
            waiting: Mutex::default(),
            reader: tokio::sync::Mutex::new(()),
            read: Box::new(move |keys| Box::pin(read(source.clone(), keys))),
        }
    }

    /// The value of `key`; `None` when the read found none.
    pub async fn get(&self, key: K) -> Result<Option<V>> {
        loop {
            let (tx, mut rx) = oneshot::channel();
            self.waiting
                .lock()
                .expect("batch lock")
                .push((key.clone(), tx));
            let answer = tokio::select! {
                biased;
                answer = &mut rx => answer,
                _reading = self.reader.lock() => match rx.try_recv() {
                    // Still waiting: this caller reads for everyone waiting.
                    Err(oneshot::error::TryRecvError::Empty) => {
                        self.read_waiting().await;
                        rx.await
                    }
                    Ok(answer) => Ok(answer),
                    Err(oneshot::error::TryRecvError::Closed) => continue,
                },
            };
            match answer {
                Ok(answer) => return answer.map_err(|e| anyhow!(e)),
                // The caller reading for this key was dropped (its
                // connection went) before answering: ask again.
                Err(_) => continue,
            }
        }
    }

    /// Reads every key waiting, in one query, and answers each.
    async fn read_waiting(&self) {
        let asked = std::mem::take(&mut *self.waiting.lock().expect("batch lock"));
        let keys = asked.iter().map(|(key, _)| key.clone()).collect();
        let found = (self.read)(keys).await.map_err(|e| format!("{e:#}"));
        for (key, answer) in asked {
            let value = match &found {
                Ok(found) => Ok(found.get(&key).cloned()),
                Err(e) => Err(e.clone()),
            };
            // One who stopped waiting needs no answer.
            let _ = answer.send(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;
    use tokio::task::JoinHandle;

    use super::*;

    /// A `Batched` read of squares that records the keys of each query,
    /// fails for a key of 0, and answers only once `gate` gives a permit.
    struct Squares {
        reads: Arc<Mutex<Vec<Vec<u32>>>>,
        gate: Arc<Semaphore>,
        batched: Arc<Batched<u32, u32>>,
    }

    impl Squares {
        fn new(permits: usize) -> Self {
            let (reads, gate) = (
                Arc::<Mutex<Vec<Vec<u32>>>>::default(),
                Arc::new(Semaphore::new(permits)),
            );
            let source = (reads.clone(), gate.clone());
            let batched = Arc::new(Batched::new(
                source,
                |(reads, gate), keys: Vec<u32>| async move {
                    reads.lock().unwrap().push(keys.clone());
                    gate.acquire().await.unwrap().forget();
                    if keys.contains(&0) {
                        return Err(anyhow!("no zero"));
                    }
                    Ok(keys
                        .iter()
                        .filter(|k| **k < 10)
                        .map(|k| (*k, k * k))
                        .collect())
                },
            ));
            Squares {
                reads,
                gate,
                batched,
            }
        }

        fn ask(&self, key: u32) -> JoinHandle<Result<Option<u32>, String>> {
            let batched = self.batched.clone();
            tokio::spawn(async move { batched.get(key).await.map_err(|e| e.to_string()) })
        }

        fn reads(&self) -> Vec<Vec<u32>> {
            self.reads.lock().unwrap().clone()
        }

        /// Lets the spawned tasks run until `reads` queries began and
        /// `waiting` keys wait for the next (the runtime has one thread,
        /// so they run only while this yields).
        async fn until(&self, reads: usize, waiting: usize) {
            while self.reads().len() != reads
                || self.batched.waiting.lock().unwrap().len() != waiting
            {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test]
    async fn a_lone_read_goes_at_once_and_a_key_not_found_is_none() {
        let squares = Squares::new(2);
        assert_eq!(squares.batched.get(3).await.unwrap(), Some(9));
        assert_eq!(squares.batched.get(12).await.unwrap(), None);
        assert_eq!(squares.reads(), [vec![3], vec![12]]);
    }

    #[tokio::test]
    async fn keys_asked_during_a_read_go_together_in_the_next() {
        let squares = Squares::new(0);
        let first = squares.ask(1);
        squares.until(1, 0).await;
        let others = [squares.ask(2), squares.ask(3), squares.ask(2)];
        squares.until(1, 3).await;
        squares.gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(Some(1)));
        let mut answers = Vec::new();
        for other in others {
            answers.push(other.await.unwrap());
        }
        assert_eq!(answers, [Ok(Some(4)), Ok(Some(9)), Ok(Some(4))]);
        assert_eq!(squares.reads(), [vec![1], vec![2, 3, 2]]);
    }

    #[tokio::test]
    async fn a_failed_read_fails_each_key_in_it_and_the_next_read_goes_on() {
        let squares = Squares::new(0);
        let first = squares.ask(1);
        squares.until(1, 0).await;
        let failing = [squares.ask(0), squares.ask(5)];
        squares.until(1, 2).await;
        squares.gate.add_permits(3);
        assert_eq!(first.await.unwrap(), Ok(Some(1)));
        for failed in failing {
            assert_eq!(failed.await.unwrap(), Err("no zero".to_string()));
        }
        assert_eq!(squares.batched.get(5).await.unwrap(), Some(25));
    }

    #[tokio::test]
    async fn keys_taken_by_a_reader_that_was_dropped_are_read_again() {
        let squares = Squares::new(0);
        let first = squares.ask(1);
        squares.until(1, 0).await;
        // 2 asks first, so it takes the lock first (tokio's mutex is fair)
        // and reads for both.
        let (two, three) = (squares.ask(2), squares.ask(3));
        squares.until(1, 2).await;
        squares.gate.add_permits(1);
        assert_eq!(first.await.unwrap(), Ok(Some(1)));
        squares.until(2, 0).await;
        assert_eq!(squares.reads()[1], [2, 3]);
        // Its reader gone mid-read, 3 asks again and is read on its own.
        two.abort();
        squares.until(3, 0).await;
        squares.gate.add_permits(1);
        assert_eq!(three.await.unwrap(), Ok(Some(9)));
        assert_eq!(squares.reads(), [vec![1], vec![2, 3], vec![3]]);
    }
}

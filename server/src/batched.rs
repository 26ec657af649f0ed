//! Reads by key that are asked for while one is running go together in
//! the next query. Each query is a round trip to the database (for SQLite,
//! to sqlx's worker thread, the largest CPU cost of a connect), so a
//! reconnect storm, or a phone subscribing to each contact's presence,
//! costs a query per batch rather than one per key. A lone read goes at
//! once: nothing waits to gather a batch.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use tokio::sync::oneshot;

type Answer<V> = Result<Option<V>, String>;

/// The read behind a `Batched`: the values found for some of the keys.
pub type Read<K, V> = Box<
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
    pub fn new(read: Read<K, V>) -> Self {
        Batched {
            waiting: Mutex::default(),
            reader: tokio::sync::Mutex::new(()),
            read,
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

    use super::*;

    /// A read of squares that records the keys of each query, fails for a
    /// key of 0, and waits for a permit of `gate` before answering.
    fn squares(reads: Arc<Mutex<Vec<Vec<u32>>>>, gate: Arc<Semaphore>) -> Batched<u32, u32> {
        Batched::new(Box::new(move |keys: Vec<u32>| {
            let (reads, gate) = (reads.clone(), gate.clone());
            Box::pin(async move {
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
            })
        }))
    }

    /// Lets the spawned tasks run until `done` holds (the runtime has one
    /// thread, so they run only while this yields).
    async fn until(done: impl Fn() -> bool) {
        while !done() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_lone_read_goes_at_once_and_a_key_not_found_is_none() {
        let reads = Arc::default();
        let batched = squares(Arc::clone(&reads), Arc::new(Semaphore::new(2)));
        assert_eq!(batched.get(3).await.unwrap(), Some(9));
        assert_eq!(batched.get(12).await.unwrap(), None);
        assert_eq!(*reads.lock().unwrap(), [vec![3], vec![12]]);
    }

    #[tokio::test]
    async fn keys_asked_during_a_read_go_together_in_the_next() {
        let (reads, gate) = (Arc::default(), Arc::new(Semaphore::new(0)));
        let batched = Arc::new(squares(Arc::clone(&reads), gate.clone()));
        let ask = |key| {
            let batched = batched.clone();
            tokio::spawn(async move { batched.get(key).await.unwrap() })
        };
        let first = ask(1);
        until(|| reads.lock().unwrap().len() == 1).await;
        let others = [ask(2), ask(3), ask(2)];
        until(|| batched.waiting.lock().unwrap().len() == 3).await;
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Some(1));
        let mut answers = Vec::new();
        for other in others {
            answers.push(other.await.unwrap());
        }
        assert_eq!(answers, [Some(4), Some(9), Some(4)]);
        assert_eq!(*reads.lock().unwrap(), [vec![1], vec![2, 3, 2]]);
    }

    #[tokio::test]
    async fn a_failed_read_fails_each_key_in_it_and_the_next_read_goes_on() {
        let (reads, gate) = (Arc::default(), Arc::new(Semaphore::new(0)));
        let batched = Arc::new(squares(Arc::clone(&reads), gate.clone()));
        let ask = |key| {
            let batched = batched.clone();
            tokio::spawn(async move { batched.get(key).await.map_err(|e| e.to_string()) })
        };
        let first = ask(1);
        until(|| reads.lock().unwrap().len() == 1).await;
        let failing = [ask(0), ask(5)];
        until(|| batched.waiting.lock().unwrap().len() == 2).await;
        gate.add_permits(3);
        assert_eq!(first.await.unwrap(), Ok(Some(1)));
        for failed in failing {
            assert_eq!(failed.await.unwrap(), Err("no zero".to_string()));
        }
        assert_eq!(batched.get(5).await.unwrap(), Some(25));
    }

    #[tokio::test]
    async fn keys_taken_by_a_reader_that_was_dropped_are_read_again() {
        let (reads, gate) = (Arc::default(), Arc::new(Semaphore::new(0)));
        let batched = Arc::new(squares(Arc::clone(&reads), gate.clone()));
        let ask = |key| {
            let batched = batched.clone();
            tokio::spawn(async move { batched.get(key).await.unwrap() })
        };
        let first = ask(1);
        until(|| reads.lock().unwrap().len() == 1).await;
        let waiting = ask(2);
        until(|| batched.waiting.lock().unwrap().len() == 1).await;
        // `waiting` takes over the read once the first reader is gone...
        first.abort();
        until(|| reads.lock().unwrap().len() == 2).await;
        // ... and the next one asking while it reads waits for it.
        let later = ask(4);
        until(|| batched.waiting.lock().unwrap().len() == 1).await;
        gate.add_permits(2);
        assert_eq!(waiting.await.unwrap(), Some(4));
        assert_eq!(later.await.unwrap(), Some(16));
        assert_eq!(*reads.lock().unwrap(), [vec![1], vec![2], vec![4]]);
    }
}

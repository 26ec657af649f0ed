//! How events reach the app: a `Listener` it implements (in Rust, Kotlin,
//! Swift or Python), called from one SDK task in the order events arrived.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use crate::types::{ConnectionState, Event};

#[uniffi::export(foreign)]
pub trait Listener: Send + Sync {
    /// Called for each event, one at a time; return quickly (hand the event
    /// to the app's own thread or queue).
    fn on_event(&self, event: Event);
}

/// Calls `listener` with each event until the session signs out (its last
/// event) or is gone, so no call reaches an app that has moved on (a Python
/// interpreter shutting down, say). A listener that fails (a foreign
/// exception surfaces as a panic here) loses that event, not the stream.
pub(crate) fn dispatch(
    listener: Arc<dyn Listener>,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let last = event
                == Event::Connection {
                    state: ConnectionState::SignedOut,
                };
            let listener = listener.clone();
            let call = tokio::task::spawn_blocking(move || {
                catch_unwind(AssertUnwindSafe(|| listener.on_event(event)))
            });
            if !matches!(call.await, Ok(Ok(()))) {
                tracing::warn!("the app's listener failed on an event");
            }
            if last {
                return;
            }
        }
    })
}

/// A `Listener` for Rust apps and tests: events queue up and are read with
/// `next`.
pub struct EventQueue {
    tx: mpsc::UnboundedSender<Event>,
    rx: Mutex<mpsc::UnboundedReceiver<Event>>,
}

impl EventQueue {
    pub fn new() -> Arc<EventQueue> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(EventQueue {
            tx,
            rx: Mutex::new(rx),
        })
    }

    /// The next event, or `None` if none arrives within `wait`.
    pub async fn next(&self, wait: Duration) -> Option<Event> {
        let mut rx = self.rx.lock().await;
        tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
    }

    /// Skips events until `pick` accepts one; `None` after `wait` in all.
    pub async fn until<T>(
        &self,
        wait: Duration,
        mut pick: impl FnMut(Event) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.rx.lock().await;
        loop {
            let event = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten()?;
            if let Some(found) = pick(event) {
                return Some(found);
            }
        }
    }
}

impl Listener for EventQueue {
    fn on_event(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}

//! How events reach the app: a `Listener` it implements (in Rust, Kotlin,
//! Swift or Python), called from one SDK task in the order events arrived.
//!
//! Every session's dispatcher is counted in one process-wide registry, so
//! that [`shutdown`] can stop them all and wait for them before a process
//! (above all a Python interpreter) tears itself down.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;

use crate::error::SdkError;
use crate::types::{ConnectionState, Event};

#[uniffi::export(foreign)]
pub trait Listener: Send + Sync {
    /// Called for each event, one at a time; return quickly (hand the event
    /// to the app's own thread or queue).
    fn on_event(&self, event: Event);
}

/// How long `shutdown` waits for listener calls in progress: listeners
/// return quickly, and an exit must not hang on one that does not.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The process-wide state of event delivery.
struct Delivery {
    /// Set once by `shutdown`, never cleared.
    stopped: AtomicBool,
    /// The same, for dispatchers idle in `recv` (a watch channel keeps the
    /// value, so a dispatcher that looks after the send still sees it).
    stop: watch::Sender<bool>,
    /// How many dispatchers still hold a listener; `idle` is signalled when
    /// it drops to 0.
    live: std::sync::Mutex<usize>,
    idle: Condvar,
    /// The process the dispatchers run in: a forked child inherits the
    /// count but not the threads, so it must not wait for them.
    pid: u32,
}

static DELIVERY: LazyLock<Delivery> = LazyLock::new(|| Delivery {
    stopped: AtomicBool::new(false),
    stop: watch::Sender::new(false),
    live: std::sync::Mutex::new(0),
    idle: Condvar::new(),
    pid: std::process::id(),
});

thread_local! {
    /// True on a thread while it runs the app's `on_event`.
    static IN_LISTENER: Cell<bool> = const { Cell::new(false) };
}

fn stopped() -> bool {
    DELIVERY.stopped.load(Ordering::SeqCst)
}

/// `SdkError::ShutDown` once `shutdown` was called.
pub(crate) fn ensure_running() -> Result<(), SdkError> {
    if stopped() {
        Err(SdkError::ShutDown)
    } else {
        Ok(())
    }
}

/// One live dispatcher in `DELIVERY.live`, counted out when dropped.
struct Live(());

impl Live {
    /// Counts a new dispatcher in, unless delivery has stopped. The check
    /// is made under the lock `shutdown` waits with, so a dispatcher is
    /// either refused or waited for.
    fn enter() -> Result<Live, SdkError> {
        let mut live = DELIVERY.live.lock().unwrap_or_else(PoisonError::into_inner);
        ensure_running()?;
        *live += 1;
        Ok(Live(()))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut live = DELIVERY.live.lock().unwrap_or_else(PoisonError::into_inner);
        *live -= 1;
        if *live == 0 {
            DELIVERY.idle.notify_all();
        }
    }
}

/// Stops event delivery for good and waits (at most 5 s) until no listener
/// call is in progress and every listener has been released; afterwards
/// no SDK thread calls into the app, and signing in fails with
/// `SdkError::ShutDown`. Call it when the app exits without signing out.
/// The Python package calls it itself at interpreter exit (`atexit`), while
/// the interpreter can still run a listener to its end; Kotlin and Swift
/// apps may call it if they need the same. Calling it again does no harm.
/// Called from a listener (or from a Rust app's async runtime, whose thread
/// the dispatchers may need) it stops delivery without waiting.
#[uniffi::export]
pub fn shutdown() {
    DELIVERY.stopped.store(true, Ordering::SeqCst);
    DELIVERY.stop.send_replace(true);
    // Waiting would deadlock: the listener call we are in (or a dispatcher
    // needing this runtime thread) is one of the things waited for.
    if IN_LISTENER.get()
        || tokio::runtime::Handle::try_current().is_ok()
        || std::process::id() != DELIVERY.pid
    {
        return;
    }
    let live = DELIVERY.live.lock().unwrap_or_else(PoisonError::into_inner);
    let (live, waited) = DELIVERY
        .idle
        .wait_timeout_while(live, SHUTDOWN_WAIT, |n| *n > 0)
        .unwrap_or_else(PoisonError::into_inner);
    if waited.timed_out() {
        tracing::warn!(
            dispatchers = *live,
            "shutdown: a listener did not return within {:?}",
            SHUTDOWN_WAIT
        );
    }
}

/// Calls `listener` with each event until the session signs out (its last
/// event) or is gone, or until [`shutdown`]. Only `sign_out` or `shutdown`
/// having returned guarantees that no call is still to come: without them
/// the last events (a dropped session's `SignedOut`) arrive a little
/// later, on an SDK thread. A listener that fails (a foreign exception
/// surfaces as a panic here) loses that event, not the stream. After
/// `shutdown` it fails with `SdkError::ShutDown`, dropping `listener` at
/// once on the calling thread.
pub(crate) fn dispatch(
    listener: Arc<dyn Listener>,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> Result<JoinHandle<()>, SdkError> {
    let live = Live::enter()?;
    let mut stop = DELIVERY.stop.subscribe();
    Ok(tokio::spawn(async move {
        // Locals drop in reverse order: the listener (whose drop frees the
        // app's object, a call into its language) before the count goes
        // down, so `shutdown` waits for that too.
        let _counted = live;
        let app = listener;
        loop {
            let event = tokio::select! {
                biased;
                _ = stop.wait_for(|&halt| halt) => return,
                event = events.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
            };
            let last = event
                == Event::Connection {
                    state: ConnectionState::SignedOut,
                };
            let listener = app.clone();
            let call = tokio::task::spawn_blocking(move || {
                // The call may have waited for a free thread past `shutdown`.
                if stopped() {
                    return Ok(());
                }
                IN_LISTENER.set(true);
                let called = catch_unwind(AssertUnwindSafe(|| listener.on_event(event)));
                IN_LISTENER.set(false);
                called
            });
            if !matches!(call.await, Ok(Ok(()))) {
                tracing::warn!("the app's listener failed on an event");
            }
            if last {
                return;
            }
        }
    }))
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

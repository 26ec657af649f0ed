//! The Switchboard client SDK: what a calling app or a robot links against.
//!
//! [`Switchboard`] signs in (a phone number and its one-time code, or a
//! robot's id and secret) and gives a [`Session`]: profiles, presence,
//! contact discovery, calls, pairing, robot commands and the WebRTC
//! signalling of a call. Everything the server says arrives as one ordered
//! stream of [`Event`]s at the app's [`Listener`]. The SDK keeps the tokens
//! fresh, reconnects and restores subscriptions by itself.
//!
//! The same API is exported with uniffi to Kotlin, Swift and Python
//! (`scripts/bindings`); errors cross it as [`SdkError`], never as panics.
//! [`shutdown`] stops all event delivery before a process exits (the Python
//! package calls it at interpreter exit by itself).

mod api;
mod client;
mod error;
mod link;
mod listener;
#[cfg(feature = "media")]
pub mod media;
mod router;
mod session;
mod trust;
mod types;

pub use client::Switchboard;
pub use error::SdkError;
pub use listener::{shutdown, EventQueue, Listener};
pub use session::{PairingWait, PendingCommand, Session};
pub use types::*;

uniffi::setup_scaffolding!();

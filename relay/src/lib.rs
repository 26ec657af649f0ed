//! The media relay (an SFU): a room per accepted call, one PeerConnection
//! per participant device, every inbound track forwarded to the other
//! participants. Signalling arrives as [`WebRtcSignal`]s from the broker
//! hooks and leaves as [`Outgoing`] messages the server publishes on
//! `session/<sid>/webrtc/<clientId>/down`.

mod error;
mod forward;
pub mod keyframes;
pub mod metrics;
mod negotiation;
mod offered;
mod peer;
mod pli;
pub mod ports;
mod room;
mod sdp;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use switchboard_protocol::payload::WebRtcSignal;
use switchboard_protocol::{ClientId, Sid};
use tokio::sync::mpsc;

pub use error::RelayError;
pub use metrics::RelayMetrics;

/// How the relay's PeerConnections bind and what they advertise.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The address the relay's UDP sockets bind; a wildcard binds every
    /// interface but loopback (webrtc 0.21's rule).
    pub bind_ip: IpAddr,
    /// `first..=last` ports for the relay's sockets; `None` lets the system
    /// pick.
    pub ports: Option<(u16, u16)>,
    /// The public address to advertise instead of `bind_ip`, for a relay in
    /// a container or behind a 1:1 NAT.
    pub nat_1to1_ip: Option<IpAddr>,
}

/// A message for a participant device, or a refusal to report to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Signal {
        sid: Sid,
        client: ClientId,
        signal: WebRtcSignal,
    },
    Refused {
        sid: Sid,
        client: ClientId,
        reason: String,
    },
}

pub(crate) struct Shared {
    pub config: RelayConfig,
    pub ports: Mutex<Option<ports::PortRange>>,
    pub out: mpsc::UnboundedSender<Outgoing>,
    pub metrics: RelayMetrics,
}

/// The relay's handle: cheap to clone, shared by the hooks and the call
/// publisher.
#[derive(Clone)]
pub struct Relay {
    shared: Arc<Shared>,
    rooms: Arc<Mutex<HashMap<Sid, room::Handle>>>,
}

impl Relay {
    /// The relay and the queue of messages it wants published.
    pub fn new(
        config: RelayConfig,
        metrics: RelayMetrics,
    ) -> (Relay, mpsc::UnboundedReceiver<Outgoing>) {
        let (out, queue) = mpsc::unbounded_channel();
        let ports = config
            .ports
            .map(|(first, last)| ports::PortRange::new(first, last).expect("checked by config"));
        let relay = Relay {
            shared: Arc::new(Shared {
                config,
                ports: Mutex::new(ports),
                out,
                metrics,
            }),
            rooms: Arc::default(),
        };
        (relay, queue)
    }

    /// Opens the room of an accepted call for its two devices. Opening an
    /// open room changes nothing.
    pub fn open(&self, sid: &Sid, participants: [ClientId; 2]) {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        if rooms.contains_key(sid) {
            return;
        }
        let handle = room::spawn(sid.clone(), participants, self.shared.clone());
        rooms.insert(sid.clone(), handle);
    }

    /// Closes the room: every PeerConnection, socket and task of the call
    /// is released once this returns.
    pub async fn close(&self, sid: &Sid) {
        let handle = self.rooms.lock().expect("rooms lock").remove(sid);
        if let Some(handle) = handle {
            handle.close().await;
        }
    }

    /// Hands a participant's message to its room, in arrival order.
    pub fn signal(
        &self,
        sid: &Sid,
        from: &ClientId,
        signal: WebRtcSignal,
    ) -> Result<(), RelayError> {
        let rooms = self.rooms.lock().expect("rooms lock");
        let room = rooms.get(sid).ok_or(RelayError::NoRoom)?;
        if !room.participants.contains(from) {
            return Err(RelayError::NotParticipant);
        }
        if room.signal(from.clone(), signal) {
            Ok(())
        } else {
            Err(RelayError::Busy)
        }
    }

    /// A device went offline: its PeerConnections go, the rooms stay for
    /// the call (the device may come back and offer again).
    pub fn leave(&self, client: &ClientId) {
        let rooms = self.rooms.lock().expect("rooms lock");
        for room in rooms.values().filter(|r| r.participants.contains(client)) {
            room.leave(client.clone());
        }
    }

    /// Closes every room, at shutdown.
    pub async fn close_all(&self) {
        let rooms: Vec<room::Handle> = {
            let mut rooms = self.rooms.lock().expect("rooms lock");
            rooms.drain().map(|(_, handle)| handle).collect()
        };
        for handle in rooms {
            handle.close().await;
        }
    }

    pub fn rooms(&self) -> usize {
        self.rooms.lock().expect("rooms lock").len()
    }
}

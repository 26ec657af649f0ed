//! One call's media room: an actor task that owns the PeerConnections of
//! the call's devices, each one's negotiation, and which device receives
//! which source. Messages from a device are handled one at a time in
//! arrival order, so an offer is always applied before the candidates that
//! follow it. `negotiation` says which offer/answer step comes next, `sdp`
//! takes it on the connection, `forward` moves the RTP, and `peer` opens
//! connections on the relay's ports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use switchboard_protocol::payload::{IceCandidate, WebRtcSignal};
use switchboard_protocol::{ClientId, Sid};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::error::SignalError;
use crate::forward::{Outbound, Source};
use crate::negotiation::{Action, Done, Negotiation, Sent};
use crate::offered::{self, Line};
use crate::peer::{self, PeerEvent, What};
use crate::sdp;
use crate::{Outgoing, Shared};

/// Signalling messages a room holds before it refuses more: a device
/// sends a handful per negotiation, so only a flood reaches it.
pub const SIGNAL_QUEUE: usize = 64;

/// What a room handles, one at a time in the order sent: a device's
/// signal is never overtaken by its own leaving.
enum Command {
    Signal(ClientId, WebRtcSignal),
    Leave(ClientId),
    Close(oneshot::Sender<()>),
}

pub struct Handle {
    pub participants: [ClientId; 2],
    tx: mpsc::UnboundedSender<Command>,
    /// Signals queued and not yet taken, at most `SIGNAL_QUEUE`; the
    /// server's own commands are few and never refused.
    signals: Arc<AtomicUsize>,
}

impl Handle {
    /// Queues a device's message; false when the room's queue is full.
    pub fn signal(&self, from: ClientId, signal: WebRtcSignal) -> bool {
        if self.signals.fetch_add(1, Ordering::Relaxed) >= SIGNAL_QUEUE {
            self.signals.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        if self.tx.send(Command::Signal(from, signal)).is_err() {
            self.signals.fetch_sub(1, Ordering::Relaxed);
        }
        true
    }

    pub fn leave(&self, client: ClientId) {
        let _ = self.tx.send(Command::Leave(client));
    }

    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

pub fn spawn(sid: Sid, participants: [ClientId; 2], shared: Arc<Shared>) -> Handle {
    let (tx, commands) = mpsc::unbounded_channel();
    let signals = Arc::new(AtomicUsize::new(0));
    shared.metrics.rooms.inc();
    let room = Room {
        sid,
        participants: participants.clone(),
        shared,
        peers: HashMap::new(),
        sources: Vec::new(),
        next_source: 0,
        generations: 0,
        tasks: JoinSet::new(),
    };
    tokio::spawn(room.run(commands, signals.clone()));
    Handle {
        participants,
        tx,
        signals,
    }
}

/// One device's connection to the relay.
struct Peer {
    pc: Arc<dyn PeerConnection>,
    generation: u64,
    port: Option<u16>,
    negotiation: Negotiation,
    /// Sources this device receives.
    receiving: HashMap<u64, Outbound>,
    /// Tracks in the answer to its first offer that carry no source yet:
    /// the other device's media goes on them without a new offer.
    spare: Vec<Outbound>,
}

struct Room {
    sid: Sid,
    participants: [ClientId; 2],
    shared: Arc<Shared>,
    peers: HashMap<ClientId, Peer>,
    sources: Vec<Source>,
    next_source: u64,
    /// Connections made so far, numbering each.
    generations: u64,
    /// Reading inbound tracks and writing outbound ones; aborted at close.
    tasks: JoinSet<()>,
}

impl Room {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        signals: Arc<AtomicUsize>,
    ) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Signal(from, signal)) => {
                        signals.fetch_sub(1, Ordering::Relaxed);
                        if let Err(refusal) = self.handle(&from, signal, &events_tx).await {
                            let _ = self.shared.out.send(Outgoing::Refused {
                                sid: self.sid.clone(),
                                client: from,
                                reason: refusal.to_string(),
                            });
                        }
                    }
                    Some(Command::Leave(client)) => self.drop_peer(&client).await,
                    Some(Command::Close(done)) => {
                        self.close().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.close().await;
                        return;
                    }
                },
                Some(event) = events.recv() => self.on_event(event).await,
            }
        }
    }

    async fn handle(
        &mut self,
        from: &ClientId,
        signal: WebRtcSignal,
        events: &mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<(), SignalError> {
        match signal {
            WebRtcSignal::Offer { sdp } => self.on_offer(from, sdp, events).await,
            WebRtcSignal::Answer { sdp } => self.on_answer(from, sdp).await,
            WebRtcSignal::Candidate { candidate } => self.on_candidate(from, candidate).await,
        }
    }

    async fn on_offer(
        &mut self,
        from: &ClientId,
        sdp: String,
        events: &mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<(), SignalError> {
        let offer = RTCSessionDescription::offer(sdp).map_err(SignalError::BadOffer)?;
        if let Some(peer) = self.peers.get(from) {
            // New DTLS keys: the device made a new connection (after a
            // reconnect the broker took for a takeover, say). webrtc 0.21
            // would apply its offer to the old one as an ICE restart, and
            // the handshake with the new keys would never come.
            let current = peer.pc.remote_description().await;
            if current.is_some_and(|c| sdp::fingerprint(&c.sdp) != sdp::fingerprint(&offer.sdp)) {
                self.drop_peer(from).await;
            }
        }
        let fresh = !self.peers.contains_key(from);
        if fresh {
            let peer = self.new_peer(from, events).await?;
            self.peers.insert(from.clone(), peer);
        }
        let mut answered = self.answer(from, offer.clone(), fresh).await;
        if answered.is_err() && !fresh {
            // A device that restarted its own connection offers anew, with
            // new ICE and DTLS credentials: start over with a new one.
            self.drop_peer(from).await;
            let peer = self.new_peer(from, events).await?;
            self.peers.insert(from.clone(), peer);
            answered = self.answer(from, offer, true).await;
        }
        let sdp = match answered {
            Ok(sdp) => sdp,
            Err(e) => {
                self.drop_peer(from).await;
                return Err(e);
            }
        };
        self.send(from, WebRtcSignal::Answer { sdp });
        self.subscribe_to_all(from).await;
        self.renegotiate(from).await;
        Ok(())
    }

    /// Applies a device's offer and returns the relay's answer; on a
    /// `fresh` connection, with a track to send on each m-line the device
    /// receives on.
    async fn answer(
        &mut self,
        from: &ClientId,
        offer: RTCSessionDescription,
        fresh: bool,
    ) -> Result<String, SignalError> {
        let other = self.participants.iter().find(|c| *c != from).cloned();
        let peer = self.peers.get_mut(from).expect("peer made before");
        // Glare: the relay yields, and offers again once it answered.
        let roll_back = peer.negotiation.received(Sent::Offer)? == Action::RollBackAndAnswer;
        let lines = if fresh {
            offered::receiving_lines(&offer.sdp)
        } else {
            Vec::new()
        };
        sdp::apply_offer(peer.pc.as_ref(), offer, roll_back).await?;
        if let Some(other) = other {
            for line in lines {
                if let Some(out) = spare_track(peer.pc.as_ref(), line, &other).await {
                    peer.spare.push(out);
                }
            }
        }
        let answer = sdp::answer(peer.pc.as_ref()).await?;
        // In the description the device gets now: packets may flow.
        peer.spare.iter().for_each(Outbound::ready);
        Ok(answer)
    }

    async fn on_answer(&mut self, from: &ClientId, sdp: String) -> Result<(), SignalError> {
        let answer = RTCSessionDescription::answer(sdp).map_err(SignalError::BadAnswer)?;
        let peer = self.peers.get_mut(from).ok_or(SignalError::NoConnection)?;
        peer.negotiation.received(Sent::Answer)?;
        sdp::apply_answer(peer.pc.as_ref(), answer).await?;
        if let Action::Ready(now_ready) = peer.negotiation.done(Done::AppliedAnswer) {
            for id in &now_ready {
                if let Some(out) = peer.receiving.get(id) {
                    out.ready();
                }
            }
            // A receiver that just joined can decode nothing until a keyframe.
            self.ask_keyframes(now_ready).await;
        }
        self.renegotiate(from).await;
        Ok(())
    }

    async fn on_candidate(
        &mut self,
        from: &ClientId,
        candidate: Option<IceCandidate>,
    ) -> Result<(), SignalError> {
        let Some(candidate) = candidate else {
            return Ok(()); // end of candidates: nothing to do
        };
        let peer = self
            .peers
            .get(from)
            .ok_or(SignalError::CandidateBeforeOffer)?;
        sdp::add_candidate(peer.pc.as_ref(), candidate).await
    }

    async fn new_peer(
        &mut self,
        client: &ClientId,
        events: &mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<Peer, SignalError> {
        self.generations += 1;
        let generation = self.generations;
        let (pc, port) = peer::open(&self.shared, (client.clone(), generation), events).await?;
        self.shared.metrics.peer_connections.inc();
        Ok(Peer {
            pc,
            generation,
            port,
            negotiation: Negotiation::default(),
            receiving: HashMap::new(),
            spare: Vec::new(),
        })
    }

    fn send(&self, to: &ClientId, signal: WebRtcSignal) {
        let _ = self.shared.out.send(Outgoing::Signal {
            sid: self.sid.clone(),
            client: to.clone(),
            signal,
        });
    }

    /// Offers the device its current set of tracks when they changed and no
    /// other offer is outstanding.
    async fn renegotiate(&mut self, client: &ClientId) {
        let Some(peer) = self.peers.get_mut(client) else {
            return;
        };
        if !peer.negotiation.wants_offer() {
            return;
        }
        match sdp::offer(peer.pc.as_ref()).await {
            Ok(sdp) => {
                peer.negotiation.done(Done::Offered);
                self.send(client, WebRtcSignal::Offer { sdp });
            }
            Err(e) => tracing::warn!(%client, "relay offer: {e}"),
        }
    }

    async fn on_event(&mut self, event: PeerEvent) {
        let peer = self.peers.get(&event.client);
        let Some(peer) = peer.filter(|p| p.generation == event.generation) else {
            return; // from a connection already replaced or dropped
        };
        let client = event.client;
        match event.what {
            What::Candidate(candidate) => {
                let candidate = match candidate {
                    Some(c) => Some(sdp::with_mid(peer.pc.as_ref(), c).await),
                    None => None,
                };
                self.send(&client, WebRtcSignal::Candidate { candidate })
            }
            What::Track(track) => self.on_track(client, track).await,
            What::Connected => {
                // Keyframes sent before could not reach it, and it can
                // decode nothing without one.
                let ready = peer.receiving.iter().filter(|(_, out)| out.is_ready());
                let ready: Vec<u64> = ready.map(|(id, _)| *id).collect();
                self.ask_keyframes(ready).await;
            }
            What::Failed => {
                tracing::info!(sid = %self.sid, %client, "relay peer connection failed");
                self.drop_peer(&client).await;
            }
        }
    }

    /// Asks the senders of `sources` for a keyframe.
    async fn ask_keyframes(&self, sources: Vec<u64>) {
        for id in sources {
            if let Some(source) = self.sources.iter().find(|s| s.id == id) {
                source.ask_keyframe().await;
            }
        }
    }

    /// A device started sending a track: subscribe the other devices, then
    /// read it onto the bus.
    async fn on_track(&mut self, from: ClientId, track: Arc<dyn TrackRemote>) {
        let id = self.next_source;
        let Some(source) = Source::new(id, from.clone(), &track, &self.shared).await else {
            return;
        };
        self.next_source += 1;
        tracing::debug!(sid = %self.sid, %from, mime = %source.mime(), "relay source");
        self.sources.push(source);
        self.shared.metrics.sources.inc();
        let others: Vec<ClientId> = self.peers.keys().filter(|c| **c != from).cloned().collect();
        for client in others {
            self.subscribe(&client, id).await;
            self.renegotiate(&client).await;
        }
        let source = self.sources.last().expect("pushed above");
        source.forward(track, &mut self.tasks);
    }

    async fn subscribe_to_all(&mut self, client: &ClientId) {
        let ids: Vec<u64> = self
            .sources
            .iter()
            .filter(|s| &s.from != client)
            .map(|s| s.id)
            .collect();
        for id in ids {
            self.subscribe(client, id).await;
        }
    }

    /// Adds a track carrying source `id` to `client`'s connection.
    async fn subscribe(&mut self, client: &ClientId, id: u64) {
        let Some(source) = self.sources.iter().find(|s| s.id == id) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(client) else {
            return;
        };
        if peer.receiving.contains_key(&id) {
            return;
        }
        if let Some(i) = peer.spare.iter().position(|out| out.fits(source)) {
            // Already in the device's description, and ready.
            let mut out = peer.spare.swap_remove(i);
            out.carry(source, &self.shared, &mut self.tasks);
            peer.receiving.insert(id, out);
            return;
        }
        if let Some(i) = peer.spare.iter().position(|out| out.kind() == source.kind) {
            // Not in the source's codec: its line takes the new track
            // (add_track reuses it) rather than show the device a track
            // that never plays beside the one that does.
            peer.spare.swap_remove(i).remove(peer.pc.as_ref()).await;
        }
        let added = Outbound::add(
            peer.pc.as_ref(),
            source.kind,
            source.codec.clone(),
            &source.from,
        );
        match added.await {
            Ok(mut out) => {
                out.carry(source, &self.shared, &mut self.tasks);
                peer.receiving.insert(id, out);
                peer.negotiation.done(Done::AddedTrack(id));
            }
            Err(e) => tracing::warn!(%client, "relay add_track: {e}"),
        }
    }

    /// Closes a device's connection and unsubscribes the others from what
    /// it sent.
    async fn drop_peer(&mut self, client: &ClientId) {
        let Some(peer) = self.peers.remove(client) else {
            return;
        };
        self.close_peer(peer).await;
        let gone: Vec<u64> = self
            .sources
            .iter()
            .filter(|s| &s.from == client)
            .map(|s| s.id)
            .collect();
        self.sources.retain(|s| &s.from != client);
        self.shared.metrics.sources.dec_by(gone.len() as i64);
        let others: Vec<ClientId> = self.peers.keys().cloned().collect();
        for other in others {
            let peer = self.peers.get_mut(&other).expect("listed");
            for id in &gone {
                if let Some(out) = peer.receiving.remove(id) {
                    out.remove(peer.pc.as_ref()).await;
                    peer.negotiation.done(Done::RemovedTrack(*id));
                }
            }
            self.renegotiate(&other).await;
        }
    }

    async fn close_peer(&mut self, peer: Peer) {
        peer.receiving.values().for_each(Outbound::stop);
        // Forget the results of tasks that ended.
        while self.tasks.try_join_next().is_some() {}
        if let Err(e) = peer.pc.close().await {
            tracing::debug!(sid = %self.sid, "closing a relay peer connection: {e}");
        }
        peer::release_port(&self.shared, peer.port);
        self.shared.metrics.peer_connections.dec();
    }

    async fn close(&mut self) {
        for (_, peer) in std::mem::take(&mut self.peers) {
            self.close_peer(peer).await;
        }
        self.shared
            .metrics
            .sources
            .dec_by(self.sources.len() as i64);
        self.sources.clear();
        self.tasks.shutdown().await;
        self.shared.metrics.rooms.dec();
    }
}

/// A track for `line` from `other`, in the first of the line's codecs the
/// relay can send; none when it can send none of them (the other device's
/// media then comes with an offer of the relay's).
async fn spare_track(pc: &dyn PeerConnection, line: Line, other: &ClientId) -> Option<Outbound> {
    for codec in line.codecs {
        if let Ok(out) = Outbound::add(pc, line.kind, codec, other).await {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_refuses_signals_past_its_queue() {
        let client: ClientId = "0123456789abcdef0123456789abcdef:phone".parse().unwrap();
        let (tx, _unread) = mpsc::unbounded_channel();
        let handle = Handle {
            participants: [client.clone(), client.clone()],
            tx,
            signals: Arc::default(),
        };
        let candidate = || WebRtcSignal::Candidate { candidate: None };
        for _ in 0..SIGNAL_QUEUE {
            assert!(handle.signal(client.clone(), candidate()));
        }
        assert!(!handle.signal(client.clone(), candidate()), "full");
        // The room taking one makes room for one.
        handle.signals.fetch_sub(1, Ordering::Relaxed);
        assert!(handle.signal(client.clone(), candidate()));
        assert!(!handle.signal(client.clone(), candidate()));
    }
}

//! What the relay counts, registered in the server's Prometheus registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct RelayMetrics {
    pub rooms: Gauge,
    pub peer_connections: Gauge,
    pub sources: Gauge,
    pub packets_forwarded: Counter,
    pub bytes_forwarded: Counter,
    pub keyframe_requests: Counter,
}

impl RelayMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "relay_rooms",
            "Media rooms open (one per accepted call)",
            self.rooms.clone(),
        );
        registry.register(
            "relay_peer_connections",
            "PeerConnections between devices and the relay",
            self.peer_connections.clone(),
        );
        registry.register(
            "relay_sources",
            "Tracks devices send to the relay",
            self.sources.clone(),
        );
        registry.register(
            "relay_forwarded_packets",
            "RTP packets forwarded to receivers",
            self.packets_forwarded.clone(),
        );
        registry.register(
            "relay_forwarded_bytes",
            "RTP payload bytes forwarded to receivers",
            self.bytes_forwarded.clone(),
        );
        registry.register(
            "relay_keyframe_requests",
            "Keyframe requests (PLI) sent to senders",
            self.keyframe_requests.clone(),
        );
    }
}

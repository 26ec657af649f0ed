//! One MQTT connection of the link: where the broker is, rumqttc's client
//! and event loop with the count of what sits in its queue, and the
//! subscriptions to restore and acknowledge.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use std::sync::Arc;

use rumqttc::{AsyncClient, EventLoop, MqttOptions, QoS, TlsConfiguration, Transport};
use tokio::sync::oneshot;

use super::Request;
use crate::error::SdkError;

/// rumqttc's request queue; the task keeps at most half of it in use.
const RUMQTTC_CAP: usize = 128;
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Where the broker is: `mqtt://host:port` or `ws://host:port/path`, or
/// over TLS `mqtts://host:port` or `wss://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broker {
    url: String,
    host: String,
    port: u16,
    websocket: bool,
    tls: bool,
}

impl Broker {
    pub fn parse(url: &str) -> Result<Broker, SdkError> {
        let bad = |why: &str| SdkError::InvalidArgument {
            reason: format!("broker URL {url:?}: {why}"),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        // (WebSocket, TLS, the port when none is given)
        let (websocket, tls, port) = match parsed.scheme() {
            "mqtt" | "tcp" => (false, false, 1883),
            "mqtts" | "ssl" => (false, true, 8883),
            "ws" => (true, false, 80),
            "wss" => (true, true, 443),
            _ => return Err(bad("must be mqtt://, mqtts://, ws:// or wss://")),
        };
        let host = parsed.host_str().ok_or_else(|| bad("no host"))?.to_owned();
        let port = parsed.port().unwrap_or(port);
        Ok(Broker {
            url: url.to_owned(),
            host,
            port,
            websocket,
            tls,
        })
    }
}

pub(crate) struct Identity {
    pub broker: Broker,
    pub client_id: String,
    pub username: String,
    pub tls: Arc<rustls::ClientConfig>,
}

/// Subscriptions: the filters to restore on a new session, and the
/// SUBSCRIBEs waiting for their SUBACK.
#[derive(Default)]
pub(super) struct Subs {
    pub(super) filters: BTreeSet<String>,
    /// Handed to rumqttc, packet id not yet known (it hands them out in
    /// order, so the next `Outgoing::Subscribe` is the front one).
    pub(super) unsent: VecDeque<(String, Option<oneshot::Sender<bool>>)>,
    pub(super) sent: HashMap<u16, (String, Option<oneshot::Sender<bool>>)>,
    /// Written on a connection that dropped before the SUBACK.
    pub(super) retry: Vec<(String, Option<oneshot::Sender<bool>>)>,
}

pub(super) struct Conn {
    pub(super) client: AsyncClient,
    pub(super) eventloop: EventLoop,
    /// Requests handed to rumqttc, and those it wrote: the difference is
    /// what sits in its queue.
    handed: u64,
    written: u64,
}

impl Conn {
    pub(super) fn new(who: &Identity, password: &str) -> Conn {
        let b = &who.broker;
        // rumqttc takes a WebSocket's whole URL as its host.
        let host = if b.websocket { &b.url } else { &b.host };
        let mut opts = MqttOptions::new(&who.client_id, host, b.port);
        match (b.websocket, b.tls) {
            (false, false) => {}
            (false, true) => {
                opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(who.tls.clone())));
            }
            (true, false) => {
                opts.set_transport(Transport::Ws);
            }
            (true, true) => {
                opts.set_transport(Transport::Wss(TlsConfiguration::Rustls(who.tls.clone())));
            }
        }
        opts.set_keep_alive(KEEP_ALIVE);
        // A persistent session: invites and commands sent while the
        // connection is being replaced wait for it.
        opts.set_clean_session(false);
        opts.set_credentials(&who.username, password);
        let (client, mut eventloop) = AsyncClient::new(opts, RUMQTTC_CAP);
        // Small packets go out at once; Nagle would add tens of ms a hop.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        Conn {
            client,
            eventloop,
            handed: 0,
            written: 0,
        }
    }

    /// Whether rumqttc still holds requests it has not written.
    pub(super) fn waiting(&self) -> bool {
        self.written < self.handed
    }

    pub(super) fn has_room(&self) -> bool {
        self.handed.saturating_sub(self.written) < (RUMQTTC_CAP / 2) as u64
    }

    pub(super) fn hand(&mut self, request: Request, subs: &mut Subs) {
        let handed = match request {
            Request::Publish {
                topic,
                payload,
                retain,
            } => self
                .client
                .try_publish(topic, QoS::AtLeastOnce, retain, payload)
                .is_ok(),
            Request::Subscribe { filter, done } => {
                let ok = self
                    .client
                    .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                    .is_ok();
                if ok {
                    subs.unsent.push_back((filter, done));
                }
                ok
            }
            Request::Unsubscribe(filter) => {
                subs.filters.remove(&filter);
                self.client.try_unsubscribe(filter).is_ok()
            }
            Request::Close(_) => false,
        };
        if handed {
            self.handed += 1;
        }
    }

    pub(super) fn wrote(&mut self) {
        self.written = (self.written + 1).min(self.handed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        // (URL, host, port, WebSocket, TLS)
        let cases = [
            ("mqtt://127.0.0.1:1884", "127.0.0.1", 1884, false, false),
            ("mqtt://example.org", "example.org", 1883, false, false),
            ("mqtts://example.org", "example.org", 8883, false, true),
            ("mqtts://example.org:9883", "example.org", 9883, false, true),
            (
                "ws://example.org:8083/mqtt",
                "example.org",
                8083,
                true,
                false,
            ),
            ("wss://example.org/mqtt", "example.org", 443, true, true),
        ];
        for (url, host, port, websocket, tls) in cases {
            let b = Broker::parse(url).unwrap();
            assert_eq!(
                (b.host.as_str(), b.port, b.websocket, b.tls),
                (host, port, websocket, tls),
                "{url}"
            );
        }
        for bad in ["http://x:1", "https://x", "not a url"] {
            assert!(
                matches!(Broker::parse(bad), Err(SdkError::InvalidArgument { .. })),
                "{bad}"
            );
        }
    }
}

//! What the embedder decides: who logs in, who may subscribe and publish
//! what, whether a message may still reach a subscriber, and what it
//! learns of connections and drops.

use std::future::Future;
use std::net::SocketAddr;

use crate::message::Message;
use crate::wire::{ConnectRefusal, Granted, PubRefusal, Version};

/// A CONNECT's claims, for `authenticate`.
pub struct Login<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub version: Version,
    /// The client's address, as the broker's socket sees it.
    pub address: SocketAddr,
    /// The topic of its Will, if it has one.
    pub will_topic: Option<&'a str>,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client sent DISCONNECT.
    Graceful,
    /// A new connection with the same client id took its place.
    TakenOver,
    /// Anything else: the socket closed or failed, the keep-alive ran out,
    /// a protocol error, the broker stopping.
    Lost,
}

/// Why a message did not reach a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Its queue stayed full (the session is stuck or offline).
    QueueFull,
    /// It waited past its expiry.
    Expired,
    /// Larger than the subscriber takes.
    TooLarge,
}

pub trait Hooks: Send + Sync + 'static {
    /// What the embedder keeps of a logged-in client.
    type Client: Send + Sync + 'static;

    fn authenticate(
        &self,
        login: &Login<'_>,
    ) -> impl Future<Output = Result<Self::Client, ConnectRefusal>> + Send;

    /// After the CONNACK. `connection` is unique for the broker's life.
    fn connected(&self, client: &Self::Client, connection: u64) -> impl Future<Output = ()> + Send {
        let _ = (client, connection);
        async {}
    }

    fn disconnected(&self, client: &Self::Client, connection: u64, ended: Ended) {
        let _ = (client, connection, ended);
    }

    /// Whether `client` may subscribe to `filter` (a valid MQTT filter);
    /// `Err` with the refusal.
    fn subscribe(
        &self,
        client: &Self::Client,
        filter: &str,
    ) -> impl Future<Output = Result<(), Granted>> + Send {
        let _ = (client, filter);
        async { Ok(()) }
    }

    /// Whether `client` may publish `message` (whose topic is valid); the
    /// hook may change it before it is routed.
    fn publish(
        &self,
        client: &Self::Client,
        message: &mut Message,
    ) -> impl Future<Output = Result<(), PubRefusal>> + Send {
        let _ = (client, message);
        async { Ok(()) }
    }

    /// Checked as a message leaves for `to`: whether it may still go.
    fn deliver(&self, to: &Self::Client, message: &Message) -> bool {
        let _ = (to, message);
        true
    }

    /// The current values of the topics `filter` names, when the embedder
    /// serves them itself (read as a subscription is made, sent flagged
    /// retained); `None` for the broker's own retained messages.
    fn served(
        &self,
        client: &Self::Client,
        filter: &str,
    ) -> impl Future<Output = Option<Vec<Message>>> + Send {
        let _ = (client, filter);
        async { None }
    }

    /// Whether the broker keeps a retained message on `topic` (not on
    /// topics the embedder serves).
    fn keeps_retained(&self, topic: &str) -> bool {
        let _ = topic;
        true
    }

    fn dropped(&self, why: Dropped) {
        let _ = why;
    }

    /// `filter` (without a `$share/<group>/` prefix) gained its first
    /// subscription on this broker (`held`), or lost its last; reported
    /// once for plain subscriptions and once for shared ones. Called under
    /// the router's lock: quick, never waiting.
    fn interest(&self, filter: &str, held: bool) {
        let _ = (filter, held);
    }

    /// Awaited before a SUBACK that granted a new subscription: what the
    /// embedder started in `interest` can take effect first (another
    /// node's messages for the filter reach this broker).
    fn granted(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

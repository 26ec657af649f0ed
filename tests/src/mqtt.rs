//! Real MQTT clients (rumqttc) for the tests: MQTT 3.1.1 over TCP or
//! WebSocket, and MQTT 5 for the reason codes 3.1.1 cannot carry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// What the broker sent the client after it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Publish {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
    SubAck(Vec<SubscribeReasonCode>),
}

pub struct Client {
    pub client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    /// Messages that arrived while waiting for a SUBACK, in order.
    early: std::collections::VecDeque<Incoming>,
}

/// How long a test waits for something the broker should send at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// The SUBACK of a subscription to one filter that the rules refused.
pub const REFUSED: [SubscribeReasonCode; 1] = [SubscribeReasonCode::Failure];

/// Whether the SUBACK of a subscription to one filter granted it.
pub fn granted(codes: &[SubscribeReasonCode]) -> bool {
    matches!(codes, [SubscribeReasonCode::Success(_)])
}

#[derive(Clone, Debug)]
pub enum Via {
    Tcp,
    WebSocket,
    /// Over TLS, trusting what the configuration trusts
    /// (`tls::client_config`).
    Tls(Arc<rustls::ClientConfig>),
    /// Secure WebSocket, likewise.
    Wss(Arc<rustls::ClientConfig>),
}

#[derive(Clone, Copy)]
pub struct Login<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

impl<'a> Login<'a> {
    /// The usual login: username = subject, password = token.
    pub fn token(client_id: &'a str, sub: &'a str, token: &'a str) -> Self {
        Login {
            client_id,
            username: Some(sub),
            password: Some(token),
        }
    }
}

/// Connects with MQTT 3.1.1 and returns the client once the broker accepted
/// it, or the CONNACK return code it refused with.
pub async fn connect(addr: SocketAddr, via: Via, login: Login<'_>) -> Result<Client, Refused> {
    connect_with_will(addr, via, login, None).await
}

/// `connect` with a Last Will (`false`, retained) on `will_topic`.
pub async fn connect_with_will(
    addr: SocketAddr,
    via: Via,
    login: Login<'_>,
    will_topic: Option<&str>,
) -> Result<Client, Refused> {
    open(addr, via, login, will_topic, true).await
}

/// `connect` with a persistent session (clean session off): QoS 1
/// messages for its subscriptions wait while it is away.
pub async fn connect_persistent(addr: SocketAddr, login: Login<'_>) -> Result<Client, Refused> {
    open(addr, Via::Tcp, login, None, false).await
}

async fn open(
    addr: SocketAddr,
    via: Via,
    login: Login<'_>,
    will_topic: Option<&str>,
    clean: bool,
) -> Result<Client, Refused> {
    let host = addr.ip().to_string();
    let mut opts = match via {
        Via::Tcp => MqttOptions::new(login.client_id, host, addr.port()),
        Via::WebSocket => {
            let mut o = MqttOptions::new(login.client_id, format!("ws://{addr}/mqtt"), addr.port());
            o.set_transport(Transport::Ws);
            o
        }
        Via::Tls(config) => {
            let mut o = MqttOptions::new(login.client_id, host, addr.port());
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(config)));
            o
        }
        Via::Wss(config) => {
            let url = format!("wss://{addr}/mqtt");
            let mut o = MqttOptions::new(login.client_id, url, addr.port());
            o.set_transport(Transport::Wss(TlsConfiguration::Rustls(config)));
            o
        }
    };
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(clean);
    if let Some(topic) = will_topic {
        opts.set_last_will(rumqttc::LastWill::new(
            topic,
            "false",
            QoS::AtLeastOnce,
            true,
        ));
    }
    if let Some(user) = login.username {
        opts.set_credentials(user, login.password.unwrap_or(""));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await {
            Err(_) => return Err(Refused::Other("no CONNACK in time".into())),
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => {
                return Err(Refused::Code(code))
            }
            Ok(Err(e)) => return Err(Refused::Other(e.to_string())),
        }
    }
    let (tx, incoming) = mpsc::unbounded_channel();
    // Dropping the `Client` ends this task, and with the event loop the
    // connection (as an app that is killed).
    tokio::spawn(async move {
        loop {
            let polled = tokio::select! {
                _ = tx.closed() => return,
                polled = eventloop.poll() => polled,
            };
            let event = match polled {
                Ok(Event::Incoming(Packet::Publish(p))) => Incoming::Publish {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    retain: p.retain,
                },
                Ok(Event::Incoming(Packet::SubAck(s))) => Incoming::SubAck(s.return_codes),
                // MQTT: after DISCONNECT the client closes the connection
                // (rumqttc leaves that to the app).
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    Ok(Client {
        client,
        incoming,
        early: Default::default(),
    })
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Code(ConnectReturnCode),
    Other(String),
}

impl Client {
    /// Sends DISCONNECT and closes the connection, as MQTT asks of a
    /// client; returns once it is closed.
    pub async fn disconnect(mut self) -> Result<()> {
        self.client.disconnect().await?;
        while self.incoming.recv().await.is_some() {}
        Ok(())
    }

    /// Unsubscribes (without waiting for the UNSUBACK).
    pub async fn unsubscribe(&self, filter: &str) -> Result<()> {
        self.client.unsubscribe(filter).await?;
        Ok(())
    }

    /// Subscribes and returns the SUBACK's return codes. Messages that
    /// arrive first (retained ones of an earlier subscription) are kept for
    /// `next`.
    pub async fn subscribe(&mut self, filter: &str) -> Result<Vec<SubscribeReasonCode>> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await?;
        loop {
            match self.receive().await? {
                Incoming::SubAck(codes) => return Ok(codes),
                other => self.early.push_back(other),
            }
        }
    }

    pub async fn publish(&self, topic: &str, payload: &[u8], retain: bool) -> Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .await?;
        Ok(())
    }

    /// Publishes `payload` as JSON, not retained: the messages of the
    /// use case (invites, call actions, commands, signalling).
    pub async fn publish_json(&self, topic: &str, payload: &Value) -> Result<()> {
        self.publish(topic, payload.to_string().as_bytes(), false)
            .await
    }

    /// The next thing the broker sends, waiting at most `WAIT`.
    pub async fn next(&mut self) -> Result<Incoming> {
        match self.early.pop_front() {
            Some(early) => Ok(early),
            None => self.receive().await,
        }
    }

    /// The next thing the broker sends, however long it takes; `None` once
    /// the connection is gone.
    pub async fn recv(&mut self) -> Option<Incoming> {
        match self.early.pop_front() {
            Some(early) => Some(early),
            None => self.incoming.recv().await,
        }
    }

    async fn receive(&mut self) -> Result<Incoming> {
        tokio::time::timeout(WAIT, self.incoming.recv())
            .await
            .map_err(|_| anyhow!("nothing received within {WAIT:?}"))?
            .ok_or_else(|| anyhow!("connection closed"))
    }
}

/// Connects with MQTT 5 and returns the CONNACK reason code.
pub async fn connack_v5(
    addr: SocketAddr,
    login: Login<'_>,
) -> Result<rumqttc::v5::mqttbytes::v5::ConnectReturnCode> {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::{ConnectionError as E5, Event as Ev5};
    let mut opts =
        rumqttc::v5::MqttOptions::new(login.client_id, addr.ip().to_string(), addr.port());
    if let Some(user) = login.username {
        opts.set_credentials(user, login.password.unwrap_or(""));
    }
    let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 8);
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await? {
            Ok(Ev5::Incoming(P5::ConnAck(ack))) => return Ok(ack.code),
            Ok(_) => {}
            Err(E5::ConnectionRefused(code)) => return Ok(code),
            Err(e) => bail!("MQTT 5 connect failed: {e}"),
        }
    }
}

/// An MQTT 5 client, for the reason codes of SUBACK and PUBACK.
pub struct V5Client {
    client: rumqttc::v5::AsyncClient,
    packets: mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
    /// Topic aliases the server set, as a client keeps them.
    aliases: std::collections::HashMap<u16, String>,
}

pub use rumqttc::v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode as V5SubCode};

impl V5Client {
    pub async fn connect(addr: SocketAddr, login: Login<'_>) -> Result<V5Client> {
        V5Client::connect_taking_aliases(addr, login, 0).await
    }

    /// Connects, letting the server use up to `aliases` topic aliases.
    pub async fn connect_taking_aliases(
        addr: SocketAddr,
        login: Login<'_>,
        aliases: u16,
    ) -> Result<V5Client> {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        use rumqttc::v5::Event as Ev5;
        let mut opts =
            rumqttc::v5::MqttOptions::new(login.client_id, addr.ip().to_string(), addr.port());
        if aliases > 0 {
            opts.set_topic_alias_max(Some(aliases));
        }
        if let Some(user) = login.username {
            opts.set_credentials(user, login.password.unwrap_or(""));
        }
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 16);
        loop {
            match tokio::time::timeout(WAIT, eventloop.poll()).await?? {
                Ev5::Incoming(P5::ConnAck(_)) => break,
                _ => continue,
            }
        }
        let (tx, packets) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let polled = tokio::select! {
                    _ = tx.closed() => return,
                    polled = eventloop.poll() => polled,
                };
                match polled {
                    Ok(Ev5::Incoming(p)) => {
                        let _ = tx.send(p);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        Ok(V5Client {
            client,
            packets,
            aliases: Default::default(),
        })
    }

    async fn next_matching<T>(
        &mut self,
        pick: impl Fn(rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
    ) -> Result<T> {
        loop {
            let packet = tokio::time::timeout(WAIT, self.packets.recv())
                .await
                .map_err(|_| anyhow!("no answer within {WAIT:?}"))?
                .ok_or_else(|| anyhow!("connection closed"))?;
            if let Some(v) = pick(packet) {
                return Ok(v);
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str) -> Result<Vec<V5SubCode>> {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        self.client
            .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .await?;
        self.next_matching(|p| match p {
            P5::SubAck(s) => Some(s.return_codes),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason.
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<PubAckReason> {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        self.client
            .publish(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                payload.to_vec(),
            )
            .await?;
        self.next_matching(|p| match p {
            P5::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 with a Message Expiry Interval of `expiry_s`.
    pub async fn publish_expiring(
        &mut self,
        topic: &str,
        payload: &[u8],
        expiry_s: u32,
    ) -> Result<()> {
        let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
            message_expiry_interval: Some(expiry_s),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                payload.to_vec(),
                properties,
            )
            .await?;
        Ok(())
    }

    /// The next live message delivered: its topic (through the server's
    /// topic aliases; empty if it came with neither) and Message Expiry
    /// Interval. Retained ones are passed over (their aliases kept): a value
    /// served at SUBSCRIBE is read when the server gets to it, so it may
    /// already be a message the test published after the SUBACK.
    pub async fn next_publish(&mut self) -> Result<(String, Option<u32>)> {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        loop {
            let (topic, alias, expiry, retained) = self
                .next_matching(|p| match p {
                    P5::Publish(p) => {
                        let properties = p.properties.unwrap_or_default();
                        Some((
                            String::from_utf8_lossy(&p.topic).into_owned(),
                            properties.topic_alias,
                            properties.message_expiry_interval,
                            p.retain,
                        ))
                    }
                    _ => None,
                })
                .await?;
            let topic = match alias {
                Some(alias) if topic.is_empty() => {
                    self.aliases.get(&alias).cloned().unwrap_or_default()
                }
                Some(alias) => {
                    self.aliases.insert(alias, topic.clone());
                    topic
                }
                None => topic,
            };
            if !retained {
                return Ok((topic, expiry));
            }
        }
    }
}

//! MQTT 3.1.1 and 5 packets (rmqtt-codec) as one set: what a client sends
//! (`In`) and what the broker answers (`Out`), so the connection's logic
//! is written once for both versions.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::types::Publish;
use rmqtt_codec::v5::PublishProperties;
use rmqtt_codec::version::{ProtocolVersion, VersionCodec};
use rmqtt_codec::{v3, v5};
use tokio_util::codec::{Decoder, Encoder};

use crate::QoS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V3,
    V5,
}

/// A CONNECT, either version.
#[derive(Debug)]
pub struct Connect {
    pub version: Version,
    pub client_id: ByteString,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
    pub clean_start: bool,
    pub keep_alive: u16,
    /// MQTT 5's Session Expiry Interval, in seconds.
    pub session_expiry: Option<u32>,
    /// MQTT 5's Receive Maximum: QoS 1 messages it takes unacknowledged.
    pub receive_max: Option<u16>,
    /// The largest packet the client takes.
    pub max_packet_size: Option<u32>,
    /// MQTT 5: how many topic aliases the client takes from the broker.
    pub topic_alias_max: u16,
    pub will: Option<Will>,
}

#[derive(Debug)]
pub struct Will {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5's Will Delay Interval, in seconds.
    pub delay: u32,
    /// MQTT 5's properties of the Will's message.
    pub properties: Option<PublishProperties>,
}

/// How a subscription wants its messages (MQTT 5's options; 3.1.1 has
/// only the QoS).
#[derive(Clone, Copy, Debug)]
pub struct SubscribeOptions {
    pub qos: QoS,
    /// MQTT 5's Subscription Identifier, sent back with each message.
    pub id: Option<NonZeroU32>,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

/// When a subscription gets the retained messages it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetainHandling {
    Always,
    IfNew,
    Never,
}

#[derive(Debug)]
pub enum In {
    Connect(Box<Connect>),
    Publish(Box<Publish>),
    PubAck(NonZeroU16),
    /// A QoS 2 message received; `failed`: MQTT 5 says it was not taken.
    PubRec {
        packet_id: NonZeroU16,
        failed: bool,
    },
    PubRel(NonZeroU16),
    PubComp(NonZeroU16),
    Subscribe {
        packet_id: NonZeroU16,
        filters: Vec<(ByteString, SubscribeOptions)>,
    },
    Unsubscribe {
        packet_id: NonZeroU16,
        filters: Vec<ByteString>,
    },
    PingReq,
    /// `with_will`: MQTT 5's "disconnect with Will message";
    /// `session_expiry`: a new Session Expiry Interval.
    Disconnect {
        with_will: bool,
        session_expiry: Option<u32>,
    },
    /// Valid MQTT the broker does not take from a client (a CONNACK, or a
    /// PUBREC for a QoS 2 message it never sends).
    Unexpected,
}

/// Why a CONNECT is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectRefusal {
    BadCredentials,
    NotAuthorized,
    BadClientId,
    Unavailable,
}

impl Closing {
    /// Whether the client broke the protocol (it may still be sending).
    pub fn is_clients_fault(self) -> bool {
        matches!(
            self,
            Closing::ProtocolError
                | Closing::TooLarge
                | Closing::TopicAliasInvalid
                | Closing::ReceiveMaximumExceeded
        )
    }
}

/// What a SUBSCRIBE gets for one filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granted {
    Qos(QoS),
    NotAuthorized,
    BadFilter,
    TooMany,
    Failed,
}

/// Why a PUBLISH was not taken (MQTT 5 says why in the PUBACK; 3.1.1 has
/// no way to, so its client gets a plain PUBACK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubRefusal {
    NotAuthorized,
    BadTopic,
    Failed,
}

/// Why the broker closes a connection (MQTT 5 sends it in a DISCONNECT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    TakenOver,
    KeepAlive,
    ProtocolError,
    TooLarge,
    TopicAliasInvalid,
    ReceiveMaximumExceeded,
    ShuttingDown,
    /// The embedder's: the login no longer holds (e.g. its token expired).
    NotAuthorized,
}

#[derive(Debug)]
pub enum Out {
    ConnAck {
        session_present: bool,
        refused: Option<ConnectRefusal>,
        /// What the broker allows (MQTT 5 announces it).
        receive_max: u16,
        max_packet_size: u32,
        keep_alive: Option<u16>,
        assigned_client_id: Option<ByteString>,
        /// MQTT 5: how many topic aliases the broker takes.
        topic_alias_max: u16,
    },
    Publish(Box<Publish>),
    PubAck(NonZeroU16, Option<PubRefusal>),
    PubRec(NonZeroU16, Option<PubRefusal>),
    PubRel(NonZeroU16),
    PubComp(NonZeroU16),
    SubAck(NonZeroU16, Vec<Granted>),
    UnsubAck(NonZeroU16, Vec<bool>),
    PingResp,
    Disconnect(Closing),
}

/// The codec of a connection: which version it speaks is learnt from
/// its CONNECT.
pub enum Codec {
    Unknown { max_in: u32 },
    V3(v3::Codec),
    V5(v5::Codec),
}

impl Codec {
    pub fn new(max_in: u32) -> Codec {
        Codec::Unknown { max_in }
    }

    pub fn version(&self) -> Option<Version> {
        match self {
            Codec::Unknown { .. } => None,
            Codec::V3(_) => Some(Version::V3),
            Codec::V5(_) => Some(Version::V5),
        }
    }

    /// The next whole packet in `src`, if there is one.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, DecodeError> {
        if let Codec::Unknown { max_in } = *self {
            match VersionCodec.decode(src)? {
                None => return Ok(None),
                Some(ProtocolVersion::MQTT3) => *self = Codec::V3(v3::Codec::new(max_in)),
                Some(ProtocolVersion::MQTT5) => *self = Codec::V5(v5::Codec::new(max_in, 0)),
            }
        }
        let decoded = match self {
            Codec::Unknown { .. } => unreachable!("chosen above"),
            Codec::V3(c) => c.decode(src)?.map(|(p, _)| from_v3(p)),
            Codec::V5(c) => c.decode(src)?.map(|(p, _)| from_v5(p)),
        };
        Ok(decoded)
    }

    /// Sets the largest packet the client takes (its CONNECT says).
    pub fn set_max_out(&mut self, max: u32) {
        if let Codec::V5(c) = self {
            c.set_max_outbound_size(max);
        }
    }

    /// Appends `out` to `dst`; `false` if it cannot be sent (larger than
    /// the client takes), and nothing was appended.
    pub fn encode(&mut self, out: Out, dst: &mut BytesMut) -> bool {
        match self {
            Codec::Unknown { .. } => false,
            Codec::V3(c) => match to_v3(out) {
                Some(p) => c.encode(p, dst).is_ok(),
                None => true,
            },
            Codec::V5(c) => c.encode(to_v5(out), dst).is_ok(),
        }
    }
}

fn from_v3(p: v3::Packet) -> In {
    use v3::Packet as P;
    match p {
        P::Connect(c) => In::Connect(Box::new(Connect {
            version: Version::V3,
            client_id: c.client_id,
            username: c.username,
            password: c.password,
            clean_start: c.clean_session,
            keep_alive: c.keep_alive,
            session_expiry: None,
            receive_max: None,
            max_packet_size: None,
            topic_alias_max: 0,
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: w.qos,
                retain: w.retain,
                delay: 0,
                properties: None,
            }),
        })),
        P::Publish(p) => In::Publish(p),
        P::PublishAck { packet_id } => In::PubAck(packet_id),
        P::PublishReceived { packet_id } => In::PubRec {
            packet_id,
            failed: false,
        },
        P::PublishRelease { packet_id } => In::PubRel(packet_id),
        P::PublishComplete { packet_id } => In::PubComp(packet_id),
        P::Subscribe {
            packet_id,
            topic_filters,
        } => In::Subscribe {
            packet_id,
            filters: topic_filters
                .into_iter()
                .map(|(f, qos)| {
                    let options = SubscribeOptions {
                        qos,
                        id: None,
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: RetainHandling::Always,
                    };
                    (f, options)
                })
                .collect(),
        },
        P::Unsubscribe {
            packet_id,
            topic_filters,
        } => In::Unsubscribe {
            packet_id,
            filters: topic_filters,
        },
        P::PingRequest => In::PingReq,
        P::Disconnect => In::Disconnect {
            with_will: false,
            session_expiry: None,
        },
        _ => In::Unexpected,
    }
}

fn from_v5(p: v5::Packet) -> In {
    use v5::Packet as P;
    match p {
        P::Connect(c) => In::Connect(Box::new(Connect {
            version: Version::V5,
            client_id: c.client_id,
            username: c.username,
            password: c.password,
            clean_start: c.clean_start,
            keep_alive: c.keep_alive,
            session_expiry: Some(c.session_expiry_interval_secs),
            receive_max: c.receive_max.map(NonZeroU16::get),
            max_packet_size: c.max_packet_size.map(NonZeroU32::get),
            topic_alias_max: c.topic_alias_max,
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: w.qos,
                retain: w.retain,
                delay: w.will_delay_interval_sec.unwrap_or(0),
                properties: Some(PublishProperties {
                    correlation_data: w.correlation_data,
                    message_expiry_interval: w.message_expiry_interval,
                    content_type: w.content_type,
                    user_properties: w.user_properties,
                    is_utf8_payload: w.is_utf8_payload.unwrap_or(false),
                    response_topic: w.response_topic,
                    ..Default::default()
                }),
            }),
        })),
        P::Publish(p) => In::Publish(p),
        P::PublishAck(a) => In::PubAck(a.packet_id),
        P::PublishReceived(r) => In::PubRec {
            packet_id: r.packet_id,
            failed: u8::from(r.reason_code) >= 0x80,
        },
        P::PublishRelease(r) => In::PubRel(r.packet_id),
        P::PublishComplete(c) => In::PubComp(c.packet_id),
        P::Subscribe(s) => In::Subscribe {
            packet_id: s.packet_id,
            filters: s
                .topic_filters
                .into_iter()
                .map(|(f, o)| {
                    let options = SubscribeOptions {
                        qos: o.qos,
                        id: s.id,
                        no_local: o.no_local,
                        retain_as_published: o.retain_as_published,
                        retain_handling: match o.retain_handling {
                            v5::RetainHandling::AtSubscribe => RetainHandling::Always,
                            v5::RetainHandling::AtSubscribeNew => RetainHandling::IfNew,
                            v5::RetainHandling::NoAtSubscribe => RetainHandling::Never,
                        },
                    };
                    (f, options)
                })
                .collect(),
        },
        P::Unsubscribe(u) => In::Unsubscribe {
            packet_id: u.packet_id,
            filters: u.topic_filters,
        },
        P::PingRequest => In::PingReq,
        P::Disconnect(d) => In::Disconnect {
            with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
            session_expiry: d.session_expiry_interval_secs,
        },
        _ => In::Unexpected,
    }
}

/// The 3.1.1 form of `out`; `None` for what 3.1.1 cannot say (a server's
/// DISCONNECT: the connection just closes).
fn to_v3(out: Out) -> Option<v3::Packet> {
    use v3::Packet as P;
    Some(match out {
        Out::ConnAck {
            session_present,
            refused,
            ..
        } => P::ConnectAck(v3::ConnectAck {
            session_present,
            return_code: match refused {
                None => v3::ConnectAckReason::ConnectionAccepted,
                Some(ConnectRefusal::BadCredentials) => v3::ConnectAckReason::BadUserNameOrPassword,
                Some(ConnectRefusal::NotAuthorized) => v3::ConnectAckReason::NotAuthorized,
                Some(ConnectRefusal::BadClientId) => v3::ConnectAckReason::IdentifierRejected,
                Some(ConnectRefusal::Unavailable) => v3::ConnectAckReason::ServiceUnavailable,
            },
        }),
        Out::Publish(p) => P::Publish(p),
        // 3.1.1 has no refusal: the message is taken and dropped.
        Out::PubAck(packet_id, _) => P::PublishAck { packet_id },
        Out::PubRec(packet_id, _) => P::PublishReceived { packet_id },
        Out::PubRel(packet_id) => P::PublishRelease { packet_id },
        Out::PubComp(packet_id) => P::PublishComplete { packet_id },
        Out::SubAck(packet_id, granted) => P::SubscribeAck {
            packet_id,
            status: granted
                .into_iter()
                .map(|g| match g {
                    Granted::Qos(q) => v3::SubscribeReturnCode::Success(q),
                    _ => v3::SubscribeReturnCode::Failure,
                })
                .collect(),
        },
        Out::UnsubAck(packet_id, _) => P::UnsubscribeAck { packet_id },
        Out::PingResp => P::PingResponse,
        Out::Disconnect(_) => return None,
    })
}

fn to_v5(out: Out) -> v5::Packet {
    use v5::Packet as P;
    match out {
        Out::ConnAck {
            session_present,
            refused,
            receive_max,
            max_packet_size,
            keep_alive,
            assigned_client_id,
            topic_alias_max,
        } => P::ConnectAck(Box::new(v5::ConnectAck {
            session_present,
            reason_code: match refused {
                None => v5::ConnectAckReason::Success,
                Some(ConnectRefusal::BadCredentials) => v5::ConnectAckReason::BadUserNameOrPassword,
                Some(ConnectRefusal::NotAuthorized) => v5::ConnectAckReason::NotAuthorized,
                Some(ConnectRefusal::BadClientId) => v5::ConnectAckReason::ClientIdentifierNotValid,
                Some(ConnectRefusal::Unavailable) => v5::ConnectAckReason::ServerUnavailable,
            },
            receive_max: NonZeroU16::new(receive_max).unwrap_or(NonZeroU16::MAX),
            max_qos: QoS::ExactlyOnce,
            max_packet_size: Some(max_packet_size),
            server_keepalive_sec: keep_alive,
            assigned_client_id,
            retain_available: true,
            wildcard_subscription_available: true,
            shared_subscription_available: true,
            subscription_identifiers_available: true,
            topic_alias_max,
            ..Default::default()
        })),
        Out::Publish(p) => P::Publish(p),
        Out::PubAck(packet_id, refused) => P::PublishAck(v5::PublishAck {
            packet_id,
            reason_code: pub_reason(refused),
            ..Default::default()
        }),
        Out::PubRec(packet_id, refused) => P::PublishReceived(v5::PublishAck {
            packet_id,
            reason_code: pub_reason(refused),
            ..Default::default()
        }),
        Out::PubRel(packet_id) => P::PublishRelease(v5::PublishAck2 {
            packet_id,
            ..Default::default()
        }),
        Out::PubComp(packet_id) => P::PublishComplete(v5::PublishAck2 {
            packet_id,
            ..Default::default()
        }),
        Out::SubAck(packet_id, granted) => P::SubscribeAck(v5::SubscribeAck {
            packet_id,
            properties: Default::default(),
            reason_string: None,
            status: granted
                .into_iter()
                .map(|g| match g {
                    Granted::Qos(QoS::AtMostOnce) => v5::SubscribeAckReason::GrantedQos0,
                    Granted::Qos(QoS::AtLeastOnce) => v5::SubscribeAckReason::GrantedQos1,
                    Granted::Qos(QoS::ExactlyOnce) => v5::SubscribeAckReason::GrantedQos2,
                    Granted::NotAuthorized => v5::SubscribeAckReason::NotAuthorized,
                    Granted::BadFilter => v5::SubscribeAckReason::TopicFilterInvalid,
                    Granted::TooMany => v5::SubscribeAckReason::QuotaExceeded,
                    Granted::Failed => v5::SubscribeAckReason::UnspecifiedError,
                })
                .collect(),
        }),
        Out::UnsubAck(packet_id, found) => P::UnsubscribeAck(v5::UnsubscribeAck {
            packet_id,
            properties: Default::default(),
            reason_string: None,
            status: found
                .into_iter()
                .map(|f| match f {
                    true => v5::UnsubscribeAckReason::Success,
                    false => v5::UnsubscribeAckReason::NoSubscriptionExisted,
                })
                .collect(),
        }),
        Out::PingResp => P::PingResponse,
        Out::Disconnect(why) => P::Disconnect(v5::Disconnect::new(match why {
            Closing::TakenOver => v5::DisconnectReasonCode::SessionTakenOver,
            Closing::KeepAlive => v5::DisconnectReasonCode::KeepAliveTimeout,
            Closing::ProtocolError => v5::DisconnectReasonCode::ProtocolError,
            Closing::TooLarge => v5::DisconnectReasonCode::PacketTooLarge,
            Closing::TopicAliasInvalid => v5::DisconnectReasonCode::TopicAliasInvalid,
            Closing::ReceiveMaximumExceeded => v5::DisconnectReasonCode::ReceiveMaximumExceeded,
            Closing::ShuttingDown => v5::DisconnectReasonCode::ServerShuttingDown,
            Closing::NotAuthorized => v5::DisconnectReasonCode::NotAuthorized,
        })),
    }
}

fn pub_reason(refused: Option<PubRefusal>) -> v5::PublishAckReason {
    match refused {
        None => v5::PublishAckReason::Success,
        Some(PubRefusal::NotAuthorized) => v5::PublishAckReason::NotAuthorized,
        Some(PubRefusal::BadTopic) => v5::PublishAckReason::TopicNameInvalid,
        Some(PubRefusal::Failed) => v5::PublishAckReason::UnspecifiedError,
    }
}

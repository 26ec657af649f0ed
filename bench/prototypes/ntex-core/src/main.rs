//! The floor of a broker core on ntex-mqtt, for the bench only: anonymous
//! MQTT 3.1.1; subscriptions in one shared trie; QoS 0/1 delivery through a
//! bounded queue per session (a full queue makes the publisher wait),
//! drained by a task on the subscriber's worker into its ntex-mqtt sink.
//! Not a broker: no sessions that outlive a connection, no retained
//! messages, no Will, no redelivery.
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ntex::service::{fn_factory_with_config, fn_service};
use ntex::util::{ByteString, Bytes};
use ntex_mqtt::v3;
use trie::Trie;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Clone)]
struct Msg {
    topic: ByteString,
    payload: Bytes,
    qos1: bool,
}

/// A subscriber: its queue, and whether it takes QoS 1.
type Sub = (flume::Sender<Msg>, bool);

static NEXT: AtomicU64 = AtomicU64::new(1);

struct Session {
    id: u64,
    tx: flume::Sender<Msg>,
    router: Arc<RwLock<Trie<Sub>>>,
    filters: RefCell<Vec<ByteString>>,
}

#[derive(Debug)]
struct Error;

impl From<()> for Error {
    fn from(_: ()) -> Self {
        Error
    }
}

async fn deliver(sink: v3::MqttSink, rx: flume::Receiver<Msg>) {
    while let Ok(m) = rx.recv_async().await {
        if !sink.ready().await {
            return;
        }
        let p = sink.publish(m.topic);
        let sent = if m.qos1 {
            p.send_at_least_once_no_block(m.payload)
        } else {
            p.send_at_most_once(m.payload)
        };
        if sent.is_err() {
            return;
        }
    }
}

#[ntex::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(1883);
    let router = Arc::new(RwLock::new(Trie::default()));
    ntex::server::build()
        .bind("mqtt", ("127.0.0.1", port), move |_| {
            let router = router.clone();
            async move {
                v3::MqttServer::new(move |h: v3::Handshake| {
                    let router = router.clone();
                    async move {
                        let sink = h.sink();
                        sink.publish_ack_cb(|_, _| {});
                        let (tx, rx) = flume::bounded(1000);
                        ntex::rt::spawn(deliver(sink, rx));
                        let id = NEXT.fetch_add(1, Ordering::Relaxed);
                        let filters = RefCell::default();
                        Ok::<_, Error>(h.ack(
                            Session {
                                id,
                                tx,
                                router,
                                filters,
                            },
                            false,
                        ))
                    }
                })
                .protocol(fn_factory_with_config(async |s: v3::Session<Session>| {
                    Ok::<_, Error>(fn_service(move |msg: v3::ProtocolMessage| {
                        let s = s.clone();
                        async move {
                            Ok::<_, Error>(match msg {
                                v3::ProtocolMessage::Subscribe(mut sub) => {
                                    for mut t in sub.iter_mut() {
                                        let qos1 = t.qos() != v3::QoS::AtMostOnce;
                                        let filter = t.topic().clone();
                                        let sub = (s.tx.clone(), qos1);
                                        s.router.write().unwrap().insert(&filter, s.id, sub);
                                        s.filters.borrow_mut().push(filter);
                                        t.confirm(if qos1 {
                                            v3::QoS::AtLeastOnce
                                        } else {
                                            v3::QoS::AtMostOnce
                                        });
                                    }
                                    sub.ack()
                                }
                                other => other.ack(),
                            })
                        }
                    }))
                }))
                .control(fn_factory_with_config(async |s: v3::Session<Session>| {
                    Ok::<_, Error>(fn_service(move |c: ntex_mqtt::Control<Error>| {
                        if let ntex_mqtt::Control::Stop(_) = c {
                            let mut router = s.router.write().unwrap();
                            for filter in s.filters.borrow().iter() {
                                router.remove(filter, s.id);
                            }
                        }
                        async { Ok::<_, Error>(None) }
                    }))
                }))
                .publish(fn_factory_with_config(
                    async |s: v3::Session<Session>| {
                        Ok::<_, Error>(fn_service(move |p: v3::Publish| {
                            let s = s.clone();
                            async move {
                                let topic = p.packet().topic.clone();
                                let payload = p.read_all().await.map_err(|_| Error)?;
                                let subs = s.router.read().unwrap().matches(&topic);
                                let qos1 = p.qos() == v3::QoS::AtLeastOnce;
                                for (queue, takes_qos1) in subs {
                                    let m = Msg {
                                        topic: topic.clone(),
                                        payload: payload.clone(),
                                        qos1: qos1 && takes_qos1,
                                    };
                                    // A full queue holds the publisher back.
                                    let _ = queue.send_async(m).await;
                                }
                                Ok::<_, Error>(())
                            }
                        }))
                    },
                ))
            }
        })?
        .workers(2)
        .run()
        .await
}

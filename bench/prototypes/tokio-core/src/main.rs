//! The floor of a broker core written on tokio, for the bench only:
//! anonymous MQTT 3.1.1; one task per connection that holds no buffer while
//! idle (it reads into a scratch buffer on the stack and keeps only a
//! partial packet); subscriptions in one shared trie; QoS 0/1 delivery
//! through a bounded queue per session, where a full queue makes the
//! publisher wait (its PUBACK waits too), with 64 QoS 1 messages in flight
//! per subscriber. Not a broker: no sessions that outlive a connection, no
//! retained messages, no Will, no redelivery, and two clients that publish
//! to each other's full queues would wait on each other.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, QoS, SubAck, SubscribeReasonCode,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use trie::Trie;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MAX: usize = 1 << 20;
const INFLIGHT: usize = 64;

#[derive(Clone)]
struct Msg {
    topic: Arc<str>,
    payload: Bytes,
    qos1: bool,
}

/// A subscriber: its queue, and whether it takes QoS 1.
type Sub = (flume::Sender<Msg>, bool);

type Router = Arc<RwLock<Trie<Sub>>>;
static NEXT: AtomicU64 = AtomicU64::new(1);

/// What the socket has, as packets; `None` if it had nothing after all.
/// The scratch buffer lives on this function's stack, never in the
/// connection's future.
fn read(
    socket: &TcpStream,
    partial: &mut Option<BytesMut>,
) -> std::io::Result<Option<Vec<Packet>>> {
    let mut scratch = [0u8; 4096];
    match socket.try_read(&mut scratch) {
        Ok(0) => Err(std::io::Error::other("closed")),
        Ok(n) => packets(partial, &scratch[..n]).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads what the socket has into `partial` (allocated only while a
/// packet is incomplete) and returns the complete packets.
fn packets(partial: &mut Option<BytesMut>, scratch: &[u8]) -> std::io::Result<Vec<Packet>> {
    let buf = partial.get_or_insert_with(BytesMut::new);
    buf.extend_from_slice(scratch);
    let mut out = Vec::new();
    loop {
        match Packet::read(buf, MAX) {
            Ok(p) => out.push(p),
            Err(rumqttc::Error::InsufficientBytes(_)) => break,
            Err(e) => return Err(std::io::Error::other(format!("{e:?}"))),
        }
    }
    if buf.is_empty() {
        *partial = None;
    }
    Ok(out)
}

async fn connection(mut socket: TcpStream, router: Router) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = flume::bounded::<Msg>(1000);
    let mut partial: Option<BytesMut> = None;
    let mut filters: Vec<Box<str>> = Vec::new();
    let mut sending = Sending::default();
    let mut connected = false;
    let mut keep_alive = Duration::from_secs(60);
    let result: std::io::Result<()> = async {
        loop {
            let mut out = BytesMut::new();
            tokio::select! {
                ready = tokio::time::timeout(keep_alive * 3 / 2, socket.readable()) => {
                    ready.map_err(|_| std::io::Error::other("keep-alive"))??;
                    let Some(read) = read(&socket, &mut partial)? else { continue };
                    for p in read {
                        match p {
                            Packet::Connect(c) => {
                                connected = true;
                                keep_alive = Duration::from_secs(c.keep_alive.max(5) as u64);
                                write(&mut out, Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)));
                            }
                            Packet::Subscribe(s) if connected => {
                                let mut codes = Vec::new();
                                for f in s.filters {
                                    let qos1 = f.qos != QoS::AtMostOnce;
                                    router.write().unwrap().insert(&f.path, id, (tx.clone(), qos1));
                                    filters.push(f.path.into());
                                    codes.push(SubscribeReasonCode::Success(if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce }));
                                }
                                write(&mut out, Packet::SubAck(SubAck::new(s.pkid, codes)));
                            }
                            Packet::Publish(p) if connected => {
                                let topic: Arc<str> = p.topic.as_str().into();
                                let subs = router.read().unwrap().matches(&topic);
                                let qos1 = p.qos == QoS::AtLeastOnce;
                                for (queue, takes_qos1) in subs {
                                    let m = Msg { topic: topic.clone(), payload: p.payload.clone(), qos1: qos1 && takes_qos1 };
                                    // A full queue holds the publisher back.
                                    let _ = queue.send_async(m).await;
                                }
                                if qos1 {
                                    write(&mut out, Packet::PubAck(PubAck::new(p.pkid)));
                                }
                            }
                            Packet::PubAck(_) => sending.inflight = sending.inflight.saturating_sub(1),
                            Packet::PingReq => write(&mut out, Packet::PingResp),
                            Packet::Disconnect => return Ok(()),
                            _ => return Err(std::io::Error::other("unexpected packet")),
                        }
                    }
                }
                m = rx.recv_async(), if sending.inflight < INFLIGHT => {
                    let Ok(m) = m else { return Ok(()) };
                    sending.publish(m, &mut out);
                    // More already waiting go out in the same write.
                    while sending.inflight < INFLIGHT {
                        let Ok(m) = rx.try_recv() else { break };
                        sending.publish(m, &mut out);
                    }
                }
            }
            if !out.is_empty() {
                socket.write_all(&out).await?;
            }
        }
    }
    .await;
    let mut r = router.write().unwrap();
    for f in &filters {
        r.remove(f, id);
    }
    result
}

/// What a connection has sent its subscriber: QoS 1 messages not yet
/// acknowledged, and the last packet id used.
#[derive(Default)]
struct Sending {
    inflight: usize,
    pkid: u16,
}

impl Sending {
    fn publish(&mut self, m: Msg, out: &mut BytesMut) {
        let qos = if m.qos1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let mut p = Publish::new(&*m.topic, qos, Vec::new());
        p.payload = m.payload;
        if m.qos1 {
            self.pkid = self.pkid % u16::MAX + 1;
            p.pkid = self.pkid;
            self.inflight += 1;
        }
        write(out, Packet::Publish(p));
    }
}

fn write(out: &mut BytesMut, p: Packet) {
    p.write(out, MAX).expect("encodes");
}

#[tokio::main(worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(1883);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let router: Router = Default::default();
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::spawn(connection(socket, router.clone()));
    }
}

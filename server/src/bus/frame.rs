//! A carried message as bytes on NATS: one flags byte (QoS in bits 0-1,
//! retain in bit 2, an expiry in bit 3; the rest 0), the expiry left in
//! milliseconds (8 bytes, big-endian) when there is one, the topic's
//! length (2 bytes) and the topic, then the payload as it is.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::Carried;

const RETAIN: u8 = 0b0100;
const EXPIRES: u8 = 0b1000;
const QOS: u8 = 0b0011;

pub fn encode(m: &Carried) -> Bytes {
    let mut out = BytesMut::with_capacity(11 + m.topic.len() + m.payload.len());
    let mut flags = m.qos & QOS;
    if m.retain {
        flags |= RETAIN;
    }
    if m.expires_in_ms.is_some() {
        flags |= EXPIRES;
    }
    out.put_u8(flags);
    if let Some(ms) = m.expires_in_ms {
        out.put_u64(ms);
    }
    let topic_len = u16::try_from(m.topic.len()).expect("MQTT topics are under 64 KiB");
    out.put_u16(topic_len);
    out.put_slice(m.topic.as_bytes());
    out.put_slice(&m.payload);
    out.freeze()
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    #[error("the frame ends early")]
    Short,
    #[error("unknown flags {0:#04x}")]
    Flags(u8),
    #[error("the topic is not UTF-8")]
    Topic,
}

pub fn decode(mut b: Bytes) -> Result<Carried, BadFrame> {
    let flags = take(&mut b, 1)?.get_u8();
    if flags & !(QOS | RETAIN | EXPIRES) != 0 || flags & QOS == QOS {
        return Err(BadFrame::Flags(flags));
    }
    let expires_in_ms = match flags & EXPIRES {
        0 => None,
        _ => Some(take(&mut b, 8)?.get_u64()),
    };
    let topic_len = usize::from(take(&mut b, 2)?.get_u16());
    let topic = take(&mut b, topic_len)?;
    let topic = String::from_utf8(topic.to_vec()).map_err(|_| BadFrame::Topic)?;
    Ok(Carried {
        topic,
        payload: b,
        qos: flags & QOS,
        retain: flags & RETAIN != 0,
        expires_in_ms,
    })
}

fn take(b: &mut Bytes, n: usize) -> Result<Bytes, BadFrame> {
    if b.len() < n {
        return Err(BadFrame::Short);
    }
    Ok(b.split_to(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carried(qos: u8, retain: bool, expires_in_ms: Option<u64>, payload: &str) -> Carried {
        Carried {
            topic: "users/0123/info".into(),
            payload: Bytes::from(payload.to_string()),
            qos,
            retain,
            expires_in_ms,
        }
    }

    #[test]
    fn a_frame_reads_back_as_it_was_written() {
        for m in [
            carried(0, false, None, ""),
            carried(1, true, None, "{\"name\":\"a\"}"),
            carried(2, false, Some(0), "x"),
            carried(1, true, Some(u64::MAX), "payload/with/slashes"),
        ] {
            assert_eq!(decode(encode(&m)), Ok(m));
        }
    }

    #[test]
    fn a_bad_frame_is_refused() {
        let good = encode(&carried(1, false, Some(5), "p")).to_vec();
        let cases: Vec<(Vec<u8>, BadFrame)> = vec![
            (vec![], BadFrame::Short),
            (vec![0b0011, 0, 0], BadFrame::Flags(0b0011)),
            (vec![0b1_0000, 0, 0], BadFrame::Flags(0b1_0000)),
            (vec![0b1000, 0, 0], BadFrame::Short),
            (vec![0, 0, 5, b'a'], BadFrame::Short),
            (vec![0, 0, 1, 0xff], BadFrame::Topic),
            (good[..good.len() - 2 - "p".len()].to_vec(), BadFrame::Short),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(Bytes::from(bytes.clone())), Err(want), "{bytes:?}");
        }
    }
}

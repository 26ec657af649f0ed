//! The PROXY protocol (version 2), for listeners behind a load balancer
//! (HAProxy's `send-proxy-v2`): each connection begins with a header that
//! names the client's address, which becomes the connection's address for
//! the embedder's limits and logs. A connection without a valid header
//! is dropped.

use std::io;
use std::net::SocketAddr;

use ppp::v2::{Addresses, Command, Header, PROTOCOL_PREFIX};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The fixed part: the prefix, version and command, family and protocol,
/// and the length of the rest.
const FIXED: usize = 16;

fn invalid(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("PROXY header: {why}"))
}

/// Reads the header at the start of `socket`, and returns the client's
/// address it names; `balancer` (the peer's own address) for a header
/// that names none, as a balancer's health check sends.
pub async fn read_header<S: AsyncRead + Unpin>(
    socket: &mut S,
    balancer: SocketAddr,
) -> io::Result<SocketAddr> {
    let mut bytes = vec![0; FIXED];
    socket.read_exact(&mut bytes).await?;
    if !bytes.starts_with(PROTOCOL_PREFIX) {
        return Err(invalid(
            "missing (is the load balancer set to send-proxy-v2?)",
        ));
    }
    let rest = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    bytes.resize(FIXED + rest, 0);
    socket.read_exact(&mut bytes[FIXED..]).await?;
    let header = Header::try_from(&bytes[..]).map_err(invalid)?;
    Ok(match (header.command, header.addresses) {
        (Command::Proxy, Addresses::IPv4(a)) => (a.source_address, a.source_port).into(),
        (Command::Proxy, Addresses::IPv6(a)) => (a.source_address, a.source_port).into(),
        _ => balancer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Protocol, Version};

    fn header(command: Command, addresses: impl Into<Addresses>) -> Vec<u8> {
        let version_command = Version::Two | command;
        Builder::with_addresses(version_command, Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn the_header_names_the_client_and_what_follows_is_left_to_read() {
        let balancer: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let (client, listener): (SocketAddr, SocketAddr) = (
            "203.0.113.7:51000".parse().unwrap(),
            "10.0.0.3:1883".parse().unwrap(),
        );
        let v6: (SocketAddr, SocketAddr) = (
            "[2001:db8::7]:51000".parse().unwrap(),
            "[2001:db8::3]:1883".parse().unwrap(),
        );
        let cases: Vec<(Vec<u8>, Result<SocketAddr, ()>)> = vec![
            (header(Command::Proxy, (client, listener)), Ok(client)),
            (header(Command::Proxy, v6), Ok(v6.0)),
            (header(Command::Local, Addresses::Unspecified), Ok(balancer)),
            (
                b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00".to_vec(),
                Err(()),
            ),
            (PROTOCOL_PREFIX.to_vec(), Err(())),
        ];
        for (mut bytes, want) in cases {
            bytes.extend_from_slice(b"after");
            let mut reader = &bytes[..];
            let got = read_header(&mut reader, balancer).await.map_err(drop);
            assert_eq!(got, want, "{bytes:?}");
            if want.is_ok() {
                assert_eq!(reader, b"after", "the connection's own bytes are left");
            }
        }
    }
}

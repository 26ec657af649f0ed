//! The HTTP and HTTPS listeners: plain, or opening each connection first
//! on its own task (so a slow one holds no other up): reading the PROXY
//! protocol v2 header a load balancer sends (the client's address, for
//! rate limits), and doing the TLS handshake. A connection not opened
//! within `OPEN_WAIT` is dropped.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use switchboard_broker::proxy::read_header;
use switchboard_broker::{Stream, TlsAcceptor};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const OPEN_WAIT: Duration = Duration::from_secs(10);

pub enum HttpListener {
    Plain(TcpListener),
    Opened {
        /// Connections opened, with the client's address.
        ready: mpsc::Receiver<(Stream, SocketAddr)>,
        local: SocketAddr,
    },
}

/// Reads `socket`'s PROXY header (with `proxy_protocol`) and does its TLS
/// handshake (with `tls`).
async fn open(
    mut socket: TcpStream,
    peer: SocketAddr,
    proxy_protocol: bool,
    tls: Option<TlsAcceptor>,
) -> io::Result<(Stream, SocketAddr)> {
    let client = match proxy_protocol {
        true => read_header(&mut socket, peer).await?,
        false => peer,
    };
    let stream = match tls {
        Some(tls) => Stream::Tls(Box::new(tls.accept(socket).await?)),
        None => Stream::Plain(socket),
    };
    Ok((stream, client))
}

impl HttpListener {
    pub fn new(
        listener: TcpListener,
        proxy_protocol: bool,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<HttpListener> {
        if !proxy_protocol && tls.is_none() {
            return Ok(HttpListener::Plain(listener));
        }
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let (socket, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors, say: wait a little
                            // rather than spin.
                            tracing::warn!("accepting an HTTP connection: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    // The server stopped serving HTTP.
                    () = tx.closed() => return,
                };
                let (tx, tls) = (tx.clone(), tls.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(OPEN_WAIT, open(socket, peer, proxy_protocol, tls))
                        .await
                    {
                        Ok(Ok(opened)) => {
                            let _ = tx.send(opened).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "HTTP connection dropped: {e}"),
                        Err(_) => {
                            tracing::debug!(%peer, "HTTP connection dropped: not opened in time")
                        }
                    }
                });
            }
        });
        Ok(HttpListener::Opened { ready, local })
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Stream, SocketAddr) {
        match self {
            HttpListener::Plain(listener) => {
                let (socket, addr) = axum::serve::Listener::accept(listener).await;
                (Stream::Plain(socket), addr)
            }
            HttpListener::Opened { ready, .. } => match ready.recv().await {
                Some(opened) => opened,
                // Only once the accepting task ended, which it does when
                // this listener is dropped: never while it is in use.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            HttpListener::Plain(listener) => listener.local_addr(),
            HttpListener::Opened { local, .. } => Ok(*local),
        }
    }
}

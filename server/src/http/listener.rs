//! The HTTP listener: plain, or behind a load balancer that begins each
//! connection with a PROXY protocol v2 header naming the client, so rate
//! limits see the client's address rather than the balancer's. Headers
//! are read each on its own task, so a slow one holds no other connection
//! up; a connection without a valid one within `HEADER_WAIT` is dropped.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use switchboard_broker::proxy::read_header;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const HEADER_WAIT: Duration = Duration::from_secs(10);

pub enum HttpListener {
    Plain(TcpListener),
    Proxied {
        /// Connections whose header was read, with the client's address.
        ready: mpsc::Receiver<(TcpStream, SocketAddr)>,
        local: SocketAddr,
    },
}

impl HttpListener {
    pub fn new(listener: TcpListener, proxy_protocol: bool) -> io::Result<HttpListener> {
        if !proxy_protocol {
            return Ok(HttpListener::Plain(listener));
        }
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let (mut socket, balancer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            tracing::warn!("accepting an HTTP connection: {e}");
                            continue;
                        }
                    },
                    // The server stopped serving HTTP.
                    () = tx.closed() => return,
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let header =
                        tokio::time::timeout(HEADER_WAIT, read_header(&mut socket, balancer));
                    match header.await {
                        Ok(Ok(client)) => {
                            let _ = tx.send((socket, client)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%balancer, "HTTP connection dropped: {e}"),
                        Err(_) => {
                            tracing::debug!(%balancer, "HTTP connection dropped: no PROXY header in time")
                        }
                    }
                });
            }
        });
        Ok(HttpListener::Proxied { ready, local })
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self {
            HttpListener::Plain(listener) => axum::serve::Listener::accept(listener).await,
            HttpListener::Proxied { ready, .. } => match ready.recv().await {
                Some(accepted) => accepted,
                // Only once the accepting task ended, which it does when
                // this listener is dropped: never while it is in use.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            HttpListener::Plain(listener) => listener.local_addr(),
            HttpListener::Proxied { local, .. } => Ok(*local),
        }
    }
}

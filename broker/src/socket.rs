//! The byte streams MQTT runs over: TCP, TLS, and WebSocket (binary
//! frames, subprotocol `mqtt`) for browsers, itself over TCP or TLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::WebSocketStream;

/// Read from a TCP socket at a time, on the reading function's stack: an
/// idle connection keeps no read buffer.
const SCRATCH: usize = 4096;

/// An accepted connection's bytes: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    /// Boxed: TLS state is far larger than a TCP socket's.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, bytes),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, bytes),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

pub enum Socket {
    Tcp(TcpStream),
    /// Boxed, as in `Stream`.
    Tls(Box<TlsStream<TcpStream>>),
    /// Boxed: the WebSocket's state is larger than a TCP socket's, and
    /// few connections are WebSockets.
    Ws(Box<WebSocketStream<Stream>>),
}

impl From<Stream> for Socket {
    fn from(stream: Stream) -> Socket {
        match stream {
            Stream::Plain(s) => Socket::Tcp(s),
            Stream::Tls(s) => Socket::Tls(s),
        }
    }
}

impl Socket {
    /// Waits for bytes and appends them to `partial` (allocated only
    /// while it holds some); `false` if there were none after all.
    /// Cancel-safe: nothing read is lost if the wait is dropped.
    pub async fn read(&mut self, partial: &mut Option<BytesMut>) -> io::Result<bool> {
        match self {
            Socket::Tcp(socket) => {
                socket.readable().await?;
                read_available(socket, partial)
            }
            Socket::Tls(tls) => read_tls(tls, partial).await,
            // Boxed: its state would make every TCP connection's larger.
            Socket::Ws(ws) => Box::pin(read_ws(ws, partial)).await,
        }
    }

    pub async fn write_all(&mut self, bytes: BytesMut) -> io::Result<()> {
        match self {
            Socket::Tcp(socket) => socket.write_all(&bytes).await,
            Socket::Tls(tls) => {
                tls.write_all(&bytes).await?;
                tls.flush().await
            }
            Socket::Ws(ws) => {
                (ws.send(Frame::Binary(bytes.freeze())).await).map_err(io::Error::other)
            }
        }
    }
}

/// How long a connection closed for a protocol error stays open for
/// reading, so the client reads the DISCONNECT that says why.
const LINGER: Duration = Duration::from_secs(1);

impl Socket {
    /// Stops writing and reads what the client still sends until it
    /// closes (up to `LINGER`). Closing a socket with unread bytes resets
    /// it, and the client may lose the DISCONNECT that says why.
    pub async fn linger(&mut self) {
        let Socket::Tcp(socket) = self else {
            return;
        };
        if socket.shutdown().await.is_err() {
            return;
        }
        let drain = async {
            let mut partial = None;
            while self.read(&mut partial).await.is_ok() {
                partial = None;
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

/// Reads what TLS has decrypted into `partial`. The scratch buffer lives
/// on the stack of each poll only, so an idle connection waiting here
/// keeps none; bytes a poll reads are kept before it returns, so a wait
/// that is dropped loses nothing.
async fn read_tls(
    tls: &mut TlsStream<TcpStream>,
    partial: &mut Option<BytesMut>,
) -> io::Result<bool> {
    std::future::poll_fn(|cx| {
        let mut scratch = [0u8; SCRATCH];
        let mut read = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *tls).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
            }
            Poll::Ready(Ok(())) => {
                partial
                    .get_or_insert_with(BytesMut::new)
                    .extend_from_slice(read.filled());
                Poll::Ready(Ok(true))
            }
        }
    })
    .await
}

async fn read_ws(
    ws: &mut WebSocketStream<Stream>,
    partial: &mut Option<BytesMut>,
) -> io::Result<bool> {
    match ws.next().await {
        Some(Ok(Frame::Binary(bytes))) => {
            partial
                .get_or_insert_with(BytesMut::new)
                .extend_from_slice(&bytes);
            Ok(true)
        }
        Some(Ok(Frame::Close(_))) | None => Err(io::ErrorKind::UnexpectedEof.into()),
        // A ping's pong is queued by tungstenite: send it.
        Some(Ok(_)) => ws.flush().await.map(|()| false).map_err(io::Error::other),
        Some(Err(e)) => Err(io::Error::other(e)),
    }
}

fn read_available(socket: &TcpStream, partial: &mut Option<BytesMut>) -> io::Result<bool> {
    let mut scratch = [0u8; SCRATCH];
    match socket.try_read(&mut scratch) {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => {
            partial
                .get_or_insert_with(BytesMut::new)
                .extend_from_slice(&scratch[..n]);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Answers subprotocol `mqtt` if the client offers it.
// The error's shape is tungstenite's `Callback`'s.
#[allow(clippy::result_large_err)]
fn answer_mqtt(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "mqtt");
    if offered {
        let mqtt = "mqtt".parse().expect("a valid header value");
        response
            .headers_mut()
            .insert("sec-websocket-protocol", mqtt);
    }
    Ok(response)
}

/// The WebSocket handshake, on any path, answering subprotocol `mqtt`
/// when the client offers it (browsers' MQTT clients require it).
pub async fn accept_ws(socket: Stream, max_message: usize) -> io::Result<Socket> {
    let config = WebSocketConfig::default()
        .read_buffer_size(SCRATCH)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(socket, answer_mqtt, Some(config))
        .await
        .map_err(io::Error::other)?;
    Ok(Socket::Ws(Box::new(ws)))
}

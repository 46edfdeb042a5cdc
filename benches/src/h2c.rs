//! Cleartext HTTP/2 (h2c) baselines: what HBONE costs beyond HTTP/2 itself.
//!
//! Two baselines, both over loopback TCP with `TCP_NODELAY` and HBONE's HTTP/2 settings
//! (windows, frame size, send buffer from `mesh_client::hbone::settings`):
//!
//! - [`H2cConnection`] / [`serve_stream_echo`], on the `h2` crate that HBONE is built on: a
//!   CONNECT stream whose DATA frames are echoed back on the response stream. Opening one is an
//!   HBONE tunnel without TLS, without the CONNECT's validation, headers and policy, and without
//!   the pool; echoing on an open one is an HBONE echo without TLS and without the
//!   `AsyncRead`/`AsyncWrite` adapter and the tasks around it. The like-for-like baseline.
//! - [`HyperH2cClient`] / [`serve_hyper_echo`]: a hyper HTTP/2 server that answers each POST with
//!   its body, and a hyper client on one warm connection. Each echo is a whole request (HEADERS,
//!   DATA, response HEADERS, DATA, a new stream every time): what a service talking plain h2c
//!   would pay per call.

use std::{io, net::SocketAddr};

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_client::hbone::settings::{
    CONNECTION_WINDOW, MAX_FRAME_SIZE, MAX_SEND_BUFFER, STREAM_WINDOW,
};
use tokio::net::{TcpListener, TcpStream};

use crate::{
    BoxError,
    pki::LOOPBACK,
    services::{Listener, tcp_connect},
};

/// Serves [`H2cConnection`] streams: every request gets `200` and its DATA echoed back; the
/// request's END_STREAM ends the response.
pub async fn serve_stream_echo() -> io::Result<Listener> {
    let listener = TcpListener::bind((LOOPBACK, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(stream_echo_connection(tcp));
        }
    });
    Ok(Listener::new(addr, task))
}

async fn stream_echo_connection(tcp: TcpStream) -> Result<(), BoxError> {
    tcp.set_nodelay(true)?;
    let mut conn = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .handshake::<_, Bytes>(tcp)
        .await?;
    while let Some(accepted) = conn.accept().await {
        let (request, mut respond) = accepted?;
        let send = respond.send_response(Response::new(()), false)?;
        tokio::spawn(echo_stream(request.into_body(), send));
    }
    Ok(())
}

async fn echo_stream(mut recv: RecvStream, mut send: SendStream<Bytes>) -> Result<(), h2::Error> {
    while let Some(data) = recv.data().await {
        let data = data?;
        let _ = recv.flow_control().release_capacity(data.len());
        // Echoes are small: h2 queues them within the peer's window without a reservation.
        send.send_data(data, false)?;
    }
    send.send_data(Bytes::new(), true)
}

/// A cleartext HTTP/2 connection (the `h2` crate, HBONE's settings) whose driver runs on a task
/// of its own; it closes when dropped.
pub struct H2cConnection {
    send: h2::client::SendRequest<Bytes>,
    authority: String,
}

impl H2cConnection {
    /// Dials `addr` and completes the HTTP/2 handshake.
    pub async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        let tcp = tcp_connect(addr).await?;
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(tcp)
            .await?;
        tokio::spawn(conn);
        Ok(Self {
            send,
            authority: addr.to_string(),
        })
    }

    /// Opens a stream with a bare CONNECT (authority only, no other headers) and waits for `200`.
    pub async fn open(&self) -> Result<H2cStream, BoxError> {
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(self.authority.as_str())
            .body(())?;
        let mut send = self.send.clone().ready().await?;
        let (response, send) = send.send_request(request, false)?;
        let response = response.await?;
        if response.status() != StatusCode::OK {
            return Err(format!("h2c stream answered {}", response.status()).into());
        }
        Ok(H2cStream {
            send,
            recv: response.into_body(),
            pending: Bytes::new(),
        })
    }
}

/// One open h2c stream to [`serve_stream_echo`].
pub struct H2cStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
}

impl H2cStream {
    /// Sends `message` as one DATA frame (copied into `Bytes`, as HBONE's stream adapter copies
    /// each write) and reads the echo into `reply` (as long as `message`), releasing the window
    /// as it reads.
    pub async fn echo(&mut self, message: &[u8], reply: &mut [u8]) -> Result<(), BoxError> {
        self.send
            .send_data(Bytes::copy_from_slice(message), false)?;
        let mut filled = 0;
        while filled < reply.len() {
            if self.pending.is_empty() {
                let data = self
                    .recv
                    .data()
                    .await
                    .ok_or("h2c echo stream ended early")??;
                let _ = self.recv.flow_control().release_capacity(data.len());
                self.pending = data;
            }
            let n = self.pending.len().min(reply.len() - filled);
            reply[filled..filled + n].copy_from_slice(&self.pending.split_to(n));
            filled += n;
        }
        if reply != message {
            return Err("the echo differs from what was sent".into());
        }
        Ok(())
    }
}

/// Serves hyper's HTTP/2 (h2c, prior knowledge) on `127.0.0.1`: each POST is answered `200` with
/// its body.
pub async fn serve_hyper_echo() -> io::Result<Listener> {
    let listener = TcpListener::bind((LOOPBACK, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                tcp.set_nodelay(true)?;
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .initial_stream_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .max_frame_size(MAX_FRAME_SIZE)
                    .max_send_buf_size(MAX_SEND_BUFFER)
                    .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(echo_body))
                    .await
                    .map_err(io::Error::other)
            });
        }
    });
    Ok(Listener::new(addr, task))
}

async fn echo_body(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    Ok(Response::new(Full::new(body)))
}

/// A hyper HTTP/2 client on one warm h2c connection to [`serve_hyper_echo`].
pub struct HyperH2cClient {
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    uri: http::Uri,
}

impl HyperH2cClient {
    /// Dials `addr` and completes the HTTP/2 handshake; the connection is driven by a task.
    pub async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        let tcp = tcp_connect(addr).await?;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_send_buf_size(MAX_SEND_BUFFER)
            .handshake(TokioIo::new(tcp))
            .await?;
        tokio::spawn(conn);
        Ok(Self {
            send,
            uri: format!("http://{addr}/echo").parse()?,
        })
    }

    /// POSTs `message` and checks that the response body is the same bytes.
    pub async fn echo(&mut self, message: &Bytes) -> Result<(), BoxError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .body(Full::new(message.clone()))?;
        self.send.ready().await?;
        let response = self.send.send_request(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        if body != *message {
            return Err("the echo differs from what was sent".into());
        }
        Ok(())
    }
}

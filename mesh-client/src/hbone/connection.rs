//! One outbound HBONE connection: TCP + mTLS + HTTP/2, with keepalive and stream accounting.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::StatusCode;
use mesh_core::SpiffeId;
use mesh_tls::{ExpectedIdentities, MeshTls};
use tokio_util::sync::CancellationToken;

use super::{
    H2Stream, TunnelError,
    settings::{
        CLIENT_MAX_HEADER_LIST, CONNECTION_WINDOW, MAX_FRAME_SIZE, MAX_SEND_BUFFER, STREAM_WINDOW,
    },
};
use crate::net;

/// Timing knobs for outbound connections.
#[derive(Clone, Debug)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) response: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
}

/// A pooled HTTP/2 connection to one destination.
pub(crate) struct Connection {
    send: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    local_addr: SocketAddr,
    peer: SpiffeId,
    max_streams: usize,
    active: AtomicUsize,
    closed: Arc<AtomicBool>,
    idle_since: Mutex<Instant>,
    _shutdown: tokio_util::sync::DropGuard,
}

impl Connection {
    /// Dials, handshakes (mTLS then HTTP/2) and starts the connection's driver task.
    pub(crate) async fn open(
        tls: &MeshTls,
        addr: SocketAddr,
        expected: &ExpectedIdentities,
        max_streams: usize,
        timeouts: &Timeouts,
    ) -> Result<Self, TunnelError> {
        let tcp = net::dial(addr, timeouts.connect)
            .await
            .map_err(|source| TunnelError::Connect { addr, source })?;
        let local_addr = tcp
            .local_addr()
            .map_err(|source| TunnelError::Connect { addr, source })?;
        let (tls_stream, peer) = tls
            .connect(tcp, addr.ip(), expected)
            .await
            .map_err(|source| TunnelError::Tls { addr, source })?;
        if tls_stream.get_ref().1.alpn_protocol() != Some(mesh_tls::ALPN_H2) {
            return Err(TunnelError::NotHbone { addr });
        }
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_header_list_size(CLIENT_MAX_HEADER_LIST)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(tls_stream);
        let (send, mut connection) = tokio::time::timeout(timeouts.connect, handshake)
            .await
            .map_err(|_| TunnelError::Timeout {
                addr,
                phase: "HTTP/2 handshake",
                after: timeouts.connect,
            })?
            .map_err(|e| http2_error(addr, &e))?;

        let closed = Arc::new(AtomicBool::new(false));
        let shutdown = CancellationToken::new();
        let driver_closed = closed.clone();
        let driver_shutdown = shutdown.clone();
        let mut ping_pong = connection.ping_pong();
        let (interval, limit) = (timeouts.keepalive_interval, timeouts.keepalive_timeout);
        tokio::spawn(async move {
            let keepalive = async {
                let Some(pp) = ping_pong.as_mut() else {
                    return std::future::pending::<&'static str>().await;
                };
                loop {
                    tokio::time::sleep(interval).await;
                    match tokio::time::timeout(limit, pp.ping(h2::Ping::opaque())).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => return "keepalive PING failed",
                        Err(_) => return "no PING answer within the keepalive timeout",
                    }
                }
            };
            tokio::select! {
                result = &mut connection => {
                    if let Err(e) = result {
                        tracing::debug!(%addr, error = %e, "HBONE connection ended with an error");
                    }
                }
                reason = keepalive => tracing::info!(%addr, reason, "closing dead HBONE connection"),
                () = driver_shutdown.cancelled() => {}
            }
            driver_closed.store(true, Ordering::Release);
        });
        Ok(Self {
            send,
            addr,
            local_addr,
            peer,
            max_streams,
            active: AtomicUsize::new(0),
            closed,
            idle_since: Mutex::new(Instant::now()),
            _shutdown: shutdown.drop_guard(),
        })
    }

    /// Whether the driver task has ended (the connection is unusable).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Streams currently open.
    pub(crate) fn active_streams(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// How long the connection has had no streams, if it has none.
    pub(crate) fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.active_streams() > 0 {
            return None;
        }
        let since = *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(now.saturating_duration_since(since))
    }

    /// The stream limit: ours, capped by what the server allows.
    fn limit(&self) -> usize {
        self.max_streams.min(self.send.current_max_send_streams())
    }

    /// Claims a stream slot if the connection is open and below its limit.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        if self.is_closed() {
            return None;
        }
        let limit = self.limit();
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    fn release(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
    }

    /// Our side of the TCP connection (the default `forwarded: for=` value).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's verified identity.
    pub(crate) fn peer(&self) -> &SpiffeId {
        &self.peer
    }

    /// Sends the CONNECT on a slot claimed with [`try_acquire`](Self::try_acquire) and waits
    /// for the answer. The slot is returned when the stream (or the error) is dropped.
    pub(crate) async fn open_stream(
        &self,
        slot: Slot,
        request: http::Request<()>,
        response_timeout: Duration,
    ) -> Result<H2Stream, TunnelError> {
        let addr = self.addr;
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut send = self.send.clone();
        let exchange = async {
            send = send.ready().await.map_err(|e| http2_error(addr, &e))?;
            let (response, send_stream) = send
                .send_request(request, false)
                .map_err(|e| http2_error(addr, &e))?;
            let response = response.await.map_err(|e| http2_error(addr, &e))?;
            Ok::<_, TunnelError>((response, send_stream))
        };
        let (response, send_stream) = tokio::time::timeout(response_timeout, exchange)
            .await
            .map_err(|_| TunnelError::Timeout {
                addr,
                phase: "CONNECT response",
                after: response_timeout,
            })??;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => return Err(TunnelError::Denied { addr, authority }),
            StatusCode::SERVICE_UNAVAILABLE => {
                return Err(TunnelError::Unavailable { addr, authority });
            }
            StatusCode::BAD_REQUEST => return Err(TunnelError::BadRequest { addr, authority }),
            status => {
                return Err(TunnelError::Status {
                    addr,
                    authority,
                    status,
                });
            }
        }
        let baggage = response.headers().get("baggage").cloned();
        Ok(H2Stream::new(send_stream, response.into_body())
            .with_peer(self.peer.clone())
            .with_peer_baggage(baggage)
            .with_guard(Box::new(slot)))
    }
}

/// A claimed stream slot; returning it marks the connection idle when it was the last.
pub(crate) struct Slot(Arc<Connection>);

impl Slot {
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Classifies an h2 failure. A TLS alert from the server arrives here, not in the handshake:
/// in TLS 1.3 the server judges our certificate after our side has finished, so its rejection
/// surfaces on the first read, inside HTTP/2.
pub(crate) fn http2_error(addr: SocketAddr, e: &h2::Error) -> TunnelError {
    if let Some(io) = e.get_io() {
        let copy = match io.get_ref() {
            Some(inner) => match inner.downcast_ref::<rustls::Error>() {
                Some(tls) => std::io::Error::new(io.kind(), tls.clone()),
                None => std::io::Error::new(io.kind(), inner.to_string()),
            },
            None => std::io::Error::from(io.kind()),
        };
        match mesh_tls::HandshakeError::from_io(copy) {
            mesh_tls::HandshakeError::Io(_) => {}
            source => return TunnelError::Tls { addr, source },
        }
    }
    TunnelError::Http2 {
        addr,
        reason: e.to_string(),
        refused: e.reason() == Some(h2::Reason::REFUSED_STREAM),
    }
}

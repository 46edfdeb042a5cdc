//! An HTTP/2 stream presented as a byte stream: what an HBONE tunnel is to its users.

use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::deadline::{Deadlines, Side};

/// A bidirectional byte stream carried by one HTTP/2 stream (an HBONE tunnel).
///
/// - Reads return the DATA frames' bytes; the peer's END_STREAM is end-of-file.
/// - `shutdown()` sends END_STREAM (TCP FIN), leaving the read side open: half-close works
///   both ways.
/// - A peer's RST_STREAM surfaces as `io::ErrorKind::ConnectionReset`; dropping the stream before
///   shutting it down resets it (CANCEL), which the peer sees as a reset.
///
/// Flow-control capacity is released as the application reads, so a reader that stops reading
/// stops the sender at the stream window (4 MiB) without stalling other streams.
///
/// A tunnel from [`Mesh::connect`](crate::mesh::Mesh::connect) also keeps its destination's
/// `connectionPool.tcp.idleTimeout` and `maxConnectionDuration`: when either passes, the stream
/// is reset (the peer sees a reset) and reads and writes fail with `io::ErrorKind::TimedOut`
/// and a message naming the setting.
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Data received but not yet handed to the reader.
    pending: Bytes,
    write_closed: bool,
    /// The verified identity of the workload at the other end.
    peer: Option<mesh_core::SpiffeId>,
    /// The `baggage` the other end described itself with (outbound: the CONNECT's answer).
    peer_baggage: Option<http::HeaderValue>,
    /// Counts bytes and the tunnel's lifetime for the metrics (when telemetry is on).
    meter: Option<Box<crate::observe::TunnelMeter>>,
    /// Idle timeout and maximum lifetime, when the tunnel has them.
    deadlines: Option<Box<Deadlines>>,
    /// Dropped when the stream is, so a pool can count open streams.
    _guard: Option<Box<dyn Send + Sync>>,
}

impl H2Stream {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self {
            send,
            recv,
            pending: Bytes::new(),
            write_closed: false,
            peer: None,
            peer_baggage: None,
            meter: None,
            deadlines: None,
            _guard: None,
        }
    }

    pub(crate) fn with_peer(mut self, peer: mesh_core::SpiffeId) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The verified SPIFFE ID of the workload at the other end of the tunnel.
    pub fn peer_identity(&self) -> Option<&mesh_core::SpiffeId> {
        self.peer.as_ref()
    }

    /// Adds `guard`, dropped with the stream. Earlier guards are kept (a pool slot and a
    /// connection-limit permit both live as long as the tunnel).
    pub(crate) fn with_guard(mut self, guard: Box<dyn Send + Sync>) -> Self {
        self._guard = Some(match self._guard.take() {
            Some(earlier) => Box::new((earlier, guard)),
            None => guard,
        });
        self
    }

    pub(crate) fn with_peer_baggage(mut self, baggage: Option<http::HeaderValue>) -> Self {
        self.peer_baggage = baggage;
        self
    }

    /// The W3C `baggage` the workload at the other end described itself with (its namespace,
    /// workload name, canonical service), when it sent one.
    pub fn peer_baggage(&self) -> Option<&http::HeaderValue> {
        self.peer_baggage.as_ref()
    }

    pub(crate) fn with_meter(mut self, meter: Option<crate::observe::TunnelMeter>) -> Self {
        self.meter = meter.map(Box::new);
        self
    }

    /// Ends the stream when it sees no bytes either way for `idle`, or when it is
    /// `max_duration` old (from now), whichever comes first; `None` is no limit. Must run
    /// inside the Tokio runtime.
    pub(crate) fn with_deadlines(
        mut self,
        idle: Option<std::time::Duration>,
        max_duration: Option<std::time::Duration>,
    ) -> Self {
        self.deadlines = Deadlines::new(idle, max_duration).map(Box::new);
        self
    }

    /// Resets the stream with CANCEL, as a TCP RST would (the peer sees a reset, not EOF).
    pub fn reset(&mut self) {
        self.send.send_reset(h2::Reason::CANCEL);
        self.write_closed = true;
    }

    /// The error of a stream its deadlines ended.
    fn expired(&self) -> Option<io::Error> {
        let expiry = self.deadlines.as_deref()?.expired()?;
        Some(expiry.to_io())
    }

    /// Bytes are about to move: recorded for the idle timeout, or the stream is ended when a
    /// deadline has passed.
    fn activity(&mut self) -> io::Result<()> {
        let Some(deadlines) = self.deadlines.as_deref_mut() else {
            return Ok(());
        };
        match deadlines.activity() {
            Ok(()) => Ok(()),
            Err(expiry) => Err(self.end(expiry)),
        }
    }

    /// `side` waits on the peer: also wait on the deadlines, ending the stream when one
    /// passes.
    fn poll_deadlines<T>(&mut self, side: Side, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(deadlines) = self.deadlines.as_deref_mut() else {
            return Poll::Pending;
        };
        let expiry = ready!(deadlines.poll_expired(side, cx));
        Poll::Ready(Err(self.end(expiry)))
    }

    /// Resets the stream because of `expiry` (once) and returns the error to report.
    fn end(&mut self, expiry: super::deadline::Expiry) -> io::Error {
        let error = expiry.to_io();
        if !self.write_closed {
            tracing::debug!(
                target: "mesh::tcp",
                stream_id = self.send.stream_id().as_u32(),
                reason = %error,
                "tunnel reset"
            );
        }
        self.reset();
        error
    }
}

fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("HTTP/2 I/O error"));
    }
    let kind = match e.reason() {
        Some(h2::Reason::CANCEL | h2::Reason::STREAM_CLOSED) => io::ErrorKind::ConnectionReset,
        Some(h2::Reason::NO_ERROR) if e.is_go_away() => io::ErrorKind::ConnectionAborted,
        Some(_) if e.is_reset() => io::ErrorKind::ConnectionReset,
        Some(_) if e.is_go_away() => io::ErrorKind::ConnectionAborted,
        _ => io::ErrorKind::BrokenPipe,
    };
    io::Error::new(kind, e)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.expired() {
            return Poll::Ready(Err(e));
        }
        // An empty DATA frame (legal without END_STREAM) must not read as end-of-file.
        while self.pending.is_empty() {
            let Poll::Ready(data) = self.recv.poll_data(cx) else {
                return self.poll_deadlines(Side::Read, cx);
            };
            match data {
                Some(Ok(data)) => {
                    // Give the window back now: we own the bytes, the sender may continue.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(meter) = self.meter.as_mut() {
                        meter.read(data.len());
                    }
                    self.pending = data;
                }
                Some(Err(e)) => {
                    let e = h2_to_io(e);
                    if let Some(meter) = self.meter.as_mut()
                        && e.kind() == io::ErrorKind::ConnectionReset
                    {
                        meter.reset_by_peer();
                    }
                    return Poll::Ready(Err(e));
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        if buf.remaining() > 0 {
            self.activity()?;
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.expired() {
            return Poll::Ready(Err(e));
        }
        if self.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the tunnel's write side is already shut down",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            // A reset from the peer ends writing even while we wait for window.
            if let Poll::Ready(reason) = self.send.poll_reset(cx) {
                return Poll::Ready(Err(match reason {
                    Ok(reason) => io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        format!("the peer reset the tunnel ({reason})"),
                    ),
                    Err(e) => h2_to_io(e),
                }));
            }
            let Poll::Ready(capacity) = self.send.poll_capacity(cx) else {
                return self.poll_deadlines(Side::Write, cx);
            };
            match capacity {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    self.activity()?;
                    let n = n.min(buf.len());
                    self.send
                        .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(h2_to_io)?;
                    if let Some(meter) = self.meter.as_mut() {
                        meter.wrote(n);
                    }
                    return Poll::Ready(Ok(n));
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the tunnel's stream is closed",
                    )));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2 hands data to the connection task as soon as it has window; nothing is held here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_closed {
            return Poll::Ready(Ok(()));
        }
        self.write_closed = true;
        match self.send.send_data(Bytes::new(), true) {
            Ok(()) => Poll::Ready(Ok(())),
            // Already closed by a reset: shutting down is moot, not an error worth surfacing.
            Err(e) if e.is_reset() => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(h2_to_io(e))),
        }
    }
}

impl fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Stream")
            .field("stream_id", &self.send.stream_id().as_u32())
            .field("write_closed", &self.write_closed)
            .finish_non_exhaustive()
    }
}

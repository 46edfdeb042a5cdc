//! The request body for checks that include it (`include_request_body_in_check`): reading
//! the first bytes of the body, the check request's body made of them, and the whole body
//! handed back to the application afterwards.
//!
//! Only the bytes the checks need are read: up to the largest `max_request_bytes` of the
//! providers asked (one byte more for a provider refusing partial messages, to tell a body
//! of exactly the limit from a larger one). The frames read are kept as they came (no copy;
//! the last one may run past the limit, the check gets only the limit) and replayed before
//! the unread rest, so the application sees every byte once, in order, trailers included.
//!
//! The application's services take hyper's `Incoming`, which only hyper can make; the
//! re-joined body is therefore passed through an in-memory HTTP/2 connection
//! ([`Buffered::into_incoming`]), which costs a copy and two tasks per such request. Requests
//! whose body was not touched (none, or no check asked for it) keep their own `Incoming`.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::oneshot;

use crate::http::BoxError;

/// Bytes in flight on the in-memory connection (pipe buffer and HTTP/2 windows).
const LOOPBACK_WINDOW: u32 = 256 * 1024;

/// The start of a request body, read for the checks, and what was not read.
#[derive(Debug)]
pub(crate) struct Buffered {
    /// Every frame read, in order.
    held: VecDeque<Frame<Bytes>>,
    /// Data bytes in `held`.
    len: usize,
    /// Whether the body ended within `held` (the checks see all of it).
    ended: bool,
    /// The unread rest.
    rest: Incoming,
}

/// The part of the body one check sends.
#[derive(Debug)]
pub(crate) struct CheckBody {
    chunks: VecDeque<Bytes>,
    len: usize,
    partial: bool,
}

impl CheckBody {
    /// An empty body (no body in the check).
    pub(crate) fn empty() -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
            partial: false,
        }
    }

    /// Its length in bytes (the check request's `Content-Length`).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the request body goes on past these bytes (`x-envoy-auth-partial-body`).
    pub(crate) fn partial(&self) -> bool {
        self.partial
    }
}

impl Body for CheckBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

impl Buffered {
    /// Reads `body` until `limit` data bytes are held or it ends. Fails when the caller's
    /// body fails (reset, bad framing).
    pub(crate) async fn read(mut body: Incoming, limit: usize) -> Result<Self, hyper::Error> {
        let mut held = VecDeque::new();
        let mut len = 0;
        let mut ended = body.is_end_stream();
        while !ended && len < limit {
            match body.frame().await {
                None => ended = true,
                Some(frame) => {
                    let frame = frame?;
                    if let Some(data) = frame.data_ref() {
                        len += data.len();
                    }
                    held.push_back(frame);
                    ended = body.is_end_stream();
                }
            }
        }
        Ok(Self {
            held,
            len,
            ended,
            rest: body,
        })
    }

    /// Whether the body is known to be longer than `max` bytes.
    pub(crate) fn longer_than(&self, max: usize) -> bool {
        self.len > max
    }

    /// The first `max` bytes, for a check (shared with the held frames, not copied).
    pub(crate) fn check_body(&self, max: usize) -> CheckBody {
        let mut chunks = VecDeque::new();
        let mut len = 0;
        for data in self.held.iter().filter_map(Frame::data_ref) {
            if len == max {
                break;
            }
            let take = data.len().min(max - len);
            if take > 0 {
                chunks.push_back(data.slice(..take));
                len += take;
            }
        }
        CheckBody {
            chunks,
            len,
            partial: self.len > len || !self.ended,
        }
    }

    /// The whole body again, as the application's services take it: the `Incoming` itself
    /// when nothing was read, else the held frames then the rest through an in-memory
    /// HTTP/2 connection.
    pub(crate) async fn into_incoming(self) -> Result<Incoming, String> {
        if self.held.is_empty() {
            return Ok(self.rest);
        }
        let rejoined = Rejoined {
            held_len: self.len,
            held: self.held,
            rest: self.rest,
        };
        through_loopback(rejoined).await
    }
}

/// The held frames, then the rest of the caller's body.
struct Rejoined {
    held: VecDeque<Frame<Bytes>>,
    /// Data bytes still in `held`.
    held_len: usize,
    rest: Incoming,
}

impl Body for Rejoined {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.held.pop_front() {
            if let Some(data) = frame.data_ref() {
                self.held_len -= data.len();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let held = self.held_len as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(held));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

/// A body that lets go of `done` when it ends, fails or is dropped.
struct Signalling<B> {
    inner: B,
    done: Option<oneshot::Sender<()>>,
}

impl<B: Body + Unpin> Body for Signalling<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.done = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Sends `body` as one request over an in-memory HTTP/2 connection and returns the body as
/// the serving side receives it. The serving side answers only once `body` has been sent
/// whole (or failed, or was abandoned), so the stream stays open while the body flows; both
/// connection tasks end when the stream is done.
async fn through_loopback<B>(body: B) -> Result<Incoming, String>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (client_io, server_io) = tokio::io::duplex(LOOPBACK_WINDOW as usize);
    let (body_tx, body_rx) = oneshot::channel::<Incoming>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let slot = Arc::new(Mutex::new(Some((body_tx, done_rx))));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let taken = slot.lock().ok().and_then(|mut s| s.take());
        async move {
            if let Some((body_tx, done_rx)) = taken {
                // Only the first request is the one sent below.
                if body_tx.send(request.into_body()).is_ok() {
                    let _ = done_rx.await;
                }
            }
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let server = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(LOOPBACK_WINDOW)
        .initial_connection_window_size(LOOPBACK_WINDOW)
        .serve_connection(TokioIo::new(server_io), service);
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::debug!(error = %e, "in-memory body connection (serving side) ended");
        }
    });
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(LOOPBACK_WINDOW)
        .initial_connection_window_size(LOOPBACK_WINDOW)
        .handshake(TokioIo::new(client_io))
        .await
        .map_err(|e| format!("cannot open the in-memory body connection: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "in-memory body connection (sending side) ended");
        }
    });
    let request = Request::post("http://request-body.invalid/")
        .body(Signalling {
            inner: body.map_err(Into::into),
            done: Some(done_tx),
        })
        .map_err(|e| format!("cannot build the in-memory body request: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = sender.send_request(request).await {
            tracing::debug!(error = %e, "in-memory body request ended early");
        }
    });
    body_rx
        .await
        .map_err(|_| "the in-memory body connection closed before the body arrived".to_owned())
}

//! HTTP/2: one multiplexed connection per endpoint, shared by every request to it, and what
//! retires it.
//!
//! A connection stops being handed out when it closed, carried its destination's
//! `connectionPool.http.maxRequestsPerConnection`, went unused for the HTTP idle timeout
//! (`http.idleTimeout`, else `tcp.idleTimeout`, else one hour) or reached
//! `tcp.maxConnectionDuration` (its connection task [retires](Http2Shared::retire) it at that
//! age). With the pool's sender gone, the connection takes no new stream and closes once the
//! streams in flight end.

use mesh_core::fast_hash::FastMap;
use std::{
    net::SocketAddr,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;
use mesh_core::traffic::ConnectionPoolSettings;

use crate::http::UpstreamInfo;

/// An endpoint's HTTP/2 connection and who answers on it.
pub(super) type Http2Connection = (SendRequest<Full<Bytes>>, UpstreamInfo);

/// Names connections, so a connection's task retires its own and not a successor.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A shared connection with what retires it.
struct Shared {
    connection: Http2Connection,
    id: u64,
    /// Requests it may still start (`maxRequestsPerConnection`), when limited.
    requests_left: Option<u32>,
    /// When its last request started.
    last_used: Instant,
    /// The HTTP idle timeout (`None`: never).
    idle_timeout: Option<Duration>,
    /// When it reaches `tcp.maxConnectionDuration`, when limited.
    end_of_life: Option<Instant>,
}

impl Shared {
    /// Whether it must not start another request: closed, idle too long or too old.
    fn retired(&self, now: Instant) -> bool {
        self.connection.0.is_closed()
            || self.end_of_life.is_some_and(|at| now >= at)
            || self
                .idle_timeout
                .is_some_and(|idle| now.saturating_duration_since(self.last_used) >= idle)
    }
}

/// The shared HTTP/2 connections by endpoint.
pub(super) struct Http2Shared {
    by_endpoint: Mutex<FastMap<SocketAddr, Shared>>,
}

impl Http2Shared {
    pub(super) fn new() -> Self {
        Self {
            by_endpoint: Mutex::new(FastMap::default()),
        }
    }

    /// A name for a connection about to be opened.
    pub(super) fn next_id() -> u64 {
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    }

    /// The endpoint's connection for one more request, or `None` when there is none or it is
    /// retired (then it is dropped, and the caller opens another).
    pub(super) fn checkout(&self, endpoint: SocketAddr) -> Option<Http2Connection> {
        let mut shared = self
            .by_endpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = shared.get_mut(&endpoint)?;
        let now = Instant::now();
        if entry.retired(now) {
            // Dropping the last sender lets the connection close once its streams end.
            shared.remove(&endpoint);
            return None;
        }
        entry.last_used = now;
        let connection = entry.connection.clone();
        if let Some(left) = &mut entry.requests_left {
            *left -= 1;
            if *left == 0 {
                shared.remove(&endpoint);
            }
        }
        Some(connection)
    }

    /// Shares `connection` (named `id`, opened at `opened`, carrying its first request now)
    /// for the next requests to `endpoint`, unless one request is all it may carry.
    pub(super) fn share(
        &self,
        endpoint: SocketAddr,
        connection: &Http2Connection,
        id: u64,
        pool: &ConnectionPoolSettings,
        opened: Instant,
    ) {
        let requests_left = pool
            .http
            .max_requests_per_connection
            .filter(|&n| n > 0)
            .map(|n| n - 1);
        if requests_left == Some(0) {
            return;
        }
        self.by_endpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                endpoint,
                Shared {
                    connection: connection.clone(),
                    id,
                    requests_left,
                    last_used: opened,
                    idle_timeout: pool.http_idle_timeout(),
                    end_of_life: pool.max_connection_duration().map(|d| opened + d),
                },
            );
    }

    /// Stops sharing connection `id` to `endpoint`: it reached
    /// `connectionPool.tcp.maxConnectionDuration`.
    pub(super) fn retire(&self, endpoint: SocketAddr, id: u64) {
        let mut shared = self
            .by_endpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shared.get(&endpoint).is_some_and(|s| s.id == id) {
            shared.remove(&endpoint);
        }
    }
}

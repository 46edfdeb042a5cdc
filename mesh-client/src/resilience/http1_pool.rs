//! Kept-alive HTTP/1.1 connections per endpoint, each riding one HBONE tunnel.
//!
//! Why not hyper-util's pooled client: it returns a connection to its pool from a task spawned
//! per request once the connection is ready again, and a request arriving before that task ran
//! dials a second connection in parallel. Both cost a thread hand-off or a CONNECT exchange on
//! a path whose whole budget is a few microseconds over plain hyper. Here a connection goes
//! back to its endpoint's list as soon as the response head is in, and a checkout takes the
//! first connection that is ready *now* (its previous response was read to the end), so a
//! sequential caller reuses one connection with no extra task and concurrent callers open as
//! many connections as they keep busy.
//!
//! Bounds: at most [`MAX_IDLE_PER_ENDPOINT`] connections are kept per endpoint (more are
//! closed when they come back); a connection unused for its destination's
//! `connectionPool.http.idleTimeout` (else `tcp.idleTimeout`, else one hour, as Istio) is
//! closed at the next checkout or sweep, which releases its tunnel; one that carried
//! `maxRequestsPerConnection` requests is not kept; one older than `tcp.maxConnectionDuration`
//! is not handed out again: its connection task [retires](Http1Pool::retire) it from the pool
//! at that age (it closes at once when idle), and one busy then is dropped when its response
//! head is in (it closes once the response is read).

use mesh_core::fast_hash::FastMap;
use std::{
    net::SocketAddr,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use mesh_core::traffic::ConnectionPoolSettings;

use crate::http::UpstreamInfo;

/// At most this many kept-alive connections per endpoint.
pub(super) const MAX_IDLE_PER_ENDPOINT: usize = 64;

/// How often the whole pool is swept for expired connections (on the next checkout).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Names connections, so a connection's task can find it in the pool.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// One kept-alive connection and who answers on it.
pub(super) struct Http1Connection {
    pub(super) sender: SendRequest<Full<Bytes>>,
    pub(super) upstream: UpstreamInfo,
    /// Which connection this is (see [`Http1Pool::retire`]).
    id: u64,
    last_used: Instant,
    /// The destination's HTTP idle timeout (`None`: never).
    idle_timeout: Option<Duration>,
    /// When it reaches `connectionPool.tcp.maxConnectionDuration`, when limited.
    end_of_life: Option<Instant>,
    /// Requests it may still carry (`maxRequestsPerConnection`), when limited.
    requests_left: Option<u32>,
}

impl Http1Connection {
    /// A connection opened at `opened`, kept and retired as the destination's
    /// `connectionPool` says.
    pub(super) fn new(
        sender: SendRequest<Full<Bytes>>,
        upstream: UpstreamInfo,
        pool: &ConnectionPoolSettings,
        opened: Instant,
    ) -> Self {
        Self {
            sender,
            upstream,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            last_used: opened,
            idle_timeout: pool.http_idle_timeout(),
            end_of_life: pool.max_connection_duration().map(|d| opened + d),
            requests_left: pool.http.max_requests_per_connection.filter(|&n| n > 0),
        }
    }

    /// Which connection this is, for [`Http1Pool::retire`].
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    fn expired(&self, now: Instant) -> bool {
        self.sender.is_closed()
            || self.too_old(now)
            || self
                .idle_timeout
                .is_some_and(|idle| now.saturating_duration_since(self.last_used) >= idle)
    }

    /// Whether it reached its maximum duration.
    fn too_old(&self, now: Instant) -> bool {
        self.end_of_life.is_some_and(|at| now >= at)
    }
}

/// What [`Http1Pool::checkout`] found.
pub(super) enum Checkout {
    /// A connection that takes a request now.
    Ready(Http1Connection),
    /// Only busy connections: this is the one used last. Its response may be just finishing
    /// (then it is ready in a moment) or still unread by its caller.
    Busy(Http1Connection),
    /// No connection to that endpoint.
    None,
}

/// Kept-alive connections by endpoint.
pub(super) struct Http1Pool {
    idle: Mutex<FastMap<SocketAddr, Vec<Http1Connection>>>,
    /// When the whole pool was last swept for expired connections.
    last_sweep: Mutex<Instant>,
}

impl Http1Pool {
    pub(super) fn new() -> Self {
        Self {
            idle: Mutex::new(FastMap::default()),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// A connection to `endpoint` that can take a request now or, failing that, the one
    /// most recently used (its response may be just finishing). Closed and expired
    /// connections met on the way are dropped.
    pub(super) fn checkout(&self, endpoint: SocketAddr) -> Checkout {
        let now = Instant::now();
        self.sweep_if_due(now);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(list) = idle.get_mut(&endpoint) else {
            return Checkout::None;
        };
        let mut found = Checkout::None;
        let mut busy = None;
        // Newest first: the connection used last is the likeliest to be ready and warm.
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if list[i].expired(now) {
                list.swap_remove(i);
                // `swap_remove` moved the last entry here; the newest busy one is gone if it
                // was that entry.
                if busy == Some(list.len()) {
                    busy = Some(i);
                }
                continue;
            }
            if ready_now(&mut list[i].sender) {
                found = Checkout::Ready(list.swap_remove(i));
                busy = None;
                break;
            }
            busy.get_or_insert(i);
        }
        if let Some(i) = busy {
            found = Checkout::Busy(list.swap_remove(i));
        }
        // An emptied list stays (with its allocation) for the connection coming back after
        // the response; sweeps drop lists that stay empty.
        found
    }

    /// Keeps `connection` for the next request to `endpoint` (it becomes ready once the
    /// response in flight on it has been read to the end), unless it has carried its
    /// `maxRequestsPerConnection` or reached its maximum duration: then it is dropped, and
    /// closes once that response is read.
    pub(super) fn put_back(&self, endpoint: SocketAddr, mut connection: Http1Connection) {
        if let Some(left) = &mut connection.requests_left {
            *left -= 1;
            if *left == 0 {
                return;
            }
        }
        self.keep(endpoint, connection);
    }

    /// Keeps `connection`, which carried no request since it was checked out, unless it is
    /// closed or too old (then it is dropped, and closes once idle).
    pub(super) fn keep(&self, endpoint: SocketAddr, mut connection: Http1Connection) {
        if connection.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Read under the lock: a connection's task retiring it at its maximum duration either
        // finds it in the list or ran before this, and then this sees it too old.
        let now = Instant::now();
        if connection.too_old(now) {
            return;
        }
        connection.last_used = now;
        let list = idle.entry(endpoint).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(connection);
        }
    }

    /// Drops the connection `id` to `endpoint` if it waits in the pool, so it closes now: it
    /// reached `connectionPool.tcp.maxConnectionDuration`. One in use is not found; it is too
    /// old when it comes back, and is dropped then.
    pub(super) fn retire(&self, endpoint: SocketAddr, id: u64) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(list) = idle.get_mut(&endpoint) else {
            return;
        };
        list.retain(|c| c.id != id);
    }

    /// Every [`SWEEP_EVERY`], drops expired and closed connections of every endpoint, so
    /// endpoints no longer called do not keep their tunnels open forever.
    fn sweep_if_due(&self, now: Instant) {
        {
            let mut last = self
                .last_sweep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now.saturating_duration_since(*last) < SWEEP_EVERY {
                return;
            }
            *last = now;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            list.retain(|c| !c.expired(now));
            !list.is_empty()
        });
    }
}

/// Whether `sender` can take a request right now, without waiting.
fn ready_now(sender: &mut SendRequest<Full<Bytes>>) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    matches!(sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
}

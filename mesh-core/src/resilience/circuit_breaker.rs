//! Connection-pool circuit breaking: hard caps on concurrent connections, queued requests,
//! active requests and active retries, as Envoy's thresholds and Istio's `connectionPool` set.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use thiserror::Error;

/// The resources a [`CircuitBreaker`] caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// Open connections to the service (Istio `tcp.maxConnections`).
    Connection,
    /// Requests waiting for a connection (Istio `http.http1MaxPendingRequests`).
    PendingRequest,
    /// Requests in flight (Istio `http.http2MaxRequests`).
    Request,
    /// Retries in flight (Istio `http.maxRetries`).
    Retry,
}

impl ResourceKind {
    /// Every kind, in index order.
    pub const ALL: [Self; 4] = [
        Self::Connection,
        Self::PendingRequest,
        Self::Request,
        Self::Retry,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connection => "connections",
            Self::PendingRequest => "pending requests",
            Self::Request => "requests",
            Self::Retry => "retries",
        })
    }
}

/// A resource was refused because its limit is reached: the breaker is open for that kind.
///
/// Envoy answers such requests with 503 and `x-envoy-overloaded`; `mesh-client` should fail
/// fast the same way rather than queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("circuit breaker open: {kind} are at their limit of {limit}")]
pub struct Overflow {
    /// Which limit was hit.
    pub kind: ResourceKind,
    /// Its value at the time.
    pub limit: u64,
}

/// Per-kind limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum open connections.
    pub max_connections: u64,
    /// Maximum requests waiting for a connection.
    pub max_pending_requests: u64,
    /// Maximum requests in flight.
    pub max_requests: u64,
    /// Maximum retries in flight.
    pub max_retries: u64,
}

impl Default for Limits {
    /// Istio's defaults: effectively unlimited (`2^32 - 1`) for every kind.
    fn default() -> Self {
        const ISTIO_UNLIMITED: u64 = u32::MAX as u64;
        Self {
            max_connections: ISTIO_UNLIMITED,
            max_pending_requests: ISTIO_UNLIMITED,
            max_requests: ISTIO_UNLIMITED,
            max_retries: ISTIO_UNLIMITED,
        }
    }
}

impl Limits {
    /// Envoy's own defaults: 1024 connections, pending and active requests, 3 retries.
    pub const fn envoy_defaults() -> Self {
        Self {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }

    /// The limit for `kind`.
    pub const fn get(&self, kind: ResourceKind) -> u64 {
        match kind {
            ResourceKind::Connection => self.max_connections,
            ResourceKind::PendingRequest => self.max_pending_requests,
            ResourceKind::Request => self.max_requests,
            ResourceKind::Retry => self.max_retries,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    limit: [AtomicU64; 4],
    in_use: [AtomicU64; 4],
    overflows: [AtomicU64; 4],
}

/// Caps concurrent use of a service's resources; a permit is held while a resource is in use.
///
/// [`try_acquire`](Self::try_acquire) either returns a [`Permit`], released when dropped, or an
/// [`Overflow`] naming the limit; nothing waits. Admission is a compare-and-swap, so the
/// breaker is shared by cloning (an `Arc` inside) and never admits more than a limit even under
/// contention. Lowering a limit does not revoke permits already held; new ones are refused until
/// usage falls below it.
///
/// ```
/// use mesh_core::resilience::{CircuitBreaker, Limits, ResourceKind};
///
/// let breaker = CircuitBreaker::new(Limits { max_retries: 1, ..Limits::default() });
/// let retry = breaker.try_acquire(ResourceKind::Retry)?;
/// assert!(breaker.try_acquire(ResourceKind::Retry).is_err());
/// drop(retry);
/// assert!(breaker.try_acquire(ResourceKind::Retry).is_ok());
/// assert_eq!(breaker.stats().overflows(ResourceKind::Retry), 1);
/// # Ok::<(), mesh_core::resilience::Overflow>(())
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    counters: Arc<Counters>,
}

impl CircuitBreaker {
    /// A breaker with these limits and nothing in use.
    pub fn new(limits: Limits) -> Self {
        let breaker = Self {
            counters: Arc::new(Counters::default()),
        };
        breaker.set_limits(limits);
        breaker
    }

    /// Changes the limits (for a config update); permits already held stay valid.
    pub fn set_limits(&self, limits: Limits) {
        for kind in ResourceKind::ALL {
            self.counters.limit[kind.index()].store(limits.get(kind), Ordering::Release);
        }
    }

    /// The current limits.
    pub fn limits(&self) -> Limits {
        let get = |kind: ResourceKind| self.counters.limit[kind.index()].load(Ordering::Acquire);
        Limits {
            max_connections: get(ResourceKind::Connection),
            max_pending_requests: get(ResourceKind::PendingRequest),
            max_requests: get(ResourceKind::Request),
            max_retries: get(ResourceKind::Retry),
        }
    }

    /// Takes one unit of `kind`, or reports the overflow (and counts it).
    pub fn try_acquire(&self, kind: ResourceKind) -> Result<Permit, Overflow> {
        let i = kind.index();
        let limit = self.counters.limit[i].load(Ordering::Acquire);
        let admitted =
            self.counters.in_use[i].fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < limit).then_some(used + 1)
            });
        match admitted {
            Ok(_) => Ok(Permit {
                counters: Arc::clone(&self.counters),
                kind,
            }),
            Err(_) => {
                self.counters.overflows[i].fetch_add(1, Ordering::Relaxed);
                Err(Overflow { kind, limit })
            }
        }
    }

    /// Usage and overflow counts, for metrics (`upstream_rq_pending_overflow` and friends).
    pub fn stats(&self) -> BreakerStats {
        let read = |a: &[AtomicU64; 4]| a.each_ref().map(|c| c.load(Ordering::Acquire));
        BreakerStats {
            in_use: read(&self.counters.in_use),
            overflows: read(&self.counters.overflows),
        }
    }
}

/// A point-in-time copy of a breaker's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreakerStats {
    in_use: [u64; 4],
    overflows: [u64; 4],
}

impl BreakerStats {
    /// Permits of `kind` currently held.
    pub fn in_use(&self, kind: ResourceKind) -> u64 {
        self.in_use[kind.index()]
    }

    /// Acquisitions of `kind` refused so far.
    pub fn overflows(&self, kind: ResourceKind) -> u64 {
        self.overflows[kind.index()]
    }
}

/// One unit of a resource, returned to the breaker when dropped.
#[derive(Debug)]
#[must_use = "the resource is released as soon as the permit is dropped"]
pub struct Permit {
    counters: Arc<Counters>,
    kind: ResourceKind,
}

impl Permit {
    /// Which resource this permit holds.
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // Every permit was counted in, so this never underflows.
        self.counters.in_use[self.kind.index()].fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> CircuitBreaker {
        CircuitBreaker::new(Limits {
            max_connections: 2,
            max_pending_requests: 0,
            max_requests: 1,
            max_retries: 3,
        })
    }

    #[test]
    fn limits_are_per_kind() {
        let b = small();
        let c1 = b.try_acquire(ResourceKind::Connection).unwrap();
        let _c2 = b.try_acquire(ResourceKind::Connection).unwrap();
        let err = b.try_acquire(ResourceKind::Connection).unwrap_err();
        assert_eq!(
            err,
            Overflow {
                kind: ResourceKind::Connection,
                limit: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "circuit breaker open: connections are at their limit of 2"
        );
        assert!(b.try_acquire(ResourceKind::PendingRequest).is_err());
        let r = b.try_acquire(ResourceKind::Request).unwrap();
        assert_eq!(r.kind(), ResourceKind::Request);
        let stats = b.stats();
        assert_eq!(stats.in_use(ResourceKind::Connection), 2);
        assert_eq!(stats.overflows(ResourceKind::Connection), 1);
        assert_eq!(stats.overflows(ResourceKind::PendingRequest), 1);
        drop(c1);
        assert_eq!(b.stats().in_use(ResourceKind::Connection), 1);
    }

    #[test]
    fn lowering_a_limit_keeps_held_permits() {
        let b = small();
        let held: Vec<_> = (0..3)
            .map(|_| b.try_acquire(ResourceKind::Retry).unwrap())
            .collect();
        b.set_limits(Limits {
            max_retries: 1,
            ..b.limits()
        });
        assert_eq!(b.limits().max_retries, 1);
        assert!(b.try_acquire(ResourceKind::Retry).is_err());
        drop(held);
        assert!(b.try_acquire(ResourceKind::Retry).is_ok());
    }

    #[test]
    fn clones_share_counters_and_defaults() {
        let b = small();
        let other = b.clone();
        let _p = b.try_acquire(ResourceKind::Request).unwrap();
        assert!(other.try_acquire(ResourceKind::Request).is_err());
        assert_eq!(Limits::default().max_retries, u64::from(u32::MAX));
        assert_eq!(Limits::envoy_defaults().max_retries, 3);
        assert_eq!(ResourceKind::PendingRequest.to_string(), "pending requests");
    }

    #[test]
    fn never_exceeds_limit_under_contention() {
        let b = CircuitBreaker::new(Limits {
            max_requests: 4,
            ..Limits::default()
        });
        let peak = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                let peak = Arc::clone(&peak);
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        if let Ok(p) = b.try_acquire(ResourceKind::Request) {
                            let used = b.stats().in_use(ResourceKind::Request);
                            peak.fetch_max(used, Ordering::Relaxed);
                            drop(p);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::Relaxed) <= 4);
        assert_eq!(b.stats().in_use(ResourceKind::Request), 0);
    }
}

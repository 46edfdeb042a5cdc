//! Time as an input: the [`Clock`] trait, [`Timestamp`], and clocks for production and tests.
//!
//! Every state machine in this crate that reasons about time (EWMA decay, ejection windows, retry
//! budgets) reads it from a [`Clock`] or takes a [`Timestamp`] argument instead of calling
//! `Instant::now()`. Tests and fuzzers drive time with a [`ManualClock`]; `mesh-client` passes a
//! [`SystemClock`]. Timestamps are plain nanosecond counts, so a fuzzer can build any of them from
//! a `u64` and every computation on them is deterministic.

use std::{
    ops::Add,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// A point on a monotonic clock, in nanoseconds since that clock's origin.
///
/// Only timestamps from the same clock are comparable. Arithmetic saturates instead of
/// overflowing or panicking, so a clock that misbehaves (or a fuzzer) cannot crash a state
/// machine; `u64` nanoseconds last 584 years.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The clock's origin.
    pub const ZERO: Self = Self(0);

    /// The timestamp `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + duration`, saturating at the far future.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration_nanos(duration)))
    }

    /// `self - duration`, saturating at the origin.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(duration_nanos(duration)))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Self;

    /// Saturating addition; see [`Timestamp::saturating_add`].
    fn add(self, rhs: Duration) -> Self {
        self.saturating_add(rhs)
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX`.
pub(crate) fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A source of monotonic time.
///
/// Implementations must never go backwards; the state machines tolerate it (all time arithmetic
/// saturates) but their decisions then lag. Implemented for references and `Arc`s so one clock can
/// be shared by many state machines.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The process's monotonic clock (`std::time::Instant`), for production use.
///
/// All `SystemClock`s share one origin (fixed the first time any of them is read), so their
/// timestamps are comparable with each other. Use [`SystemClock::instant`] to turn a deadline
/// such as [`OutlierDetector::next_deadline`](crate::resilience::OutlierDetector::next_deadline)
/// back into an `Instant` for a timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    fn origin() -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now)
    }

    /// The timestamp of `instant` on this clock, without reading the clock: a request that
    /// already took an `Instant` (for its deadline or its metrics) passes the same reading to
    /// the state machines instead of paying for another (one read costs 20-40 ns on VMs).
    /// Instants before the origin map to the origin.
    pub fn timestamp(instant: Instant) -> Timestamp {
        Timestamp::from_nanos(duration_nanos(
            instant.saturating_duration_since(Self::origin()),
        ))
    }

    /// The `Instant` a timestamp of this clock stands for (saturating at the far future).
    pub fn instant(timestamp: Timestamp) -> Instant {
        let origin = Self::origin();
        // A timestamp past what `Instant` can hold is "never"; a century ahead is as good.
        origin
            .checked_add(Duration::from_nanos(timestamp.as_nanos()))
            .or_else(|| origin.checked_add(Duration::from_secs(100 * 365 * 86_400)))
            .unwrap_or(origin)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(duration_nanos(Self::origin().elapsed()))
    }
}

/// A clock that moves only when told to, for deterministic tests and fuzzing.
///
/// Clones share the same time: hand one clone to the state machine and keep another to
/// [`advance`](Self::advance) it.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::clock::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new();
/// let seen_by_balancer = clock.clone();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(seen_by_balancer.now(), Timestamp::from_nanos(250_000_000));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading [`Timestamp::ZERO`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock reading `start`.
    pub fn starting_at(start: Timestamp) -> Self {
        let clock = Self::new();
        clock.set(start);
        clock
    }

    /// Moves time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
        // fetch_update cannot fail here: the closure always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the time. Moving it backwards is allowed, to test how state machines cope.
    pub fn set(&self, to: Timestamp) {
        self.nanos.store(to.as_nanos(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_arithmetic_saturates() {
        let t = Timestamp::from_nanos(10);
        assert_eq!(
            t.saturating_duration_since(Timestamp::from_nanos(20)),
            Duration::ZERO
        );
        assert_eq!(t.saturating_sub(Duration::from_secs(1)), Timestamp::ZERO);
        assert_eq!(
            (t + Duration::MAX).as_nanos(),
            u64::MAX,
            "adding Duration::MAX saturates"
        );
        assert_eq!(
            Timestamp::from_nanos(30).saturating_duration_since(t),
            Duration::from_nanos(20)
        );
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let clock = ManualClock::new();
        let other = clock.clone();
        assert_eq!(other.now(), Timestamp::ZERO);
        clock.advance(Duration::from_secs(2));
        assert_eq!(other.now(), Timestamp::from_nanos(2_000_000_000));
        other.set(Timestamp::from_nanos(5));
        assert_eq!(clock.now(), Timestamp::from_nanos(5));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now().as_nanos(), u64::MAX);
    }

    #[test]
    fn system_clock_is_monotonic_and_converts_back() {
        let clock = SystemClock;
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        let instant = SystemClock::instant(b);
        assert!(instant <= Instant::now());
        let _ = SystemClock::instant(Timestamp::from_nanos(u64::MAX));
    }

    #[test]
    fn system_clock_timestamps_of_instants_agree_with_readings() {
        let before = SystemClock.now();
        let instant = Instant::now();
        let after = SystemClock.now();
        let t = SystemClock::timestamp(instant);
        assert!(
            before <= t && t <= after,
            "{before:?} <= {t:?} <= {after:?}"
        );
        assert_eq!(SystemClock::timestamp(SystemClock::instant(t)), t);
    }

    #[test]
    fn clocks_work_through_references_and_arcs() {
        fn read(clock: impl Clock) -> Timestamp {
            clock.now()
        }
        let clock = ManualClock::starting_at(Timestamp::from_nanos(7));
        assert_eq!(read(&clock), Timestamp::from_nanos(7));
        let shared: Arc<dyn Clock + Send + Sync> = Arc::new(clock.clone());
        assert_eq!(read(shared), Timestamp::from_nanos(7));
    }
}

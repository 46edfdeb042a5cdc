//! A retry budget: retries are allowed as a fraction of recent requests, plus a small reserve.

use std::time::Duration;

use thiserror::Error;

use crate::clock::{Timestamp, duration_nanos};

/// Number of buckets the window is split into; the window slides one bucket at a time.
const BUCKETS: usize = 10;

/// Why a retry budget configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RetryBudgetConfigError {
    /// The budget is above 1000% (ten retries per request).
    #[error("retry budget_percent is {0}%; at most 1000% is allowed")]
    PercentTooLarge(u32),
    /// The window is outside 1 s to 60 s (Finagle's and Linkerd's bounds).
    #[error("retry budget window is {0:?}; it must be between 1s and 60s")]
    Window(Duration),
}

/// A retry was refused: the service has used up its retry budget.
///
/// The request should fail with its last error instead of retrying; this is what stops retries
/// from multiplying load during an outage.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "retry budget exhausted: {retries} retries for {requests} requests in the last {window:?} (allowed: {budget_percent}% of requests + {min_retries})"
)]
pub struct RetryBudgetExhausted {
    /// Original requests in the current window.
    pub requests: u64,
    /// Retries already made in the current window.
    pub retries: u64,
    /// The configured percentage.
    pub budget_percent: u32,
    /// The configured reserve.
    pub min_retries: u32,
    /// The window length.
    pub window: Duration,
}

/// How much retrying a [`RetryBudget`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudgetConfig {
    /// Retries allowed per 100 original requests (Envoy's `budget_percent`, default 20).
    pub budget_percent: u32,
    /// Retries always allowed per window, so that a quiet service can still retry (default 10;
    /// Finagle and Linkerd express this as `min_retries_per_second * ttl`).
    pub min_retries: u32,
    /// How long requests and retries count (Finagle's `ttl`, default 10 s).
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            budget_percent: 20,
            min_retries: 10,
            window: Duration::from_secs(10),
        }
    }
}

impl RetryBudgetConfig {
    /// Checks the percentage (at most 1000) and the window (1 s to 60 s).
    pub fn validate(&self) -> Result<(), RetryBudgetConfigError> {
        if self.budget_percent > 1000 {
            return Err(RetryBudgetConfigError::PercentTooLarge(self.budget_percent));
        }
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(60) {
            return Err(RetryBudgetConfigError::Window(self.window));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket-length period since the clock's origin these counts belong to.
    epoch: u64,
    requests: u64,
    retries: u64,
}

/// Limits retries to `budget_percent` of recent requests plus `min_retries`, per window.
///
/// Call [`record_request`](Self::record_request) for every original request and
/// [`try_retry`](Self::try_retry) before every retry. The guarantee: within any window, retries
/// granted never exceed `budget_percent / 100 * requests + min_retries`, so during an outage
/// total attempts stay below `(1 + budget) * requests + min_retries` instead of multiplying by
/// the per-request retry limit. The window slides in tenths; counts older than the window are
/// forgotten, so the budget recovers after the outage.
///
/// Envoy's `retry_budget` limits *concurrent* retries; the concurrency cap lives in the
/// [`CircuitBreaker`](super::CircuitBreaker)'s `max_retries`, and this budget bounds the total.
///
/// ```
/// use mesh_core::clock::Timestamp;
/// use mesh_core::resilience::{RetryBudget, RetryBudgetConfig};
///
/// let config = RetryBudgetConfig { budget_percent: 20, min_retries: 1, ..Default::default() };
/// let mut budget = RetryBudget::new(config)?;
/// let now = Timestamp::ZERO;
/// for _ in 0..10 {
///     budget.record_request(now);
/// }
/// // 20% of 10 requests + 1 = 3 retries.
/// assert!((0..3).all(|_| budget.try_retry(now).is_ok()));
/// assert!(budget.try_retry(now).is_err());
/// # Ok::<(), mesh_core::resilience::RetryBudgetConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    bucket_nanos: u64,
    buckets: [Bucket; BUCKETS],
    /// The latest time seen; earlier timestamps are treated as this one, so a clock stepping
    /// back can never forget retries already granted.
    latest: Timestamp,
    /// `latest`'s epoch, and the nanosecond at which the next one begins: most requests fall in
    /// the epoch of the one before, which this answers without a division.
    epoch: u64,
    epoch_end: u64,
}

impl RetryBudget {
    /// A budget with nothing recorded yet.
    pub fn new(config: RetryBudgetConfig) -> Result<Self, RetryBudgetConfigError> {
        config.validate()?;
        let bucket_nanos = (duration_nanos(config.window) / BUCKETS as u64).max(1);
        Ok(Self {
            config,
            bucket_nanos,
            buckets: [Bucket::default(); BUCKETS],
            latest: Timestamp::ZERO,
            epoch: 0,
            epoch_end: bucket_nanos,
        })
    }

    /// Counts an original request (not a retry).
    #[inline]
    pub fn record_request(&mut self, now: Timestamp) {
        let bucket = self.current(now);
        bucket.requests = bucket.requests.saturating_add(1);
    }

    /// Takes one retry from the budget, or says why not.
    pub fn try_retry(&mut self, now: Timestamp) -> Result<(), RetryBudgetExhausted> {
        let (requests, retries) = self.totals(now);
        if retries >= self.allowed(requests) {
            return Err(RetryBudgetExhausted {
                requests,
                retries,
                budget_percent: self.config.budget_percent,
                min_retries: self.config.min_retries,
                window: self.config.window,
            });
        }
        let bucket = self.current(now);
        bucket.retries = bucket.retries.saturating_add(1);
        Ok(())
    }

    /// How many retries would be granted right now.
    pub fn remaining(&mut self, now: Timestamp) -> u64 {
        let (requests, retries) = self.totals(now);
        self.allowed(requests).saturating_sub(retries)
    }

    /// Retries allowed for `requests` requests in a window.
    fn allowed(&self, requests: u64) -> u64 {
        let ratio = u128::from(requests) * u128::from(self.config.budget_percent) / 100;
        u64::try_from(ratio)
            .unwrap_or(u64::MAX)
            .saturating_add(u64::from(self.config.min_retries))
    }

    /// The epoch (bucket-length period) for `now`, never earlier than one already seen.
    #[inline]
    fn epoch(&mut self, now: Timestamp) -> u64 {
        if now > self.latest {
            self.latest = now;
            if now.as_nanos() >= self.epoch_end {
                self.epoch = now.as_nanos() / self.bucket_nanos;
                self.epoch_end = self
                    .epoch
                    .saturating_add(1)
                    .saturating_mul(self.bucket_nanos);
            }
        }
        self.epoch
    }

    /// Requests and retries in the buckets of the current window.
    fn totals(&mut self, now: Timestamp) -> (u64, u64) {
        let epoch = self.epoch(now);
        let live = |b: &&Bucket| b.epoch + (BUCKETS as u64) > epoch;
        self.buckets.iter().filter(live).fold((0, 0), |(q, r), b| {
            (q.saturating_add(b.requests), r.saturating_add(b.retries))
        })
    }

    /// The bucket for `now`, emptied first if it last held an older period.
    #[inline]
    fn current(&mut self, now: Timestamp) -> &mut Bucket {
        let epoch = self.epoch(now);
        let index = (epoch % BUCKETS as u64) as usize;
        let bucket = &mut self.buckets[index];
        if bucket.epoch != epoch {
            *bucket = Bucket {
                epoch,
                ..Bucket::default()
            };
        }
        bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(percent: u32, min: u32) -> RetryBudget {
        RetryBudget::new(RetryBudgetConfig {
            budget_percent: percent,
            min_retries: min,
            window: Duration::from_secs(10),
        })
        .unwrap()
    }

    fn at(secs: f64) -> Timestamp {
        Timestamp::from_nanos((secs * 1e9) as u64)
    }

    #[test]
    fn reserve_allows_retries_without_traffic() {
        let mut b = budget(20, 2);
        assert_eq!(b.remaining(at(0.0)), 2);
        assert!(b.try_retry(at(0.0)).is_ok());
        assert!(b.try_retry(at(0.5)).is_ok());
        let err = b.try_retry(at(1.0)).unwrap_err();
        assert_eq!((err.requests, err.retries), (0, 2));
        assert!(err.to_string().contains("20% of requests + 2"), "{err}");
    }

    #[test]
    fn ratio_of_requests() {
        let mut b = budget(50, 0);
        for _ in 0..7 {
            b.record_request(at(1.0));
        }
        // floor(7 * 50%) = 3.
        assert_eq!(b.remaining(at(1.0)), 3);
        for _ in 0..3 {
            b.try_retry(at(1.0)).unwrap();
        }
        assert!(b.try_retry(at(1.0)).is_err());
    }

    #[test]
    fn window_slides_and_budget_recovers() {
        let mut b = budget(0, 3);
        for _ in 0..3 {
            b.try_retry(at(0.0)).unwrap();
        }
        assert!(b.try_retry(at(9.9)).is_err(), "still inside the window");
        assert_eq!(b.remaining(at(10.0)), 3, "the first bucket expired");
        // Requests expire too.
        let mut b = budget(100, 0);
        b.record_request(at(0.0));
        assert_eq!(b.remaining(at(5.0)), 1);
        assert_eq!(b.remaining(at(10.5)), 0);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut b = budget(100, 0);
        b.record_request(at(50.0));
        // An earlier timestamp counts as the latest one seen.
        assert_eq!(b.remaining(at(1.0)), 1);
        b.try_retry(at(1.0)).unwrap();
        assert!(
            b.try_retry(at(50.0)).is_err(),
            "the retry was not forgotten"
        );
    }

    #[test]
    fn epochs_follow_time_across_bucket_edges() {
        let mut b = budget(100, 0);
        let bucket = 1_000_000_000u64;
        for nanos in [
            0,
            1,
            bucket - 1,
            bucket,
            bucket + 1,
            7 * bucket - 1,
            7 * bucket,
            u64::MAX,
        ] {
            let at = Timestamp::from_nanos(nanos);
            assert_eq!(b.epoch(at), nanos / bucket, "{nanos}");
            // Earlier times stay in the latest epoch.
            assert_eq!(b.epoch(Timestamp::ZERO), nanos / bucket);
        }
        // Ten requests spread over 9.99 s all count; a bucket later the first has expired.
        let mut b = budget(100, 0);
        for i in 0..10 {
            b.record_request(Timestamp::from_nanos(i * bucket + bucket - 1));
        }
        assert_eq!(b.remaining(Timestamp::from_nanos(10 * bucket - 1)), 10);
        assert_eq!(b.remaining(Timestamp::from_nanos(10 * bucket)), 9);
    }

    #[test]
    fn config_validation() {
        let bad = RetryBudgetConfig {
            budget_percent: 1001,
            ..RetryBudgetConfig::default()
        };
        assert_eq!(
            RetryBudget::new(bad).unwrap_err(),
            RetryBudgetConfigError::PercentTooLarge(1001)
        );
        for window in [Duration::from_millis(999), Duration::from_secs(61)] {
            let bad = RetryBudgetConfig {
                window,
                ..RetryBudgetConfig::default()
            };
            assert!(matches!(
                bad.validate(),
                Err(RetryBudgetConfigError::Window(_))
            ));
        }
    }
}

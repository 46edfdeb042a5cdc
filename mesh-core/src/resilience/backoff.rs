//! Exponential backoff with full jitter between retry attempts.

use std::time::Duration;

use thiserror::Error;

use crate::{clock::duration_nanos, rng::Rng};

/// Why a backoff configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BackoffConfigError {
    /// The base interval is zero, so every delay would be zero.
    #[error("retry backoff base interval must be greater than zero")]
    ZeroBase,
    /// The maximum is below the base.
    #[error("retry backoff max interval ({max:?}) must be at least the base interval ({base:?})")]
    MaxBelowBase {
        /// The configured base.
        base: Duration,
        /// The configured maximum.
        max: Duration,
    },
}

/// Base and cap of the exponential backoff (Envoy's `retry_back_off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The ceiling of the first delay (Envoy: 25 ms).
    pub base: Duration,
    /// No delay exceeds this (Envoy: 10 x base).
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        }
    }
}

impl BackoffConfig {
    /// Checks `0 < base <= max`.
    pub fn validate(&self) -> Result<(), BackoffConfigError> {
        if self.base.is_zero() {
            return Err(BackoffConfigError::ZeroBase);
        }
        if self.max < self.base {
            return Err(BackoffConfigError::MaxBelowBase {
                base: self.base,
                max: self.max,
            });
        }
        Ok(())
    }

    /// The ceiling for retry number `attempt` (0-based): `min(max, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let base = u128::from(duration_nanos(self.base));
        let max = u128::from(duration_nanos(self.max));
        let grown = base.checked_shl(attempt.min(64)).unwrap_or(u128::MAX);
        Duration::from_nanos(u64::try_from(grown.min(max)).unwrap_or(u64::MAX))
    }
}

/// Delays between retries of one request: exponential growth with "full jitter".
///
/// Delay `n` (from 0) is uniform in `[0, min(max, base * 2^n)]`, as in AWS's analysis of jitter
/// strategies: full jitter spreads a burst of clients that failed together, so their retries do
/// not arrive together. The randomness is injected, so a seeded [`Rng`] makes delays exact in
/// tests. Create one per request (or [`reset`](Self::reset) it); it is also an endless
/// `Iterator` of delays.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::resilience::{Backoff, BackoffConfig};
/// use mesh_core::rng::SplitMix64;
///
/// let config = BackoffConfig { base: Duration::from_millis(10), max: Duration::from_millis(80) };
/// let mut backoff = Backoff::new(config, SplitMix64::new(1))?;
/// for attempt in 0..6 {
///     let delay = backoff.next_delay();
///     assert!(delay <= config.ceiling(attempt));
///     assert!(delay <= Duration::from_millis(80));
/// }
/// # Ok::<(), mesh_core::resilience::BackoffConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Backoff<R> {
    config: BackoffConfig,
    rng: R,
    attempt: u32,
}

impl<R: Rng> Backoff<R> {
    /// A backoff starting at the first attempt.
    pub fn new(config: BackoffConfig, rng: R) -> Result<Self, BackoffConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            rng,
            attempt: 0,
        })
    }

    /// The delay before the next retry; advances to the following attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = duration_nanos(self.config.ceiling(self.attempt));
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_nanos(self.rng.below(ceiling.saturating_add(1)))
    }

    /// How many delays have been handed out.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts again from the first attempt (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl<R: Rng> Iterator for Backoff<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn config(base_ms: u64, max_ms: u64) -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn ceilings_double_then_cap() {
        let c = config(10, 100);
        let ceilings: Vec<u64> = (0..6).map(|n| c.ceiling(n).as_millis() as u64).collect();
        assert_eq!(ceilings, [10, 20, 40, 80, 100, 100]);
        assert_eq!(c.ceiling(u32::MAX), Duration::from_millis(100));
        let huge = BackoffConfig {
            base: Duration::from_secs(1),
            max: Duration::MAX,
        };
        assert_eq!(huge.ceiling(200).as_nanos(), u128::from(u64::MAX));
    }

    #[test]
    fn delays_are_jittered_within_ceilings_and_reproducible() {
        let c = config(10, 100);
        let a: Vec<Duration> = Backoff::new(c, SplitMix64::new(3))
            .unwrap()
            .take(8)
            .collect();
        let b: Vec<Duration> = Backoff::new(c, SplitMix64::new(3))
            .unwrap()
            .take(8)
            .collect();
        assert_eq!(a, b);
        for (n, d) in a.iter().enumerate() {
            assert!(*d <= c.ceiling(n as u32), "{n}: {d:?}");
        }
        // Full jitter: the first delay is spread over the whole [0, base] range.
        let firsts: Vec<Duration> = (0..200)
            .map(|seed| Backoff::new(c, SplitMix64::new(seed)).unwrap().next_delay())
            .collect();
        assert!(firsts.iter().any(|d| *d < Duration::from_millis(2)));
        assert!(firsts.iter().any(|d| *d > Duration::from_millis(8)));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(config(1, 1000), SplitMix64::new(0)).unwrap();
        for _ in 0..5 {
            b.next_delay();
        }
        assert_eq!(b.attempt(), 5);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay() <= Duration::from_millis(1));
    }

    #[test]
    fn invalid_configs_are_refused() {
        assert_eq!(
            Backoff::new(config(0, 10), SplitMix64::new(0)).unwrap_err(),
            BackoffConfigError::ZeroBase
        );
        assert!(matches!(
            BackoffConfig::validate(&config(10, 5)),
            Err(BackoffConfigError::MaxBelowBase { .. })
        ));
        assert!(BackoffConfig::default().validate().is_ok());
    }
}

//! One token bucket: the state machine, with exact integer arithmetic and time as an input.

use std::{fmt, time::Duration};

use mesh_core::clock::Timestamp;

/// The shape of a bucket, in Envoy's `local_ratelimit` terms: it holds at most `max_tokens`
/// (the burst) and gains `tokens_per_fill` every `fill_interval`.
///
/// Refill is continuous at `tokens_per_fill / fill_interval` (as Envoy's atomic token bucket
/// does) rather than in steps, so over any window of length `t` a bucket admits at most
/// `max_tokens + rate * t` requests — the bound the proptests check — and a caller told to
/// retry after `d` finds a token then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BucketParams {
    max_tokens: u32,
    tokens_per_fill: u32,
    fill_interval: Duration,
}

/// Why a [`BucketParams`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BucketParamsError {
    /// `max_tokens` was 0: such a bucket never admits anything.
    #[error("max_tokens must be at least 1 (a bucket of 0 tokens admits nothing)")]
    ZeroMaxTokens,
    /// `tokens_per_fill` was 0: such a bucket never refills.
    #[error("tokens_per_fill must be at least 1 (a bucket filled with 0 tokens never refills)")]
    ZeroTokensPerFill,
    /// `fill_interval` was zero or longer than [`BucketParams::MAX_FILL_INTERVAL`].
    #[error("fill_interval must be between 1ms and 24h, got {0:?}")]
    FillInterval(Duration),
}

impl BucketParams {
    /// The longest `fill_interval` accepted: one day.
    pub const MAX_FILL_INTERVAL: Duration = Duration::from_secs(86_400);
    /// The shortest `fill_interval` accepted: one millisecond.
    pub const MIN_FILL_INTERVAL: Duration = Duration::from_millis(1);

    /// A bucket of `max_tokens` gaining `tokens_per_fill` every `fill_interval`.
    pub fn new(
        max_tokens: u32,
        tokens_per_fill: u32,
        fill_interval: Duration,
    ) -> Result<Self, BucketParamsError> {
        if max_tokens == 0 {
            return Err(BucketParamsError::ZeroMaxTokens);
        }
        if tokens_per_fill == 0 {
            return Err(BucketParamsError::ZeroTokensPerFill);
        }
        if !(Self::MIN_FILL_INTERVAL..=Self::MAX_FILL_INTERVAL).contains(&fill_interval) {
            return Err(BucketParamsError::FillInterval(fill_interval));
        }
        Ok(Self {
            max_tokens,
            tokens_per_fill,
            fill_interval,
        })
    }

    /// The burst: tokens in a full bucket.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Tokens added per `fill_interval`.
    pub fn tokens_per_fill(&self) -> u32 {
        self.tokens_per_fill
    }

    /// The refill period.
    pub fn fill_interval(&self) -> Duration {
        self.fill_interval
    }

    /// The refill interval in nanoseconds (at most a day's worth, so it fits easily).
    fn fill_nanos(&self) -> u128 {
        self.fill_interval.as_nanos()
    }

    /// A full bucket, in the scaled units [`TokenBucket`] counts in.
    fn capacity(&self) -> u128 {
        u128::from(self.max_tokens) * self.fill_nanos()
    }

    /// Nanoseconds until `deficit` scaled units have been refilled (rounded up).
    fn nanos_to_refill(&self, deficit: u128) -> Duration {
        let nanos = deficit.div_ceil(u128::from(self.tokens_per_fill));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for BucketParams {
    /// `10 tokens, +5 every 1s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tokens, +{} every {:?}",
            self.max_tokens, self.tokens_per_fill, self.fill_interval
        )
    }
}

/// A token bucket's state. It knows no clock: every call takes `now`.
///
/// Tokens are counted in units of `1 / fill_interval_nanos` of a token, so continuous refill
/// (`elapsed_nanos * tokens_per_fill` units) is exact integer arithmetic: no rounding can let
/// an extra request through, however the calls are spaced. Time going backwards refills
/// nothing (and never removes tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens held, scaled by `fill_interval` in nanoseconds.
    level: u128,
    /// When `level` was last brought up to date.
    updated: Timestamp,
}

/// The state of a bucket after a check, for rate-limit headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketStatus {
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset_after: Duration,
    /// Time until the next token, when none is left (zero otherwise).
    pub retry_after: Duration,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(params: &BucketParams, now: Timestamp) -> Self {
        Self {
            level: params.capacity(),
            updated: now,
        }
    }

    /// Brings the level up to `now`.
    pub fn refill(&mut self, params: &BucketParams, now: Timestamp) {
        if now <= self.updated {
            return;
        }
        let elapsed = u128::from(now.as_nanos() - self.updated.as_nanos());
        let added = elapsed.saturating_mul(u128::from(params.tokens_per_fill));
        self.level = self.level.saturating_add(added).min(params.capacity());
        self.updated = now;
    }

    /// Whether a whole token is available (after [`refill`](Self::refill)).
    pub fn has_token(&self, params: &BucketParams) -> bool {
        self.level >= params.fill_nanos()
    }

    /// Takes one token if there is one; returns whether it did.
    pub fn take(&mut self, params: &BucketParams) -> bool {
        if self.has_token(params) {
            self.level -= params.fill_nanos();
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full (after [`refill`](Self::refill)): such a bucket can be
    /// forgotten and recreated later without changing any decision.
    pub fn is_full(&self, params: &BucketParams) -> bool {
        self.level >= params.capacity()
    }

    /// Refills to `now`, then takes a token if there is one. Returns whether it did and the
    /// status after.
    pub fn check(&mut self, params: &BucketParams, now: Timestamp) -> (bool, BucketStatus) {
        self.refill(params, now);
        let taken = self.take(params);
        (taken, self.status(params))
    }

    /// Tokens left, time to full and time to the next token, as of the last update.
    pub fn status(&self, params: &BucketParams) -> BucketStatus {
        let fill = params.fill_nanos();
        let remaining = u64::try_from(self.level / fill).unwrap_or(u64::MAX);
        let retry_after = if self.level >= fill {
            Duration::ZERO
        } else {
            params.nanos_to_refill(fill - self.level)
        };
        BucketStatus {
            remaining,
            reset_after: params.nanos_to_refill(params.capacity().saturating_sub(self.level)),
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mesh_core::clock::Timestamp;

    use super::{BucketParams, BucketParamsError, TokenBucket};

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn params_are_validated() {
        let s = Duration::from_secs(1);
        assert_eq!(
            BucketParams::new(0, 1, s),
            Err(BucketParamsError::ZeroMaxTokens)
        );
        assert_eq!(
            BucketParams::new(1, 0, s),
            Err(BucketParamsError::ZeroTokensPerFill)
        );
        assert!(BucketParams::new(1, 1, Duration::ZERO).is_err());
        assert!(BucketParams::new(1, 1, Duration::from_secs(86_401)).is_err());
        let p = BucketParams::new(u32::MAX, u32::MAX, BucketParams::MAX_FILL_INTERVAL).unwrap();
        // Extremes do not overflow.
        let mut b = TokenBucket::full(&p, Timestamp::ZERO);
        b.refill(&p, Timestamp::from_nanos(u64::MAX));
        assert!(b.is_full(&p));
        assert_eq!(b.status(&p).remaining, u64::from(u32::MAX));
        assert_eq!(p.to_string(), "4294967295 tokens, +4294967295 every 86400s");
    }

    #[test]
    fn burst_then_continuous_refill() {
        // 3 tokens, +1 every 100ms.
        let p = BucketParams::new(3, 1, Duration::from_millis(100)).unwrap();
        let mut b = TokenBucket::full(&p, at(0));
        for left in [2, 1, 0] {
            let (ok, status) = b.check(&p, at(0));
            assert!(ok);
            assert_eq!(status.remaining, left);
        }
        let (ok, status) = b.check(&p, at(0));
        assert!(!ok);
        assert_eq!(status.retry_after, Duration::from_millis(100));
        assert_eq!(status.reset_after, Duration::from_millis(300));
        // Half a token later: still none, 50ms to go.
        let (ok, status) = b.check(&p, at(50));
        assert!(!ok);
        assert_eq!(status.retry_after, Duration::from_millis(50));
        assert!(b.check(&p, at(100)).0);
        assert!(!b.check(&p, at(100)).0);
        // Long idle: capped at the burst.
        b.refill(&p, at(10_000));
        assert!(b.is_full(&p));
        assert_eq!(b.status(&p).remaining, 3);
    }

    #[test]
    fn fractional_rates_are_exact() {
        // 2 tokens every 3ms: one every 1.5ms.
        let p = BucketParams::new(1, 2, Duration::from_millis(3)).unwrap();
        let mut b = TokenBucket::full(&p, Timestamp::ZERO);
        assert!(b.check(&p, Timestamp::ZERO).0);
        let (ok, status) = b.check(&p, Timestamp::from_nanos(1_499_999));
        assert!(!ok);
        assert_eq!(status.retry_after, Duration::from_nanos(1));
        assert!(b.check(&p, Timestamp::from_nanos(1_500_000)).0);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let p = BucketParams::new(1, 1, Duration::from_secs(1)).unwrap();
        let mut b = TokenBucket::full(&p, at(5_000));
        assert!(b.check(&p, at(5_000)).0);
        assert!(!b.check(&p, at(1_000)).0);
        assert!(!b.check(&p, at(5_999)).0);
        assert!(b.check(&p, at(6_000)).0);
    }
}

//! Why a global rate-limit check could not be answered by Redis.

use std::time::Duration;

use thiserror::Error;

/// A global limiter could not be built, or Redis could not answer a check.
///
/// Check failures do not reach the request path as errors:
/// [`RateLimiter::check`](mesh_policy::ratelimit::RateLimiter::check) applies the configured
/// failure mode and puts the error in the decision's `backend_failure` (downcast it to this
/// type), and the limiter's [`GlobalLimiterStats`](super::GlobalLimiterStats) counts it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GlobalRateLimitError {
    /// The settings are unusable (bad URL, zero timeout, ...).
    #[error("invalid global rate-limit settings: {0}")]
    Settings(String),
    /// Redis did not answer within the per-call timeout.
    #[error(
        "redis did not answer within {0:?}; the server is down, overloaded or unreachable \
         (raise the timeout only if it is merely slow)"
    )]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A recent check failed, and Redis is not asked again until the backoff ends.
    #[error("redis failed {ago:?} ago and is not retried for {backoff:?} after a failure")]
    Backoff {
        /// Time since the failure.
        ago: Duration,
        /// The configured backoff.
        backoff: Duration,
    },
    /// The script answered something this client does not understand (another program
    /// writing the same keys, or a version mismatch).
    #[error("unexpected reply from the rate-limit script: {0}")]
    BadReply(String),
}

impl GlobalRateLimitError {
    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

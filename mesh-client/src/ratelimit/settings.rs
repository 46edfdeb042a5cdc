//! How a global limiter reaches Redis and what it does when Redis cannot answer.

use std::time::Duration;

use mesh_policy::ratelimit::FailureMode;

use super::GlobalRateLimitError;

/// Where the shared counters live and how failures are handled.
///
/// ```
/// use std::time::Duration;
/// use mesh_client::ratelimit::RedisLimiterSettings;
/// use mesh_policy::ratelimit::FailureMode;
///
/// let settings = RedisLimiterSettings::new("redis://127.0.0.1:6379/0")
///     .with_timeout(Duration::from_millis(20))
///     .with_failure_mode(FailureMode::FailClosed);
/// assert_eq!(settings.key_prefix, "mesh:rl:");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLimiterSettings {
    /// The server, as a redis-rs URL: `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Prepended to every counter name, so several meshes or environments can share a
    /// server. Default `mesh:rl:`.
    pub key_prefix: String,
    /// The most a check may wait for Redis, connecting included. Default 50ms (Envoy's
    /// ratelimit filter defaults to 20ms, which assumes a server next door).
    pub timeout: Duration,
    /// What a check answers when Redis cannot: fail-open by default, as Envoy.
    pub failure_mode: FailureMode,
    /// After a failure, checks answer with the failure mode at once, without asking Redis,
    /// for this long, so an outage costs no latency. Default 1s; zero asks every time.
    pub backoff: Duration,
}

impl RedisLimiterSettings {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "mesh:rl:".to_owned(),
            timeout: Duration::from_millis(50),
            failure_mode: FailureMode::FailOpen,
            backoff: Duration::from_secs(1),
        }
    }

    /// Sets the per-check timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the failure mode.
    #[must_use]
    pub fn with_failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// Sets the counter name prefix.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the backoff after a failure.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Refuses settings that cannot work.
    pub(crate) fn validate(&self) -> Result<(), GlobalRateLimitError> {
        let bad = |m: String| Err(GlobalRateLimitError::Settings(m));
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return bad(format!(
                "timeout must be between 1ns and 60s, got {:?}",
                self.timeout
            ));
        }
        if self.backoff > Duration::from_secs(600) {
            return bad(format!(
                "backoff must be at most 10m, got {:?}",
                self.backoff
            ));
        }
        if self.key_prefix.len() > 256 {
            return bad("key_prefix must be at most 256 bytes".to_owned());
        }
        Ok(())
    }
}

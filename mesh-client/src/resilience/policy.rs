//! What a request may do when things go wrong.

use std::time::Duration;

use mesh_core::resilience::{BackoffConfig, Limits, RetryBudgetConfig};

/// Conditions that make an attempt worth retrying (Envoy's `retry_on`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryOn {
    /// The connection or tunnel could not be established (the request never left).
    pub connect_failure: bool,
    /// The upstream refused the stream before processing it (HTTP/2 REFUSED_STREAM).
    pub refused_stream: bool,
    /// The connection was reset or timed out after the request was sent.
    pub reset: bool,
    /// Any 5xx answer (includes `gateway_error`).
    pub server_5xx: bool,
    /// 502, 503 and 504.
    pub gateway_error: bool,
    /// These exact statuses (Envoy's `retriable-status-codes`).
    pub statuses: Vec<u16>,
}

impl Default for RetryOn {
    /// Istio's default: `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
    /// with 503 as the retriable status.
    fn default() -> Self {
        Self {
            connect_failure: true,
            refused_stream: true,
            reset: false,
            server_5xx: false,
            gateway_error: false,
            statuses: vec![503],
        }
    }
}

impl RetryOn {
    /// Whether an answer with `status` should be retried.
    pub fn status(&self, status: u16) -> bool {
        (self.server_5xx && (500..600).contains(&status))
            || (self.gateway_error && matches!(status, 502..=504))
            || self.statuses.contains(&status)
    }
}

/// Timeouts, retries and limits for the requests to one service.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpPolicy {
    /// Limit for the whole request including retries (Istio `timeout`). `None`: no limit.
    pub timeout: Option<Duration>,
    /// Limit for each attempt (Istio `retries.perTryTimeout`).
    pub per_try_timeout: Option<Duration>,
    /// Retries after the first attempt (Istio `retries.attempts`, default 2).
    pub retries: u32,
    /// When to retry.
    pub retry_on: RetryOn,
    /// Also retry requests that are not idempotent (POST, PATCH) after they were sent. Off by
    /// default: a retried POST may apply twice. Failures before sending are always retryable.
    pub retry_non_idempotent: bool,
    /// Delay between attempts.
    pub backoff: BackoffConfig,
    /// Retries allowed relative to requests, so an outage cannot multiply load.
    pub budget: RetryBudgetConfig,
    /// Circuit-breaker limits (Istio `connectionPool`).
    pub limits: Limits,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            timeout: None,
            per_try_timeout: None,
            retries: 2,
            retry_on: RetryOn::default(),
            retry_non_idempotent: false,
            backoff: BackoffConfig::default(),
            budget: RetryBudgetConfig::default(),
            limits: Limits::default(),
        }
    }
}

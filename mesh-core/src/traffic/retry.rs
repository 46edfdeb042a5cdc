//! Retry policy: Istio's `HTTPRetry`, and Envoy's `retryOn` vocabulary with its meaning.

use std::{fmt, time::Duration};

use thiserror::Error;

/// Why a `retryOn` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{token:?} is not a retryOn condition; use a comma-separated list (no spaces) of 5xx, gateway-error, reset, reset-before-request, connect-failure, retriable-4xx, refused-stream, retriable-status-codes, envoy-ratelimited, http3-post-connect-failure, the gRPC conditions cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, or HTTP status codes such as 503"
)]
pub struct RetryOnError {
    /// The entry that is not understood.
    pub token: String,
}

/// The gRPC status codes Envoy can retry on (`x-envoy-retry-grpc-on`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcRetryOn {
    /// `cancelled` (code 1).
    pub cancelled: bool,
    /// `deadline-exceeded` (code 4).
    pub deadline_exceeded: bool,
    /// `resource-exhausted` (code 8).
    pub resource_exhausted: bool,
    /// `internal` (code 13).
    pub internal: bool,
    /// `unavailable` (code 14).
    pub unavailable: bool,
}

impl GrpcRetryOn {
    /// The retryable codes, as numbers.
    pub fn codes(&self) -> Vec<u32> {
        [
            (self.cancelled, 1),
            (self.deadline_exceeded, 4),
            (self.resource_exhausted, 8),
            (self.internal, 13),
            (self.unavailable, 14),
        ]
        .into_iter()
        .filter_map(|(on, code)| on.then_some(code))
        .collect()
    }
}

/// How an attempt failed without a response, for [`RetryConditions::retries_failure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptFailure {
    /// The connection (or tunnel) to the endpoint could not be established.
    ConnectFailure,
    /// The stream was reset before the request headers were sent.
    ResetBeforeRequest,
    /// The upstream refused the stream (HTTP/2 REFUSED_STREAM): it did not process it.
    RefusedStream,
    /// The stream or connection was reset after the request was sent.
    Reset,
    /// The per-try timeout expired.
    PerTryTimeout,
}

/// When to retry: Envoy's `retryOn` conditions as Istio's `retries.retryOn` lists them.
///
/// The meaning follows Envoy's router: `5xx` and `gateway-error` also cover failures without a
/// response (connect failures, resets, per-try timeouts, which Envoy counts as 503/504);
/// `retriable-4xx` is 409; listed status codes are retried whatever else is listed.
///
/// ```
/// use mesh_core::traffic::{AttemptFailure, RetryConditions};
///
/// let on: RetryConditions = "gateway-error,connect-failure,unavailable,409".parse()?;
/// assert!(on.retries_status(503) && on.retries_status(409) && !on.retries_status(500));
/// assert!(on.retries_grpc(14));
/// assert!(on.retries_failure(AttemptFailure::Reset)); // gateway-error covers resets
/// assert_eq!(on.to_string(), "gateway-error,connect-failure,unavailable,409");
/// # Ok::<(), mesh_core::traffic::RetryOnError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConditions {
    /// `5xx`: any 5xx response, and any failure without a response.
    pub server_5xx: bool,
    /// `gateway-error`: 502, 503, 504, and any failure without a response.
    pub gateway_error: bool,
    /// `reset`: the upstream reset or timed out without responding.
    pub reset: bool,
    /// `reset-before-request`: reset before the request headers were sent (safe for any method).
    pub reset_before_request: bool,
    /// `connect-failure`: the connection could not be established.
    pub connect_failure: bool,
    /// `retriable-4xx`: 409 Conflict.
    pub retriable_4xx: bool,
    /// `refused-stream`: HTTP/2 REFUSED_STREAM.
    pub refused_stream: bool,
    /// `envoy-ratelimited`: a 429 carrying `x-envoy-ratelimited` (an Envoy rate limit upstream).
    pub envoy_ratelimited: bool,
    /// `http3-post-connect-failure`: never applies here (the mesh does not speak HTTP/3).
    pub http3_post_connect_failure: bool,
    /// `retriable-status-codes` was written (the listed codes are retried with or without it).
    pub retriable_status_codes: bool,
    /// Status codes written as numbers (`503`).
    pub status_codes: Vec<u16>,
    /// gRPC status codes.
    pub grpc: GrpcRetryOn,
}

impl RetryConditions {
    /// What Istio retries when a route does not say (`connect-failure,refused-stream,unavailable,
    /// cancelled,retriable-status-codes` with 503).
    pub fn istio_default() -> Self {
        Self {
            connect_failure: true,
            refused_stream: true,
            retriable_status_codes: true,
            status_codes: vec![503],
            grpc: GrpcRetryOn {
                unavailable: true,
                cancelled: true,
                ..GrpcRetryOn::default()
            },
            ..Self::default()
        }
    }

    /// Whether a response with HTTP `status` should be retried.
    pub fn retries_status(&self, status: u16) -> bool {
        (self.server_5xx && (500..600).contains(&status))
            || (self.gateway_error && matches!(status, 502..=504))
            || (self.retriable_4xx && status == 409)
            || self.status_codes.contains(&status)
    }

    /// Whether a response carrying gRPC status `code` (in `grpc-status`) should be retried.
    pub fn retries_grpc(&self, code: u32) -> bool {
        self.grpc.codes().contains(&code)
    }

    /// Whether a 429 marked by an Envoy rate limiter (`x-envoy-ratelimited`) should be retried.
    pub fn retries_envoy_ratelimited(&self) -> bool {
        self.envoy_ratelimited
    }

    /// Whether an attempt that failed without a response should be retried.
    pub fn retries_failure(&self, failure: AttemptFailure) -> bool {
        let any = self.server_5xx || self.gateway_error || self.reset;
        match failure {
            AttemptFailure::ConnectFailure => {
                any || self.connect_failure || self.reset_before_request
            }
            AttemptFailure::ResetBeforeRequest => any || self.reset_before_request,
            AttemptFailure::RefusedStream => any || self.refused_stream,
            AttemptFailure::Reset | AttemptFailure::PerTryTimeout => any,
        }
    }

    fn tokens(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            (self.server_5xx, "5xx"),
            (self.gateway_error, "gateway-error"),
            (self.reset, "reset"),
            (self.reset_before_request, "reset-before-request"),
            (self.connect_failure, "connect-failure"),
            (self.retriable_4xx, "retriable-4xx"),
            (self.refused_stream, "refused-stream"),
            (self.envoy_ratelimited, "envoy-ratelimited"),
            (
                self.http3_post_connect_failure,
                "http3-post-connect-failure",
            ),
            (self.grpc.cancelled, "cancelled"),
            (self.grpc.deadline_exceeded, "deadline-exceeded"),
            (self.grpc.internal, "internal"),
            (self.grpc.resource_exhausted, "resource-exhausted"),
            (self.grpc.unavailable, "unavailable"),
            (self.retriable_status_codes, "retriable-status-codes"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, token)| token.to_owned())
        .collect();
        out.extend(self.status_codes.iter().map(u16::to_string));
        out
    }
}

impl std::str::FromStr for RetryConditions {
    type Err = RetryOnError;

    /// Parses Istio's `retryOn` as istiod validates it: comma-separated, no spaces, each entry
    /// a known condition or an HTTP status code (100-599).
    fn from_str(text: &str) -> Result<Self, RetryOnError> {
        let mut c = Self::default();
        for token in text.split(',') {
            let flag = match token {
                "5xx" => &mut c.server_5xx,
                "gateway-error" => &mut c.gateway_error,
                "reset" => &mut c.reset,
                "reset-before-request" => &mut c.reset_before_request,
                "connect-failure" => &mut c.connect_failure,
                "retriable-4xx" => &mut c.retriable_4xx,
                "refused-stream" => &mut c.refused_stream,
                "retriable-status-codes" => &mut c.retriable_status_codes,
                "envoy-ratelimited" => &mut c.envoy_ratelimited,
                "http3-post-connect-failure" => &mut c.http3_post_connect_failure,
                "cancelled" => &mut c.grpc.cancelled,
                "deadline-exceeded" => &mut c.grpc.deadline_exceeded,
                "internal" => &mut c.grpc.internal,
                "resource-exhausted" => &mut c.grpc.resource_exhausted,
                "unavailable" => &mut c.grpc.unavailable,
                _ => {
                    let code = token
                        .parse::<u16>()
                        .ok()
                        .filter(|c| {
                            (100..600).contains(c) && token.bytes().all(|b| b.is_ascii_digit())
                        })
                        .ok_or_else(|| RetryOnError {
                            token: token.to_owned(),
                        })?;
                    if !c.status_codes.contains(&code) {
                        c.status_codes.push(code);
                    }
                    continue;
                }
            };
            *flag = true;
        }
        Ok(c)
    }
}

impl fmt::Display for RetryConditions {
    /// The `retryOn` form (`connect-failure,refused-stream,503`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tokens().join(","))
    }
}

/// A route's retry policy (Istio `HTTPRetry`); [`Default`] is what Istio applies to routes
/// that do not set one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (Istio `attempts`; 0 disables retries).
    pub attempts: u32,
    /// Limit for each attempt (`perTryTimeout`); `None`: only the route timeout applies.
    pub per_try_timeout: Option<Duration>,
    /// When to retry (`retryOn`).
    pub retry_on: RetryConditions,
    /// `retryRemoteLocalities`: later attempts avoid the priority levels earlier attempts went
    /// to while other levels have healthy endpoints (Envoy's `previous_priorities`, update
    /// frequency 2: [`PreviousPriorities::istio`](crate::balance::PreviousPriorities::istio)).
    /// Without it retries stay in the levels the balancer's shares give.
    pub retry_remote_localities: bool,
    /// Base interval of the exponential backoff between attempts (`backoff`; Envoy: 25 ms,
    /// capped at 10x the base).
    pub backoff: Option<Duration>,
}

impl Default for RetryPolicy {
    /// Istio's default: 2 retries on [`RetryConditions::istio_default`], no per-try timeout.
    fn default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            retry_on: RetryConditions::istio_default(),
            retry_remote_localities: false,
            backoff: None,
        }
    }
}

impl RetryPolicy {
    /// No retries at all (Istio `attempts: 0`).
    pub fn disabled() -> Self {
        Self {
            attempts: 0,
            retry_on: RetryConditions::default(),
            ..Self::default()
        }
    }

    /// A policy with `attempts` retries on `retry_on`, otherwise Istio's defaults.
    pub fn new(attempts: u32, retry_on: RetryConditions) -> Self {
        Self {
            attempts,
            retry_on,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_condition() {
        let all = "5xx,gateway-error,reset,reset-before-request,connect-failure,retriable-4xx,\
                   refused-stream,envoy-ratelimited,http3-post-connect-failure,cancelled,\
                   deadline-exceeded,internal,resource-exhausted,unavailable,\
                   retriable-status-codes,503,429";
        let c: RetryConditions = all.parse().unwrap();
        assert_eq!(c.to_string(), all);
        assert_eq!(c.grpc.codes(), [1, 4, 8, 13, 14]);
    }

    #[test]
    fn refuses_unknown_entries() {
        for bad in [
            "",
            "5xx,",
            " 5xx",
            "5xx, reset",
            "server-error",
            "99",
            "600",
            "+503",
            "5XX",
        ] {
            let err = bad.parse::<RetryConditions>().unwrap_err();
            assert!(err.to_string().contains("retryOn"), "{bad}: {err}");
        }
    }

    #[test]
    fn envoy_semantics() {
        let c: RetryConditions = "5xx".parse().unwrap();
        assert!(c.retries_status(500) && c.retries_status(599) && !c.retries_status(499));
        for f in [
            AttemptFailure::ConnectFailure,
            AttemptFailure::RefusedStream,
            AttemptFailure::Reset,
            AttemptFailure::PerTryTimeout,
        ] {
            assert!(c.retries_failure(f), "{f:?}");
        }
        let c: RetryConditions = "connect-failure".parse().unwrap();
        assert!(c.retries_failure(AttemptFailure::ConnectFailure));
        assert!(!c.retries_failure(AttemptFailure::Reset));
        assert!(!c.retries_failure(AttemptFailure::RefusedStream));
        let c: RetryConditions = "reset-before-request,retriable-4xx".parse().unwrap();
        assert!(c.retries_failure(AttemptFailure::ResetBeforeRequest));
        assert!(c.retries_failure(AttemptFailure::ConnectFailure));
        assert!(!c.retries_failure(AttemptFailure::PerTryTimeout));
        assert!(c.retries_status(409) && !c.retries_status(404));
    }

    #[test]
    fn istio_default_policy() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempts, 2);
        assert_eq!(
            p.retry_on.to_string(),
            "connect-failure,refused-stream,cancelled,unavailable,retriable-status-codes,503"
        );
        assert!(p.retry_on.retries_status(503) && !p.retry_on.retries_status(502));
        assert!(p.retry_on.retries_grpc(14) && !p.retry_on.retries_grpc(13));
        assert_eq!(RetryPolicy::disabled().attempts, 0);
    }
}

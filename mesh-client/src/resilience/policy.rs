//! What a request may do when things go wrong.

use std::time::Duration;

use http::{HeaderMap, HeaderName};
use mesh_core::{
    resilience::{BackoffConfig, Limits, RetryBudgetConfig},
    traffic::{AttemptFailure, EffectiveTrafficPolicy, RetryConditions},
};

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
    /// gRPC status codes (in `grpc-status`) worth retrying: 1 cancelled, 4 deadline exceeded,
    /// 8 resource exhausted, 13 internal, 14 unavailable (Envoy's `x-envoy-retry-grpc-on`).
    pub grpc_codes: Vec<u32>,
    /// A 429 marked `x-envoy-ratelimited` by an Envoy rate limiter upstream.
    pub envoy_ratelimited: bool,
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
            grpc_codes: vec![1, 14],
            envoy_ratelimited: false,
        }
    }
}

/// Header names known at compile time: looking one up by `&str` parses it on every call.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const ENVOY_RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");

impl RetryOn {
    /// Whether an answer with `status` should be retried.
    pub fn status(&self, status: u16) -> bool {
        (self.server_5xx && (500..600).contains(&status))
            || (self.gateway_error && matches!(status, 502..=504))
            || self.statuses.contains(&status)
    }

    /// Whether a response should be retried, looking at its headers too: the status, a gRPC
    /// status in the headers (a trailers-only gRPC answer), and an Envoy rate-limit mark.
    pub fn response(&self, status: u16, headers: &HeaderMap) -> bool {
        if self.status(status) {
            return true;
        }
        if self.envoy_ratelimited && status == 429 && headers.contains_key(ENVOY_RATELIMITED) {
            return true;
        }
        if self.grpc_codes.is_empty() {
            return false;
        }
        headers
            .get(GRPC_STATUS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
            .is_some_and(|code| self.grpc_codes.contains(&code))
    }

    /// The conditions of an Istio `retryOn` ([`RetryConditions`]), as this client applies
    /// them: failures before the request was sent count as connect failures, and `5xx` and
    /// `gateway-error` also cover failures without a response, as in Envoy.
    pub fn from_conditions(c: &RetryConditions) -> Self {
        let mut statuses = c.status_codes.clone();
        if c.retriable_4xx && !statuses.contains(&409) {
            statuses.push(409);
        }
        Self {
            connect_failure: c.retries_failure(AttemptFailure::ConnectFailure),
            refused_stream: c.retries_failure(AttemptFailure::RefusedStream),
            reset: c.retries_failure(AttemptFailure::Reset),
            server_5xx: c.server_5xx,
            gateway_error: c.gateway_error,
            statuses,
            grpc_codes: c.grpc.codes(),
            envoy_ratelimited: c.envoy_ratelimited,
        }
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

impl HttpPolicy {
    /// The policy for calls to one destination, from its resolved traffic policy
    /// ([`TrafficConfig::resolve`](mesh_core::traffic::TrafficConfig::resolve) or
    /// [`TrafficPolicy::for_port`](mesh_core::traffic::TrafficPolicy::for_port)): the route's
    /// timeout, per-try timeout, attempts, `retryOn` and backoff (Envoy's cap of 10x the
    /// base), and the DestinationRule's connection-pool limits. The retry budget and the
    /// idempotency rule keep their defaults: Istio has no setting for them.
    pub fn from_traffic(policy: &EffectiveTrafficPolicy) -> Self {
        let retry = policy.retry();
        Self {
            timeout: policy.timeout(),
            per_try_timeout: retry.per_try_timeout,
            retries: retry.attempts,
            retry_on: RetryOn::from_conditions(&retry.retry_on),
            backoff: retry
                .backoff
                .map_or_else(BackoffConfig::default, |base| BackoffConfig {
                    base,
                    max: base.saturating_mul(10),
                }),
            limits: policy.breaker_limits(),
            // Spelled out rather than `..Self::default()`, which would build (and drop) a
            // default `RetryOn` with its two vectors on every request.
            retry_non_idempotent: false,
            budget: RetryBudgetConfig::default(),
        }
    }
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

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use mesh_core::{
        rng::SplitMix64,
        traffic::{RequestAttributes, TrafficConfig, parse_resources},
    };

    use super::*;

    fn resolve(yaml: &str, host: &str) -> EffectiveTrafficPolicy {
        let config = TrafficConfig::from_resources(parse_resources(yaml).unwrap()).unwrap();
        config
            .resolve(
                host,
                80,
                &RequestAttributes::new("GET", "/"),
                &mut SplitMix64::new(1),
            )
            .unwrap()
            .policy
    }

    #[test]
    fn from_an_istio_route_and_destination_rule() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: r, namespace: shop }
spec:
  hosts: [r]
  http:
  - route: [{ destination: { host: r } }]
    timeout: 3s
    retries: { attempts: 4, perTryTimeout: 500ms, retryOn: "5xx,retriable-4xx,deadline-exceeded,429", backoff: 40ms }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: r, namespace: shop }
spec:
  host: r
  trafficPolicy:
    connectionPool: { tcp: { maxConnections: 8 }, http: { maxRetries: 2 } }
"#;
        let policy = HttpPolicy::from_traffic(&resolve(yaml, "r.shop.svc.cluster.local"));
        assert_eq!(policy.timeout, Some(Duration::from_secs(3)));
        assert_eq!(policy.per_try_timeout, Some(Duration::from_millis(500)));
        assert_eq!(policy.retries, 4);
        assert_eq!(policy.backoff.base, Duration::from_millis(40));
        assert_eq!(policy.backoff.max, Duration::from_millis(400));
        assert!(policy.backoff.validate().is_ok());
        assert_eq!(policy.limits.max_connections, 8);
        assert_eq!(policy.limits.max_retries, 2);
        let on = &policy.retry_on;
        assert!(on.server_5xx && on.connect_failure && on.reset && on.refused_stream);
        assert!(on.status(500) && on.status(409) && on.status(429) && !on.status(404));
        assert_eq!(on.grpc_codes, [4]);
        assert!(!policy.retry_non_idempotent);
    }

    #[test]
    fn defaults_match_istio_without_a_route() {
        let policy = HttpPolicy::from_traffic(&EffectiveTrafficPolicy::default());
        let default = HttpPolicy::default();
        assert_eq!(policy.retries, default.retries);
        assert_eq!(policy.retry_on, RetryOn::default());
        assert_eq!(policy.timeout, None);
        assert_eq!(policy.limits, Limits::default());
        assert_eq!(policy.backoff, BackoffConfig::default());
    }

    #[test]
    fn responses_judged_with_headers() {
        let on = RetryOn::from_conditions(&"unavailable,envoy-ratelimited".parse().unwrap());
        assert!(
            !on.connect_failure,
            "gRPC conditions do not retry connect failures"
        );
        let mut headers = HeaderMap::new();
        assert!(!on.response(200, &headers));
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        assert!(on.response(200, &headers));
        headers.insert("grpc-status", HeaderValue::from_static("13"));
        assert!(!on.response(200, &headers));
        let mut limited = HeaderMap::new();
        assert!(!on.response(429, &limited));
        limited.insert("x-envoy-ratelimited", HeaderValue::from_static("true"));
        assert!(on.response(429, &limited));
        let on = RetryOn::from_conditions(&"connect-failure".parse().unwrap());
        assert!(on.connect_failure && !on.reset && !on.refused_stream);
        assert!(!on.response(503, &HeaderMap::new()));
    }
}

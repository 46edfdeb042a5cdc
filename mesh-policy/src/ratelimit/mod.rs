//! Rate limiting: token-bucket rules keyed by request attributes, decided locally in memory
//! ([`LocalRateLimiter`]) or shared by every replica through Redis (mesh-client's
//! `GlobalRateLimiter`), both behind one trait, [`RateLimiter`].
//!
//! # Configuration
//!
//! Our own format (there is no Istio resource for this), read strictly by
//! [`RateLimitConfig::from_yaml`]: unknown fields and bad values are errors naming the field
//! path (`rules[0].limit.fill_interval: bad duration "1"...`). Field names follow Envoy's
//! `local_ratelimit` token bucket.
//!
//! ```yaml
//! rules:
//!   - name: per-caller              # unique; [A-Za-z0-9._-]; shown in decisions and logs
//!     key: [source_principal]       # one bucket per caller identity
//!     limit: { max_tokens: 100, tokens_per_fill: 50, fill_interval: 1s }
//!   - name: api-writes-per-user
//!     match:                        # every field given must hold; omitted: every request
//!       path_prefixes: [/api/]      # plain prefix of the path (query excluded)
//!       methods: [POST, PUT, DELETE]
//!       destination_ports: [8080]
//!       source_namespaces: [shop]   # Istio patterns: exact, "prefix*", "*suffix", "*"
//!       source_principals: ["cluster.local/ns/shop/sa/*"]
//!       headers: { x-tenant: "gold-*" }
//!     key: [{ header: x-user-id }, method]
//!     missing_key: shared           # shared (default): requests without the header share
//!                                   # one bucket; skip: the rule ignores them
//!     max_keys: 10000               # per-key buckets kept in memory (default 10000)
//!     limit: { max_tokens: 10, fill_interval: 6s }   # tokens_per_fill defaults to 1
//! ```
//!
//! Key attributes: `source_principal`, `source_namespace`, `method`, `destination_port`,
//! `{header: NAME}`. Durations are Go-style (`250ms`, `1s`, `1m30s`), from 1ms to 24h.
//!
//! # Semantics
//!
//! - Every rule that matches a request counts it; the request is admitted only if each of
//!   them has a token, and then takes one from each ([`Decision`] names the deciding rule).
//! - A bucket holds at most `max_tokens` and refills continuously at
//!   `tokens_per_fill / fill_interval`, so over any window of length `t` a bucket admits at
//!   most `max_tokens + rate * t` requests ([`TokenBucket`], exact integer arithmetic).
//! - A raw TCP tunnel is one request with no HTTP attributes: rules with HTTP conditions do
//!   not match it, and HTTP key attributes are absent.
//! - Per-key memory is bounded; see [`LocalRateLimiter`] for how new keys get a slot.
//! - Refused requests get [`Decision::http_status`] (429) and
//!   [`Decision::response_headers`] (`retry-after`, `x-ratelimit-limit`,
//!   `x-ratelimit-remaining`, `x-ratelimit-reset`), which the caller adds.
//!
//! ```
//! use std::{net::SocketAddr, time::Duration};
//! use mesh_core::clock::{Clock, ManualClock};
//! use mesh_policy::{authz::AuthzRequest, ratelimit::{LocalRateLimiter, RateLimitConfig}};
//!
//! let config = RateLimitConfig::from_yaml(
//!     "rules: [{ name: all, limit: { max_tokens: 2, fill_interval: 1s } }]",
//! )?;
//! let limiter = LocalRateLimiter::new(config);
//! let clock = ManualClock::new();
//! let addr: SocketAddr = "10.0.0.2:8080".parse().unwrap();
//! let request = AuthzRequest::tcp("10.0.0.1".parse().unwrap(), addr);
//! assert!(limiter.decide(&request, clock.now()).is_allowed());
//! assert!(limiter.decide(&request, clock.now()).is_allowed());
//! let third = limiter.decide(&request, clock.now());
//! assert_eq!(third.http_status(), Some(429));
//! clock.advance(Duration::from_millis(500));
//! assert!(!limiter.decide(&request, clock.now()).is_allowed());
//! clock.advance(Duration::from_millis(500));
//! assert!(limiter.decide(&request, clock.now()).is_allowed());
//! # Ok::<(), mesh_policy::ratelimit::RateLimitConfigError>(())
//! ```

mod bucket;
mod config;
mod decision;
mod duration;
mod keyed;
mod limiter;
mod rule;

pub use bucket::{BucketParams, BucketParamsError, BucketStatus, TokenBucket};
pub use config::{MAX_KEYS_LIMIT, RateLimitConfig, RateLimitConfigError};
pub use decision::{BackendFailure, Decision, FailureMode, Quota, Verdict};
pub use limiter::{CheckFuture, LocalRateLimiter, RateLimiter};
pub use rule::{DEFAULT_MAX_KEYS, KeyPart, MissingKey, RateLimitRule, RuleMatch};

/// Key attribute values of `request` for `rule`, in the rule's key order (`None` = absent),
/// or `None` overall when the rule does not count the request (no match, or a missing key
/// attribute with [`MissingKey::Skip`]). Global limiters build their shared counter names
/// from these.
pub fn rule_key(
    rule: &RateLimitRule,
    request: &crate::authz::AuthzRequest,
) -> Option<Vec<Option<String>>> {
    let attributes = rule::Attributes::new(request);
    if !rule.matches_attributes(&attributes) {
        return None;
    }
    let values = rule.key_values(&attributes)?;
    Some(
        values
            .into_iter()
            .map(|v| v.map(|v| v.into_owned()))
            .collect(),
    )
}

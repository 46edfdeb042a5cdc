//! Global rate limiting: one limit shared by every replica, kept in Redis.
//!
//! [`GlobalRateLimiter`] enforces the same rules as mesh-policy's in-memory
//! [`LocalRateLimiter`](mesh_policy::ratelimit::LocalRateLimiter) (the same
//! [`RateLimitConfig`](mesh_policy::ratelimit::RateLimitConfig) file) but keeps the buckets in
//! Redis, updated atomically by a Lua script (GCRA; see [`GlobalRateLimiter`] for why), so
//! that a limit of 100 requests per second means 100 for the whole service, however many
//! processes serve it. Both implement
//! [`RateLimiter`](mesh_policy::ratelimit::RateLimiter), so the inbound path treats them
//! alike:
//!
//! ```no_run
//! use mesh_client::ratelimit::{GlobalRateLimiter, RedisLimiterSettings};
//! use mesh_core::clock::{Clock, SystemClock};
//! use mesh_policy::{authz::AuthzRequest, ratelimit::{RateLimitConfig, RateLimiter}};
//!
//! # async fn example(request: AuthzRequest) -> Result<(), Box<dyn std::error::Error>> {
//! let config = RateLimitConfig::from_yaml(
//!     "rules: [{ name: per-caller, key: [source_principal],
//!                limit: { max_tokens: 100, tokens_per_fill: 100, fill_interval: 1s } }]",
//! )?;
//! let limiter = GlobalRateLimiter::new(RedisLimiterSettings::new("redis://10.0.0.5:6379"), config)?;
//! let decision = limiter.check(&request, SystemClock.now()).await;
//! if let Some(status) = decision.http_status() {
//!     // answer `status` (429, or 500 when Redis is down and the limiter fails closed)
//!     // with decision.response_headers()
//! }
//! # Ok(()) }
//! ```
//!
//! Failure handling follows Envoy's ratelimit filter: every call has a timeout; when Redis
//! cannot answer, the configured [`FailureMode`](mesh_policy::ratelimit::FailureMode)
//! applies (fail-open by default), the decision carries the [`GlobalRateLimitError`], and
//! [`GlobalLimiterStats`] counts it (`error`, `timeout`, `failure_mode_allowed`,
//! `failure_mode_denied`). After a failure, checks skip Redis for a short backoff so an
//! outage adds no latency.
//!
//! A local limiter in front of the global one (checked first) keeps bursts off Redis; a
//! request refused globally still spends its local token, as with Envoy's two filters.

mod error;
mod limiter;
mod script;
mod settings;

pub use error::GlobalRateLimitError;
pub use limiter::{GlobalLimiterStats, GlobalRateLimiter};
pub use settings::RedisLimiterSettings;

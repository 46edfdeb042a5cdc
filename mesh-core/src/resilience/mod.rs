//! Resilience state machines: how often to retry, when to stop, and whom to avoid.
//!
//! - [`Backoff`]: exponential backoff with full jitter between retries.
//! - [`RetryBudget`]: retries as a share of recent requests plus a reserve, so retries cannot
//!   multiply load during an outage.
//! - [`CircuitBreaker`]: caps on concurrent connections, pending requests, requests and
//!   retries, with RAII [`Permit`]s (Istio's `connectionPool`).
//! - [`OutlierDetector`]: passive health checking that ejects failing endpoints for a growing
//!   time (Istio's `outlierDetection`).
//!
//! All are sans-I/O: time arrives as [`Timestamp`](crate::clock::Timestamp) arguments and
//! randomness from an injected [`Rng`](crate::rng::Rng), so `mesh-client` owns the timers and
//! the tests own time.

mod backoff;
mod circuit_breaker;
mod health_check;
pub mod outlier;
mod retry_budget;

pub use backoff::{Backoff, BackoffConfig, BackoffConfigError};
pub use circuit_breaker::{BreakerStats, CircuitBreaker, Limits, Overflow, Permit, ResourceKind};
pub use health_check::{HealthCheckConfig, HealthCheckConfigError, HealthChecker};
pub use outlier::{
    EjectionReason, FailurePercentageConfig, Outcome, OutlierConfig, OutlierConfigError,
    OutlierDetector, OutlierEvent, OutlierStats, SuccessRateConfig,
};
pub use retry_budget::{
    RetryBudget, RetryBudgetConfig, RetryBudgetConfigError, RetryBudgetExhausted,
};

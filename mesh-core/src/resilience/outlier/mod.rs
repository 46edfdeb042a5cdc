//! Outlier detection (passive health checking), as Istio's `outlierDetection` configures Envoy.
//!
//! [`OutlierDetector`] watches request outcomes per endpoint and ejects those that fail:
//! consecutive 5xx, consecutive gateway errors, consecutive local-origin failures (immediately),
//! and success-rate or failure-percentage outliers (once per interval). Ejections last longer
//! each time in a row, are capped by `max_ejection_percent`, and end on their own; each change is
//! an [`OutlierEvent`] for the balancer.

mod config;
mod detector;
mod host;
mod statistics;

pub use config::{FailurePercentageConfig, OutlierConfig, OutlierConfigError, SuccessRateConfig};
pub use detector::{EjectionReason, OutlierDetector, OutlierEvent, OutlierStats};
pub use host::Outcome;

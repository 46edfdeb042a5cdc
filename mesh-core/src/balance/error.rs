use thiserror::Error;

/// Why a balancer configuration was refused.
///
/// Returned by the constructors of the configurable balancers and by
/// [`Policy::build`](super::Policy::build), so a bad `DestinationRule` is reported when it is
/// loaded rather than when the first request arrives.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BalanceConfigError {
    /// Ring-hash sizes out of order or out of range.
    #[error(
        "ring hash sizes are invalid: need 1 <= minimum_ring_size ({min}) <= maximum_ring_size ({max}) <= {limit}"
    )]
    RingSize {
        /// The configured minimum.
        min: u64,
        /// The configured maximum.
        max: u64,
        /// The largest maximum allowed.
        limit: u64,
    },
    /// The Maglev table size is not a prime, or is out of range.
    #[error(
        "maglev table size {size} must be a prime between 2 and {limit} (the default is 65537)"
    )]
    MaglevTableSize {
        /// The configured size.
        size: u64,
        /// The largest size allowed.
        limit: u64,
    },
    /// A percentage above 100 (panic threshold) or an overprovisioning factor below 100%.
    #[error("{field} is {value}%; it must be between {min}% and {max}%")]
    Percentage {
        /// The offending setting.
        field: &'static str,
        /// Its value.
        value: u32,
        /// The smallest value allowed.
        min: u32,
        /// The largest value allowed.
        max: u32,
    },
    /// A zero duration where time must pass (EWMA decay).
    #[error("{field} must be greater than zero")]
    ZeroDuration {
        /// The offending setting.
        field: &'static str,
    },
}

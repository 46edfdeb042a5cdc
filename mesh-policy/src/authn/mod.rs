//! Request authentication: who sent this request, as opposed to which peer connected.
//!
//! - [`jwt`]: Istio `RequestAuthentication` (JWT bearer tokens), see its docs.
//!
//! Time is an input: [`jwt::Authenticator::authenticate`] takes the current time as a
//! [`Timestamp`] counting nanoseconds since the Unix epoch, because token claims (`exp`,
//! `nbf`) are wall-clock times. Production code reads it from [`UnixClock`]; tests pass fixed
//! values or a [`ManualClock`](mesh_core::clock::ManualClock) started at a Unix time. (The
//! monotonic [`SystemClock`](mesh_core::clock::SystemClock) counts from process start and is
//! the wrong clock here.)

pub mod jwt;

use std::time::{SystemTime, UNIX_EPOCH};

use mesh_core::clock::{Clock, Timestamp};

/// The wall clock as a [`Clock`]: [`Timestamp`]s are nanoseconds since the Unix epoch.
///
/// Not monotonic (the system time can be set back); a clock before 1970 reads as the epoch.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnixClock;

impl Clock for UnixClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_nanos(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
    }
}

pub use jwt::{Authenticator, AuthnError, AuthnOutcome, JwksStore};

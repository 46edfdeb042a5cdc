//! etcd as the service registry, for fleets larger than one machine.
//!
//! Services register their own endpoints ([`EtcdRegistration`]) and clients follow the registry
//! ([`EtcdDiscovery`]), with no control plane in between: etcd's leases give liveness (an
//! instance that stops renewing disappears after its TTL) and its watches give push updates with
//! a revision that orders every change.
//!
//! The key layout, record format and failure behaviour are documented on [`EtcdConfig`], the
//! entry point both sides share.

mod record;
mod registration;
mod watcher;

use std::{future::Future, time::Duration};

use etcd_client::{Client, ConnectOptions};
use mesh_core::resilience::{BackoffConfig, BackoffConfigError};
use thiserror::Error;

pub use registration::{EtcdRegistration, RegistrationStatus};
pub use watcher::EtcdDiscovery;

/// Where etcd is and how to talk to it; shared by [`EtcdDiscovery`] and [`EtcdRegistration`].
///
/// # Key layout
///
/// Everything lives under one prefix (`/mesh` by default, [`EtcdConfig::prefix`]):
///
/// | key | value (JSON) |
/// |---|---|
/// | `<prefix>/services/<hostname>` | the service: `{"ports": [{"port": 8080, "name": "http", "protocol": "http"}], "identities": ["spiffe://td/ns/shop/sa/reviews"]}` |
/// | `<prefix>/endpoints/<hostname>/<ip:port>` | one instance: `{"address": "10.0.0.7:8080", "hbone_port": 15008, "identity": "spiffe://...", "weight": 1, "locality": "region/zone/subzone", "health": "healthy", "labels": {"version": "v1"}}` |
///
/// `<hostname>` is the normalised (lowercase) service name and `<ip:port>` the endpoint's
/// address as Rust prints it (IPv6 as `[addr]:port`); the record's `address` must match it.
/// Field meanings, defaults and validation are those of the mesh config file
/// ([`mesh_core::config`]): `protocol` is `tcp` (default), `http`, `http2` or `grpc`; `health` is
/// `healthy` (default), `unhealthy` or `draining`; `hbone_port` defaults to 15008 (0: outside
/// the mesh); `weight` defaults to 1 and must be positive. Unknown fields are ignored so that
/// newer registrars can add fields without older clients dropping their endpoints; invalid values
/// make discovery skip that one record and report it.
///
/// A service exists in the snapshot when it has a service record or at least one endpoint; without
/// a record it has no ports and no expected identities (endpoints then need their own
/// `identity`, or routing will refuse them). Both kinds of key are written under the
/// registering instance's lease, so a crashed instance's endpoint expires with its lease. Every
/// instance of a service writes the same service record (last writer owns it); when the owner's
/// lease ends, the remaining instances see the deletion and write it again.
///
/// # Failure behaviour
///
/// Losing etcd changes nothing for traffic: discovery keeps the last snapshot it published,
/// reports the failure in
/// [`DiscoveryStatus::last_error`](crate::discovery::DiscoveryStatus::last_error), and
/// reconnects with capped, jittered backoff; on reconnecting it reads the whole prefix again
/// (changes made meanwhile are not lost) and resumes watching. Registrations keep retrying too,
/// re-using their lease if it survived or granting a new one and writing their records again.
///
/// Only plain `http://` endpoints are supported for now (etcd-client's TLS features are not
/// enabled); run etcd on a trusted network or loopback.
///
/// # Example
///
/// Build with [`EtcdConfig::new`] and the `with_*` methods:
///
/// ```
/// use std::time::Duration;
/// use mesh_client::discovery::EtcdConfig;
/// let config = EtcdConfig::new(["http://10.0.0.2:2379", "http://10.0.0.3:2379"])
///     .with_prefix("/prod/mesh")
///     .with_lease_ttl(Duration::from_secs(10));
/// assert_eq!(config.prefix, "/prod/mesh");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// Client URLs of the etcd members (`http://host:2379`); requests are balanced over them.
    pub endpoints: Vec<String>,
    /// Root of the [key layout](Self#key-layout). Default `/mesh`.
    pub prefix: String,
    /// Limit on connecting and on every unary request (get, put, grant, revoke). Default 5 s.
    pub request_timeout: Duration,
    /// HTTP/2 PING interval on the connection, so a silently dead etcd (a partition rather than
    /// a crash) is noticed. etcd refuses pings more often than every 5 s. Default 10 s.
    pub keep_alive_interval: Duration,
    /// How long a PING may go unanswered before the connection counts as dead. Default 5 s.
    pub keep_alive_timeout: Duration,
    /// Delays between reconnection attempts (full jitter, capped). Default 100 ms growing to 5 s.
    pub reconnect_backoff: BackoffConfig,
    /// TTL of a registration's lease: how long a crashed instance stays listed. Whole seconds
    /// (rounded up); etcd may raise very small values to its minimum. Default 10 s.
    pub lease_ttl: Duration,
}

impl EtcdConfig {
    /// A configuration for these etcd client URLs with every other setting at its default.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: "/mesh".to_owned(),
            request_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            reconnect_backoff: BackoffConfig {
                base: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
            lease_ttl: Duration::from_secs(10),
        }
    }

    /// Sets the key prefix (trailing `/` is ignored).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the connect and per-request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the HTTP/2 keep-alive interval and timeout.
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self
    }

    /// Sets the reconnection backoff.
    pub fn with_reconnect_backoff(mut self, backoff: BackoffConfig) -> Self {
        self.reconnect_backoff = backoff;
        self
    }

    /// Sets the registration lease TTL.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Checks the settings that would otherwise fail later: at least one endpoint, non-zero
    /// timeouts and TTL, a valid backoff.
    pub fn validate(&self) -> Result<(), EtcdError> {
        let invalid = |reason: &str| {
            Err(EtcdError::InvalidConfig {
                reason: reason.to_owned(),
            })
        };
        if self.endpoints.is_empty() {
            return invalid(
                "no etcd endpoints; give at least one client URL such as http://127.0.0.1:2379",
            );
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be greater than zero");
        }
        if self.keep_alive_interval.is_zero() || self.keep_alive_timeout.is_zero() {
            return invalid("keep-alive interval and timeout must be greater than zero");
        }
        if self.lease_ttl.is_zero() {
            return invalid("lease_ttl must be greater than zero");
        }
        self.reconnect_backoff
            .validate()
            .map_err(|source| EtcdError::Backoff { source })
    }

    /// The lease TTL in whole seconds, rounded up.
    fn lease_ttl_secs(&self) -> i64 {
        let secs = self
            .lease_ttl
            .as_secs()
            .saturating_add(u64::from(self.lease_ttl.subsec_nanos() > 0));
        i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
    }

    /// The endpoints for messages.
    fn describe(&self) -> String {
        self.endpoints.join(",")
    }
}

/// Why an etcd operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The configuration cannot work.
    #[error("invalid etcd configuration: {reason}")]
    InvalidConfig {
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// The reconnection backoff is invalid.
    #[error("invalid etcd reconnect backoff: {source}")]
    Backoff {
        /// What is wrong with it.
        source: BackoffConfigError,
    },
    /// etcd answered with an error, or the connection failed.
    #[error("etcd {operation} failed: {source}")]
    Request {
        /// What was being done (`get`, `watch`, `lease grant`, ...).
        operation: &'static str,
        /// The client's error (transport or gRPC status).
        source: etcd_client::Error,
    },
    /// etcd did not answer in time.
    #[error("etcd {operation} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The limit that passed.
        after: Duration,
    },
    /// A stream (watch, lease keep-alive) ended or was cancelled by etcd.
    #[error("etcd {operation} stream ended: {reason}")]
    StreamEnded {
        /// Which stream.
        operation: &'static str,
        /// Why, as far as known.
        reason: String,
    },
    /// A record could not be encoded.
    #[error("cannot encode the etcd record: {source}")]
    Encode {
        /// serde_json's reason.
        source: serde_json::Error,
    },
    /// The service uses a port protocol this version cannot write into a record.
    #[error("port protocol {protocol} has no etcd record form in this version")]
    UnsupportedProtocol {
        /// The protocol, as debug-printed.
        protocol: String,
    },
}

/// Runs one etcd call with a deadline, mapping both failure kinds.
async fn timed<T>(
    after: Duration,
    operation: &'static str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(after, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(EtcdError::Request { operation, source }),
        Err(_) => Err(EtcdError::Timeout { operation, after }),
    }
}

/// A fresh client. Connections are made lazily, so this succeeds without etcd; the first request
/// tells whether it is there. Every reconnection makes a new client, so no state from a broken
/// connection is carried over.
async fn connect(config: &EtcdConfig) -> Result<Client, EtcdError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(config.request_timeout)
        .with_keep_alive(config.keep_alive_interval, config.keep_alive_timeout);
    timed(
        config.request_timeout,
        "connect",
        Client::connect(config.endpoints.as_slice(), Some(options)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_ttl_rounding() {
        let ok = EtcdConfig::new(["http://127.0.0.1:2379"]);
        assert!(ok.validate().is_ok());
        assert_eq!(ok.lease_ttl_secs(), 10);
        assert_eq!(
            ok.clone()
                .with_lease_ttl(Duration::from_millis(1500))
                .lease_ttl_secs(),
            2
        );
        assert_eq!(
            ok.clone()
                .with_lease_ttl(Duration::from_millis(1))
                .lease_ttl_secs(),
            1
        );
        assert!(matches!(
            EtcdConfig::new(Vec::<String>::new()).validate(),
            Err(EtcdError::InvalidConfig { .. })
        ));
        assert!(matches!(
            ok.clone().with_lease_ttl(Duration::ZERO).validate(),
            Err(EtcdError::InvalidConfig { .. })
        ));
        assert!(matches!(
            ok.with_reconnect_backoff(BackoffConfig {
                base: Duration::ZERO,
                max: Duration::ZERO
            })
            .validate(),
            Err(EtcdError::Backoff { .. })
        ));
    }
}

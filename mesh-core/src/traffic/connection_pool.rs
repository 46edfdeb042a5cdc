//! `connectionPool`: circuit-breaker limits and connection settings.

use std::time::Duration;

use crate::resilience::Limits;

/// Istio's default connect timeout (mesh-wide `connectTimeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Istio's idle timeout when a DestinationRule sets none: one hour, for raw TCP tunnels
/// (`tcp.idleTimeout`) and kept HTTP connections (`http.idleTimeout`) alike.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Istio `connectionPool`. Counts of 0 in the YAML mean "not set" (protobuf's zero value), as
/// in Istio, and are stored as `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionPoolSettings {
    /// `tcp`.
    pub tcp: TcpSettings,
    /// `http`.
    pub http: HttpSettings,
}

/// `connectionPool.tcp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpSettings {
    /// `maxConnections`: open connections to the destination (breaker limit).
    pub max_connections: Option<u32>,
    /// `connectTimeout` (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Option<Duration>,
    /// `tcpKeepalive`.
    pub keepalive: Option<TcpKeepalive>,
    /// `maxConnectionDuration`: connections are closed once they are this old (no limit when
    /// unset). See [`ConnectionPoolSettings::max_connection_duration`].
    pub max_connection_duration: Option<Duration>,
    /// `idleTimeout` (TCP): connections with no bytes sent or received this long are closed.
    /// `Some(Duration::ZERO)` is Istio's `0s`, which switches the timeout off; see
    /// [`ConnectionPoolSettings::tcp_idle_timeout`] for the value in force.
    pub idle_timeout: Option<Duration>,
}

/// `connectionPool.tcp.tcpKeepalive`; unset fields use the operating system's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpKeepalive {
    /// `probes`: unanswered probes before the connection is dead.
    pub probes: Option<u32>,
    /// `time`: idle time before the first probe.
    pub time: Option<Duration>,
    /// `interval`: time between probes.
    pub interval: Option<Duration>,
}

/// `connectionPool.http.h2UpgradePolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum H2UpgradePolicy {
    /// `DEFAULT`: the mesh-wide choice.
    #[default]
    Default,
    /// `DO_NOT_UPGRADE`.
    DoNotUpgrade,
    /// `UPGRADE`: speak HTTP/2 to the destination.
    Upgrade,
}

/// `connectionPool.http`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpSettings {
    /// `http1MaxPendingRequests`: requests waiting for a connection (breaker limit).
    pub http1_max_pending_requests: Option<u32>,
    /// `http2MaxRequests`: requests in flight (breaker limit).
    pub http2_max_requests: Option<u32>,
    /// `maxRequestsPerConnection`: a connection is closed after this many requests.
    pub max_requests_per_connection: Option<u32>,
    /// `maxRetries`: retries in flight across the destination (breaker limit).
    pub max_retries: Option<u32>,
    /// `idleTimeout` (HTTP): upstream connections without requests for this long are closed.
    pub idle_timeout: Option<Duration>,
    /// `h2UpgradePolicy`.
    pub h2_upgrade_policy: H2UpgradePolicy,
    /// `useClientProtocol`: speak to the destination in the caller's protocol.
    pub use_client_protocol: bool,
    /// `maxConcurrentStreams`: HTTP/2 streams per connection.
    pub max_concurrent_streams: Option<u32>,
}

impl ConnectionPoolSettings {
    /// The circuit-breaker limits: unset fields keep Istio's default (effectively unlimited).
    pub fn limits(&self) -> Limits {
        let default = Limits::default();
        let or = |v: Option<u32>, d: u64| v.map_or(d, u64::from);
        Limits {
            max_connections: or(self.tcp.max_connections, default.max_connections),
            max_pending_requests: or(
                self.http.http1_max_pending_requests,
                default.max_pending_requests,
            ),
            max_requests: or(self.http.http2_max_requests, default.max_requests),
            max_retries: or(self.http.max_retries, default.max_retries),
        }
    }

    /// The connect timeout, with Istio's default.
    pub fn connect_timeout(&self) -> Duration {
        self.tcp.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// How long a raw TCP connection may go without a byte sent or received, either way,
    /// before it is closed: `tcp.idleTimeout`, [`DEFAULT_IDLE_TIMEOUT`] when unset, `None`
    /// (never) when set to `0s`.
    pub fn tcp_idle_timeout(&self) -> Option<Duration> {
        off_when_zero(self.tcp.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT))
    }

    /// How long a kept HTTP connection may carry no request before it is closed:
    /// `http.idleTimeout`, else `tcp.idleTimeout` (istiod uses the TCP value for HTTP
    /// connections when the HTTP one is unset), else [`DEFAULT_IDLE_TIMEOUT`]; `None` (never)
    /// when the value in force is `0s`.
    pub fn http_idle_timeout(&self) -> Option<Duration> {
        off_when_zero(
            self.http
                .idle_timeout
                .or(self.tcp.idle_timeout)
                .unwrap_or(DEFAULT_IDLE_TIMEOUT),
        )
    }

    /// The longest a connection may live, from when it was opened: `tcp.maxConnectionDuration`
    /// (`None`: no limit, Istio's default). A raw TCP connection is closed at that age; an HTTP
    /// connection takes no new request and closes once those in flight are answered.
    pub fn max_connection_duration(&self) -> Option<Duration> {
        self.tcp.max_connection_duration.and_then(off_when_zero)
    }
}

/// `None` for a zero duration (a timeout switched off).
fn off_when_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_to_istio() {
        assert_eq!(
            ConnectionPoolSettings::default().limits(),
            Limits::default()
        );
        let mut pool = ConnectionPoolSettings::default();
        pool.tcp.max_connections = Some(100);
        pool.http.http1_max_pending_requests = Some(10);
        pool.http.http2_max_requests = Some(1000);
        pool.http.max_retries = Some(3);
        assert_eq!(
            pool.limits(),
            Limits {
                max_connections: 100,
                max_pending_requests: 10,
                max_requests: 1000,
                max_retries: 3,
            }
        );
        assert_eq!(pool.connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
    }

    #[test]
    fn idle_timeouts_and_lifetime_follow_istio() {
        let secs = Duration::from_secs;
        let mut pool = ConnectionPoolSettings::default();
        // Unset: one hour idle for both, no lifetime limit.
        assert_eq!(pool.tcp_idle_timeout(), Some(DEFAULT_IDLE_TIMEOUT));
        assert_eq!(pool.http_idle_timeout(), Some(DEFAULT_IDLE_TIMEOUT));
        assert_eq!(pool.max_connection_duration(), None);
        // The TCP value stands in for an unset HTTP one...
        pool.tcp.idle_timeout = Some(secs(30));
        pool.tcp.max_connection_duration = Some(secs(600));
        assert_eq!(pool.tcp_idle_timeout(), Some(secs(30)));
        assert_eq!(pool.http_idle_timeout(), Some(secs(30)));
        assert_eq!(pool.max_connection_duration(), Some(secs(600)));
        // ...but not for a set one.
        pool.http.idle_timeout = Some(secs(5));
        assert_eq!(pool.http_idle_timeout(), Some(secs(5)));
        assert_eq!(pool.tcp_idle_timeout(), Some(secs(30)));
        // `0s` switches the TCP timeout off, and the HTTP one when that falls back to it.
        pool.tcp.idle_timeout = Some(Duration::ZERO);
        assert_eq!(pool.tcp_idle_timeout(), None);
        assert_eq!(pool.http_idle_timeout(), Some(secs(5)));
        pool.http.idle_timeout = None;
        assert_eq!(pool.http_idle_timeout(), None);
    }
}

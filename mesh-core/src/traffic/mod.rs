//! Traffic policy: Istio's DestinationRule and the retry/timeout part of VirtualService, typed.
//!
//! Istio users describe how calls to a service behave in two resources, and this module reads
//! both as written (`networking.istio.io/v1`, `v1beta1`, `v1alpha3`) as well as the mesh
//! config's own equivalent (`traffic_policy:` on a service, snake_case, see
//! [`MeshConfig`](crate::config::MeshConfig)). Both produce the same model:
//!
//! - [`TrafficPolicy`] (a DestinationRule's content): load balancing ([`LoadBalancerSettings`]:
//!   round robin, least request, random, consistent hashing by header, cookie, source IP or
//!   query parameter over a ring hash or Maglev table, locality preference), connection pool
//!   limits ([`ConnectionPoolSettings`]), outlier detection ([`OutlierDetectionSettings`]), TLS
//!   mode, per-port overrides and label-selected [`Subset`]s with their own settings.
//! - [`VirtualService`]: ordered [`HttpRoute`]s matching requests by URI, method, headers,
//!   query parameters, authority, scheme and port ([`RouteMatch`]), sending them to weighted
//!   [`Destination`]s (host, subset, port) with [`RetryPolicy`] and timeout.
//!
//! [`TrafficConfig`] indexes both by host, checks that they fit together (every subset a route
//! names exists; one rule per host) and, per call, resolves the destination and its
//! [`EffectiveTrafficPolicy`]: the DestinationRule levels merged as istiod merges them
//! (service, service port, subset, subset port) plus the route's retries and timeout. Its
//! accessors hand each state machine its configuration: [`balance::Policy`](crate::balance::Policy)
//! and [`PriorityConfig`](crate::balance::PriorityConfig), circuit-breaker
//! [`Limits`](crate::resilience::Limits), [`OutlierConfig`](crate::resilience::OutlierConfig),
//! and the retry settings.
//!
//! # Strictness
//!
//! Unknown fields are errors naming their path. Istio features this mesh does not implement
//! (PASSTHROUGH, warmup, SIMPLE/MUTUAL TLS origination,
//! redirects, rewrites, fault injection, mirroring, gateways, `exportTo`, ...) are refused as
//! "not supported", never silently ignored, so no call behaves differently from what its author
//! wrote. Values are validated with istiod's rules (durations of at least 1 ms in whole
//! milliseconds, percentages up to 100, prime Maglev tables, unique subset names, ...), and a
//! loader reports every problem of every document, each with its document number and field
//! path.
//!
//! # Accepted, with no effect of their own
//!
//! A few settings common in DestinationRules written for sidecars are accepted and validated
//! but change nothing here, because the in-process data path already decides what they tune:
//! `tcp.tcpKeepalive` (HBONE connections send HTTP/2 PINGs every 10 s instead),
//! `http.h2UpgradePolicy` and `useClientProtocol` (a service port's declared protocol picks
//! HTTP/1.1 or HTTP/2), `http.maxConcurrentStreams` (the HBONE pool caps streams per
//! connection at the peer's limit).
//!
//! `loadBalancer.localityLbSetting` is applied as istiod sets Envoy up
//! ([`EffectiveTrafficPolicy::priority_config_for`], [`LocalityRules`](crate::balance::LocalityRules)):
//! `distribute` weights localities for the callers its `from` matches (validated: weights 1-100
//! summing to 100, no overlapping localities); `failover` (region to region) and
//! `failoverPriority` (labels, `label=value` allowed, combinable with `failover`) order priority
//! levels, and like the default locality priority they need `outlierDetection`; `distribute`
//! with `failover` is refused, as are a region failing over to itself and topology labels in
//! `failoverPriority` next to `failover`. `retries.retryRemoteLocalities` makes mesh-client's
//! retries avoid the levels already tried ([`PreviousPriorities`](crate::balance::PreviousPriorities)).
//!
//! mesh-client applies `tcp.connectTimeout`, `tcp.maxConnections`, the `http` limits,
//! `maxRequestsPerConnection` and `http.idleTimeout`, and:
//!
//! - `tcp.idleTimeout` ([`ConnectionPoolSettings::tcp_idle_timeout`]; one hour when unset,
//!   `0s` switches it off, as istiod allows): a raw tunnel (`Mesh::connect`) with no byte sent
//!   or received either way for that long is reset, and its reads and writes fail naming the
//!   setting. Kept HTTP connections use it as their idle timeout when `http.idleTimeout` is
//!   unset, as istiod does ([`ConnectionPoolSettings::http_idle_timeout`]).
//! - `tcp.maxConnectionDuration` ([`ConnectionPoolSettings::max_connection_duration`]; no limit
//!   when unset): a raw tunnel is reset at that age, busy or not; a kept HTTP/1.1 or HTTP/2
//!   connection is no longer handed out at that age and closes once the requests in flight on
//!   it are answered (at once when idle).
//!
//! # Defaults
//!
//! What Istio does when a field is absent, this model does too: `LEAST_REQUEST` balancing; no
//! outlier detection (and then no locality priority, and Envoy's 50% panic threshold); with
//! outlier detection, a panic threshold of `minHealthPercent` (0 unless set); effectively
//! unlimited connection pools; 2 retries on `connect-failure,refused-stream,unavailable,
//! cancelled,503`; no route timeout.

mod config;
mod connection_pool;
mod destination_rule;
mod duration;
mod effective;
mod error;
mod host;
pub(crate) mod load;
mod load_balancer;
mod matcher;
mod outlier;
pub(crate) mod raw;
mod request;
mod retry;
mod virtual_service;

pub use config::{ResolvedCall, RouteDecision, RouteError, TrafficConfig, normalize_host};
pub use connection_pool::{
    ConnectionPoolSettings, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, H2UpgradePolicy,
    HttpSettings, TcpKeepalive, TcpSettings,
};
pub use destination_rule::{
    DestinationRule, PolicySettings, Subset, TlsMode, TrafficPolicy, TrafficSettings, UnknownSubset,
};
pub use duration::{DurationError, format_duration, parse_duration};
pub use effective::EffectiveTrafficPolicy;
pub use error::{ReferenceError, ResourceKind, TrafficError, TrafficErrorKind, TrafficErrors};
pub use host::{HostError, HostPattern};
pub use load::{API_VERSIONS, LoadOptions, TrafficResource, parse_resources, parse_resources_with};
pub use load_balancer::{
    Algorithm, ConsistentHash, HashCookie, HashKeySource, HashTable, LoadBalancerSettings,
};
pub use matcher::{MatchRegex, RouteMatch, StringMatch};
pub use outlier::OutlierDetectionSettings;
pub use request::{RequestAttributes, RequestView};
pub use retry::{AttemptFailure, GrpcRetryOn, RetryConditions, RetryOnError, RetryPolicy};
pub use virtual_service::{Destination, HttpRoute, RouteDestination, VirtualService};

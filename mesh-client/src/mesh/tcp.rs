//! Raw TCP tunnels to a service by name: balanced, retried on connect failure, limited.

use std::sync::PoisonError;

use mesh_core::{
    balance::PickContext,
    resilience::{Backoff, BackoffConfig, CircuitBreaker, Limits, Outcome, ResourceKind},
    rng::SplitMix64,
};

use tracing::Instrument;

use super::{Mesh, MeshError};
use crate::{
    hbone::{H2Stream, TunnelError, TunnelOptions},
    http::ResolveDestination,
    observe::{TraceContext, trace::continue_tunnel},
};

/// Attempts for one [`Mesh::connect`]: the first plus Istio's default of two retries, each to
/// a freshly picked endpoint (Envoy's TCP proxy retries connect failures the same way).
const CONNECT_ATTEMPTS: u32 = 3;

impl Mesh {
    /// Opens a raw TCP tunnel to `target` (`host:port` of a service discovery knows).
    ///
    /// The service's balancer picks the endpoint; a failure to establish the tunnel
    /// (connection refused, TLS failure, 503 from the peer, timeout) is reported to outlier
    /// detection and retried on another pick, up to three attempts with jittered backoff. A
    /// 401 (the destination's policy denies us) is final. The tunnel counts against the
    /// service's connection limit until dropped. The stream is an `AsyncRead + AsyncWrite`;
    /// [`H2Stream::peer_identity`] names the workload reached.
    ///
    /// The service's DestinationRule bounds the tunnel as Envoy's TCP proxy would: after
    /// `connectionPool.tcp.idleTimeout` (one hour when unset, never with `0s`) with no byte
    /// sent or received either way, or once it is `tcp.maxConnectionDuration` old, the tunnel
    /// is reset and reads and writes fail with `io::ErrorKind::TimedOut`, the message naming
    /// the setting. A task waiting to read or write is woken when that happens; a tunnel
    /// nobody reads or writes ends at its next read or write.
    ///
    /// The CONNECT carries W3C trace context like the HTTP client's requests: a client span
    /// continuing the [current](TraceContext::current) context (see [`TraceContext::scope`]),
    /// or a new trace; [`connect_with_trace`](Self::connect_with_trace) names the parent
    /// explicitly. The destination's server span continues it and its access log line shows
    /// the same trace ID.
    pub async fn connect(&self, target: &str) -> Result<H2Stream, MeshError> {
        self.connect_traced(target, None).await
    }

    /// [`connect`](Self::connect) continuing the trace of `parent` (its trace ID, sampling,
    /// `tracestate` and `baggage`), for instance the [`TraceContext`] an inbound request carries
    /// in its extensions.
    pub async fn connect_with_trace(
        &self,
        target: &str,
        parent: &TraceContext,
    ) -> Result<H2Stream, MeshError> {
        self.connect_traced(target, Some(parent)).await
    }

    async fn connect_traced(
        &self,
        target: &str,
        parent: Option<&TraceContext>,
    ) -> Result<H2Stream, MeshError> {
        let (host, port) = split_target(target)?;
        let trace = continue_tunnel(parent);
        let span = tracing::info_span!(
            target: "mesh::tcp",
            "TCP client",
            otel.kind = "client",
            server.address = host.as_str(),
            server.port = port,
            trace_id = %trace.trace_id(),
            span_id = %trace.span_id(),
            parent_span_id = trace.parent_span_id(),
        );
        let result = self
            .connect_in_span(host, port, trace)
            .instrument(span.clone())
            .await;
        span.in_scope(|| match &result {
            Ok(stream) => tracing::debug!(
                target: "mesh::tcp",
                peer = stream.peer_identity().map(|p| p.as_str()),
                "tunnel open"
            ),
            Err(e) => tracing::debug!(target: "mesh::tcp", error = %e, "tunnel failed"),
        });
        result
    }

    async fn connect_in_span(
        &self,
        host: String,
        port: u16,
        trace: TraceContext,
    ) -> Result<H2Stream, MeshError> {
        // The DestinationRule for this port, if any: breaker limits, connect timeout, idle
        // timeout and lifetime (Istio's defaults without one).
        let port_policy = self
            .inner
            .routes
            .traffic()
            .policy(&host)
            .and_then(|rule| rule.for_port(port, None).ok());
        let pool = port_policy
            .as_ref()
            .map(|p| p.connection_pool())
            .unwrap_or_default();
        let connect_timeout = pool.connect_timeout();
        let permit = {
            let mut breakers = self
                .inner
                .tcp_breakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let breaker = breakers.entry(host.clone()).or_insert_with(|| {
                // The DestinationRule's connectionPool (`tcp.maxConnections`), if any.
                let limits = port_policy
                    .as_ref()
                    .map_or_else(Limits::default, |p| p.breaker_limits());
                CircuitBreaker::new(limits)
            });
            breaker.try_acquire(ResourceKind::Connection).map_err(|o| {
                if let Some(t) = self.recording() {
                    t.breaker_overflow(&host, o.kind);
                }
                MeshError::Overflow {
                    host: host.clone(),
                    limit: o.limit,
                }
            })?
        };
        let mut backoff = Backoff::new(BackoffConfig::default(), SplitMix64::from_entropy())
            .map_err(|e| MeshError::Discovery(format!("backoff: {e}")))?;
        let routes = &self.inner.routes;
        let mut attempts = 0;
        let mut tried = Vec::new();
        loop {
            attempts += 1;
            // Envoy's `previous_hosts`: a retry avoids the endpoints already tried while
            // others can serve.
            let pick = routes
                .pick_attempt(&host, port, None, &PickContext::new(), &tried)
                .ok_or_else(|| MeshError::NoEndpoint {
                    host: host.clone(),
                    port,
                })?;
            let (dest, endpoint) = (pick.destination, pick.endpoint);
            tried.push(endpoint);
            // Naming the service (`forwarded: ...;host=`) lets the destination attribute it.
            let options = TunnelOptions {
                service_host: Some(host.clone()),
                trace: Some(trace.clone()),
                ..TunnelOptions::default()
            };
            let connecting = self.inner.hbone.connect_with(&dest, &options);
            let connected = tokio::time::timeout(connect_timeout, connecting)
                .await
                .unwrap_or(Err(TunnelError::Timeout {
                    addr: dest.hbone_addr,
                    phase: "connectionPool.tcp.connectTimeout: opening the tunnel",
                    after: connect_timeout,
                }));
            match connected {
                Ok(stream) => {
                    routes.report(&host, endpoint, Outcome::LocalOriginSuccess);
                    return Ok(stream
                        .with_guard(Box::new(permit))
                        .with_deadlines(pool.tcp_idle_timeout(), pool.max_connection_duration()));
                }
                Err(e) => {
                    if !matches!(e, TunnelError::Denied { .. }) {
                        routes.report(&host, endpoint, Outcome::LocalOriginFailure);
                    }
                    if !e.is_retryable() || attempts >= CONNECT_ATTEMPTS {
                        return Err(MeshError::Tunnel {
                            host,
                            attempts,
                            source: Box::new(e),
                        });
                    }
                    tracing::debug!(%host, %endpoint, error = %e, "tunnel attempt failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// Splits `host:port` (`[v6]:port` too) and checks both halves.
fn split_target(target: &str) -> Result<(String, u16), MeshError> {
    let bad = || MeshError::BadTarget(target.to_owned());
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::split_target;

    #[test]
    fn targets_are_host_and_port() {
        assert_eq!(
            split_target("Inventory.shop:8080").unwrap(),
            ("inventory.shop".to_owned(), 8080)
        );
        assert_eq!(split_target("[::1]:80").unwrap(), ("::1".to_owned(), 80));
        for bad in [
            "inventory",
            "inventory:",
            ":80",
            "inventory:0",
            "inventory:http",
            "a:70000",
        ] {
            assert!(split_target(bad).is_err(), "{bad}");
        }
    }
}

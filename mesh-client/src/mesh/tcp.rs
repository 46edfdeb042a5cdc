//! Raw TCP tunnels to a service by name: balanced, retried on connect failure, limited.

use std::sync::PoisonError;

use mesh_core::{
    resilience::{Backoff, BackoffConfig, CircuitBreaker, Limits, Outcome, ResourceKind},
    rng::SplitMix64,
};

use super::{Mesh, MeshError};
use crate::{
    hbone::{Destination, H2Stream, TunnelError, TunnelOptions},
    http::ResolveDestination,
};

/// Attempts for one [`Mesh::connect`]: the first plus Istio's default of two retries, each to
/// a freshly picked endpoint (Envoy's TCP proxy retries connect failures the same way).
const CONNECT_ATTEMPTS: u32 = 3;
/// Extra picks spent looking for an endpoint not tried yet (Envoy's `host_selection_retry_max_attempts`).
const REPICKS: usize = 5;

impl Mesh {
    /// Opens a raw TCP tunnel to `target` (`host:port` of a service discovery knows).
    ///
    /// The service's balancer picks the endpoint; a failure to establish the tunnel
    /// (connection refused, TLS failure, 503 from the peer, timeout) is reported to outlier
    /// detection and retried on another pick, up to three attempts with jittered backoff. A
    /// 401 (the destination's policy denies us) is final. The tunnel counts against the
    /// service's connection limit until dropped. The stream is an `AsyncRead + AsyncWrite`;
    /// [`H2Stream::peer_identity`] names the workload reached.
    pub async fn connect(&self, target: &str) -> Result<H2Stream, MeshError> {
        let (host, port) = split_target(target)?;
        let permit = {
            let mut breakers = self
                .inner
                .tcp_breakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let breaker = breakers.entry(host.clone()).or_insert_with(|| {
                // The DestinationRule's connectionPool (`tcp.maxConnections`), if any.
                let limits = self
                    .inner
                    .routes
                    .traffic()
                    .policy(&host)
                    .and_then(|rule| rule.for_port(port, None).ok())
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
            let dest = pick_untried(routes.as_ref(), &host, port, &tried).ok_or_else(|| {
                MeshError::NoEndpoint {
                    host: host.clone(),
                    port,
                }
            })?;
            tried.push(dest.authority());
            // Naming the service (`forwarded: ...;host=`) lets the destination attribute it.
            let options = TunnelOptions {
                service_host: Some(host.clone()),
                ..TunnelOptions::default()
            };
            match self.inner.hbone.connect_with(&dest, &options).await {
                Ok(stream) => {
                    routes.report(&host, dest.authority(), Outcome::LocalOriginSuccess);
                    return Ok(stream.with_guard(Box::new(permit)));
                }
                Err(e) => {
                    if !matches!(e, TunnelError::Denied { .. }) {
                        routes.report(&host, dest.authority(), Outcome::LocalOriginFailure);
                    }
                    if !e.is_retryable() || attempts >= CONNECT_ATTEMPTS {
                        return Err(MeshError::Tunnel {
                            host,
                            attempts,
                            source: Box::new(e),
                        });
                    }
                    tracing::debug!(%host, endpoint = %dest.authority(), error = %e, "tunnel attempt failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// Picks from the balancer, re-picking a few times to avoid endpoints that already failed
/// this connect (Istio's default retry host predicate, `previous_hosts`). When every pick is a
/// previous host (one endpoint left), that one is tried again.
fn pick_untried(
    routes: &dyn ResolveDestination,
    host: &str,
    port: u16,
    tried: &[std::net::SocketAddr],
) -> Option<Destination> {
    let mut pick = routes.resolve(host, port)?;
    for _ in 0..REPICKS {
        if !tried.contains(&pick.authority()) {
            break;
        }
        pick = routes.resolve(host, port)?;
    }
    Some(pick)
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

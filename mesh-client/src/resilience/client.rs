//! The retry loop.

use mesh_core::fast_hash::FastMap;
use std::{
    borrow::Cow,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mesh_core::{
    clock::{Clock, SystemClock},
    resilience::{Backoff, CircuitBreaker, Outcome, Overflow, Permit, ResourceKind, RetryBudget},
    rng::SplitMix64,
};

use super::{
    DEADLINE_HEADER, HttpPolicy, RequestError,
    routed::{Routed, SendError, Target},
};
use crate::{
    discovery::Discovery,
    hbone::{HboneClient, TunnelError},
    http::{MeshConnector, UpstreamInfo},
    observe::{Telemetry, http::OutboundProbe},
    routing::BalancedDestinations,
};
use tracing::Instrument;

/// Per-service state shared by all requests to it.
struct ServiceState {
    budget: Mutex<RetryBudget>,
    breaker: CircuitBreaker,
}

/// An HTTP client over the mesh that applies an [`HttpPolicy`] to every request.
///
/// Two ways to build one: [`new`](Self::new) applies one policy to every service and dials
/// through a [`MeshConnector`]; [`routed`](Self::routed) follows the traffic configuration of
/// a [`BalancedDestinations`] per request (VirtualService routes, subsets, retries and
/// timeouts, DestinationRule limits), as [`Mesh::http_client`](crate::mesh::Mesh::http_client)
/// does.
///
/// Bodies are [`Bytes`] so attempts can be replayed. Cloning is cheap and shares the connection
/// pool and per-service state.
#[derive(Clone)]
pub struct ResilientClient {
    /// Shared: a clone (one per `Mesh::http_client()` call) is one reference count.
    inner: Arc<ClientInner>,
}

/// What a [`ResilientClient`] and its clones share.
#[derive(Clone)]
struct ClientInner {
    client: Client<MeshConnector, Full<Bytes>>,
    /// Kept to report outcomes to the routes (passive health checking).
    connector: MeshConnector,
    policy: Arc<HttpPolicy>,
    services: Arc<Mutex<FastMap<String, Arc<ServiceState>>>>,
    /// Set for clients following the traffic configuration.
    routed: Option<Arc<Routed>>,
    /// Where requests, retries and overflows are recorded (`None`: not recorded).
    telemetry: Option<Telemetry>,
}

/// The outcome of one attempt, judged against the policy.
enum Attempt {
    Done(Response<Incoming>),
    Retry(Last),
    Stop(Last),
}

/// What to return if no further attempt is made.
enum Last {
    Response(Response<Incoming>),
    Error(crate::http::BoxError),
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn overflow(host: &str, o: Overflow) -> RequestError {
    RequestError::Overflow {
        host: host.to_owned(),
        kind: o.kind,
        limit: o.limit,
    }
}

impl ResilientClient {
    /// A client dialing through `connector` with `policy` for every service.
    pub fn new(connector: MeshConnector, policy: HttpPolicy) -> Result<Self, RequestError> {
        policy
            .budget
            .validate()
            .map_err(|e| RequestError::Invalid(format!("retry budget: {e}")))?;
        policy
            .backoff
            .validate()
            .map_err(|e| RequestError::Invalid(format!("backoff: {e}")))?;
        Ok(Self::from_inner(ClientInner {
            // No idle HTTP connections: every request opens a tunnel, so every request is
            // balanced (and retries can land on another endpoint). Tunnels ride pooled HBONE
            // connections, so this costs one CONNECT exchange, not a handshake.
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector.clone()),
            connector,
            policy: Arc::new(policy),
            services: Arc::new(Mutex::new(FastMap::default())),
            routed: None,
            telemetry: None,
        }))
    }

    fn from_inner(inner: ClientInner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A client whose every request is routed and governed by the traffic configuration
    /// installed in `routes` ([`BalancedDestinations::set_traffic`]): the VirtualService route
    /// matching the request picks the destination, subset and port, its retries and timeout
    /// apply, the DestinationRule's connection-pool limits guard the destination, and each
    /// attempt goes to an endpoint of the subset picked by its balancer. Services without
    /// traffic resources get Istio's defaults (2 retries on connect failures, refused streams
    /// and 503). `discovery` tells which ports speak HTTP/2 (`http2`, `grpc`).
    pub fn routed(
        hbone: HboneClient,
        routes: Arc<BalancedDestinations>,
        discovery: Arc<dyn Discovery>,
    ) -> Self {
        let connector = MeshConnector::with_shared_routes(hbone.clone(), routes.clone());
        Self::from_inner(ClientInner {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector.clone()),
            connector,
            policy: Arc::new(HttpPolicy::default()),
            services: Arc::new(Mutex::new(FastMap::default())),
            routed: Some(Arc::new(Routed::new(hbone, routes, discovery))),
            telemetry: None,
        })
    }

    /// Records every request (Istio's `reporter="source"` metrics, access log), retry and
    /// overflow in `telemetry`, and propagates W3C trace context: a request's `traceparent`
    /// is continued with a client span (a new trace is started when it has none) and sent on
    /// the request and the HBONE CONNECT.
    #[must_use]
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        Arc::make_mut(&mut self.inner).telemetry = Some(telemetry);
        self
    }

    fn state(&self, key: &str, policy: &HttpPolicy) -> Result<Arc<ServiceState>, RequestError> {
        let mut services = self
            .inner
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = services.get(key) {
            return Ok(state.clone());
        }
        let budget = RetryBudget::new(policy.budget)
            .map_err(|e| RequestError::Invalid(format!("retry budget: {e}")))?;
        let state = Arc::new(ServiceState {
            budget: Mutex::new(budget),
            breaker: CircuitBreaker::new(policy.limits),
        });
        services.insert(key.to_owned(), state.clone());
        Ok(state)
    }

    /// Circuit-breaker counters for `host` (in use and overflows per kind); for a subset of a
    /// routed client, ask for `host/subset`.
    pub fn breaker_stats(&self, host: &str) -> Option<mesh_core::resilience::BreakerStats> {
        let services = self
            .inner
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        services.get(host).map(|s| s.breaker.stats())
    }

    /// Sends `request`, retrying and timing out as the policy says.
    ///
    /// Deadlines propagate: every attempt carries the time left in the
    /// `x-envoy-expected-rq-timeout-ms` header, and a request that already carries that header
    /// (a service passing on the budget of the request it is serving) is given at most that
    /// long, even when the route allows more.
    ///
    /// With [`with_telemetry`](Self::with_telemetry), the request is recorded and its trace
    /// context continued (see there).
    pub async fn request(
        &self,
        mut request: Request<Bytes>,
    ) -> Result<Response<Incoming>, RequestError> {
        let called = super::authority::called_host(request.uri());
        let Some(telemetry) = &self.inner.telemetry else {
            let (host, port) = called?;
            return self.send_request(request, &host, port).await;
        };
        let probe = OutboundProbe::begin(telemetry, &mut request);
        let (service, port, invalid) = match called {
            Ok((host, port)) => (host, port, None),
            Err(e) => (String::new(), 0, Some(e)),
        };
        let span = tracing::info_span!(
            target: "mesh::http",
            "HTTP client",
            otel.kind = "client",
            http.request.method = %request.method(),
            server.address = service.as_str(),
            url.path = request.uri().path(),
            traceparent = request
                .headers()
                .get(crate::observe::TRACEPARENT)
                .and_then(|v| v.to_str().ok()),
            http.response.status_code = tracing::field::Empty,
        );
        let result = match invalid {
            None => {
                self.send_request(request, &service, port)
                    .instrument(span.clone())
                    .await
            }
            Some(e) => Err(e),
        };
        match &result {
            Ok(response) => {
                span.record("http.response.status_code", response.status().as_u16());
                probe.finish(&service, Ok(response));
            }
            Err(e) => probe.finish::<Incoming>(&service, Err(super::error::envoy_failure(e))),
        }
        result
    }

    async fn send_request(
        &self,
        request: Request<Bytes>,
        host: &str,
        port: u16,
    ) -> Result<Response<Incoming>, RequestError> {
        let (target, policy) = match &self.inner.routed {
            Some(routed) => {
                let target = routed.plan(&request, host, port)?;
                let policy = target.policy.clone();
                (Some(target), policy)
            }
            None => (None, self.inner.policy.clone()),
        };
        let key = target
            .as_ref()
            .map_or(Cow::Borrowed(host), Target::state_key);
        let state = self.state(&key, &policy)?;
        let _request_permit = state
            .breaker
            .try_acquire(ResourceKind::Request)
            .map_err(|o| {
                if let Some(t) = &self.inner.telemetry {
                    t.breaker_overflow(&key, o.kind);
                }
                overflow(&key, o)
            })?;
        let policy = &*policy;
        let started = Instant::now();
        // A deadline the caller passes on (say, what is left of its own inbound request's)
        // caps the route's timeout: work nobody waits for is not started.
        let inherited = request
            .headers()
            .get(DEADLINE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_millis);
        let timeout = match (policy.timeout, inherited) {
            (Some(own), Some(inherited)) => Some(own.min(inherited)),
            (own, inherited) => own.or(inherited),
        };
        let deadline = timeout.map(|t| started + t);
        let attempts_made = AtomicU32::new(0);
        // The budget counts the request at the instant already read for its deadline.
        state
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_request(SystemClock::timestamp(started));
        let run = self.attempts_boxed(
            host,
            &state,
            policy,
            target.as_ref(),
            request,
            deadline,
            &attempts_made,
        );
        match timeout {
            Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                Err(RequestError::Timeout {
                    host: host.to_owned(),
                    after: limit,
                    attempts: attempts_made.load(Ordering::Relaxed),
                })
            }),
            None => run.await,
        }
    }

    /// [`attempts`](Self::attempts), boxed. Its future (routing, pools, retries, timers:
    /// several kilobytes) would otherwise be part of every caller's future and be copied each
    /// time one is moved (into `timeout`, `instrument`, a spawned task...); one allocation
    /// per request costs less. Boxed outside any `async` body, where `Box::pin(fut).await`
    /// would still keep a slot for the unboxed temporary across the await.
    #[allow(clippy::too_many_arguments)]
    fn attempts_boxed<'a>(
        &'a self,
        host: &'a str,
        state: &'a ServiceState,
        policy: &'a HttpPolicy,
        target: Option<&'a Target>,
        request: Request<Bytes>,
        deadline: Option<Instant>,
        attempts_made: &'a AtomicU32,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Incoming>, RequestError>> + Send + 'a>> {
        Box::pin(self.attempts(
            host,
            state,
            policy,
            target,
            request,
            deadline,
            attempts_made,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempts(
        &self,
        host: &str,
        state: &ServiceState,
        policy: &HttpPolicy,
        target: Option<&Target>,
        request: Request<Bytes>,
        deadline: Option<Instant>,
        attempts_made: &AtomicU32,
    ) -> Result<Response<Incoming>, RequestError> {
        let replayable = policy.retry_non_idempotent || idempotent(request.method());
        let (parts, body) = request.into_parts();
        // Made at the first retry: most requests never need one.
        let mut backoff: Option<Backoff<SplitMix64>> = None;
        let mut _retry_permit: Option<Permit> = None;
        loop {
            attempts_made.fetch_add(1, Ordering::Relaxed);
            let mut attempt = Request::from_parts(parts.clone(), Full::new(body.clone()));
            if let Some(deadline) = deadline {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis();
                if let Ok(value) = HeaderValue::from_str(&left.to_string()) {
                    attempt.headers_mut().insert(DEADLINE_HEADER, value);
                }
            }
            let outcome = self.attempt(policy, target, attempt, replayable).await;
            let last = match outcome {
                Attempt::Done(response) => return Ok(response),
                Attempt::Stop(last) => {
                    return finish(host, attempts_made.load(Ordering::Relaxed), last);
                }
                Attempt::Retry(last) => last,
            };
            if attempts_made.load(Ordering::Relaxed) > policy.retries {
                return finish(host, attempts_made.load(Ordering::Relaxed), last);
            }
            // The budget and the breaker's retry limit both have to agree to another attempt.
            let budget_ok = state
                .budget
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_retry(SystemClock.now())
                .is_ok();
            let key = || target.map_or(Cow::Borrowed(host), Target::state_key);
            if !budget_ok {
                tracing::debug!(host, "retry budget exhausted; returning the last result");
                if let Some(t) = &self.inner.telemetry {
                    t.retry_budget_exhausted(&key());
                }
                return finish(host, attempts_made.load(Ordering::Relaxed), last);
            }
            match state.breaker.try_acquire(ResourceKind::Retry) {
                Ok(permit) => _retry_permit = Some(permit),
                Err(o) => {
                    if let Some(t) = &self.inner.telemetry {
                        t.breaker_overflow(&key(), o.kind);
                    }
                    return finish(host, attempts_made.load(Ordering::Relaxed), last);
                }
            }
            let delay = match &mut backoff {
                Some(backoff) => backoff.next_delay(),
                None => backoff
                    .insert(
                        Backoff::new(policy.backoff, SplitMix64::from_entropy())
                            .map_err(|e| RequestError::Invalid(format!("backoff: {e}")))?,
                    )
                    .next_delay(),
            };
            if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                // No time left for another attempt: the last result is the answer.
                return finish(host, attempts_made.load(Ordering::Relaxed), last);
            }
            drop(last);
            if let Some(t) = &self.inner.telemetry {
                t.retry(&key());
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        policy: &HttpPolicy,
        target: Option<&Target>,
        request: Request<Full<Bytes>>,
        replayable: bool,
    ) -> Attempt {
        let retry_on = &policy.retry_on;
        let send = self.send(target, request);
        let result = match policy.per_try_timeout {
            Some(limit) => match tokio::time::timeout(limit, send).await {
                Ok(r) => r,
                Err(_) => {
                    let e: crate::http::BoxError =
                        format!("attempt timed out after {limit:?}").into();
                    let retry = replayable
                        && (retry_on.reset || retry_on.gateway_error || retry_on.server_5xx);
                    return if retry {
                        Attempt::Retry(Last::Error(e))
                    } else {
                        Attempt::Stop(Last::Error(e))
                    };
                }
            },
            None => send.await,
        };
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                if retry_on.response(status, response.headers()) && replayable {
                    Attempt::Retry(Last::Response(response))
                } else {
                    Attempt::Done(response)
                }
            }
            Err(e) => {
                let (retry, error) = match e {
                    SendError::BeforeSending { error, retryable } => {
                        (retry_on.connect_failure && retryable, error)
                    }
                    SendError::Refused(error) => (retry_on.refused_stream, error),
                    SendError::AfterSending(error) => (retry_on.reset && replayable, error),
                };
                let last = Last::Error(error);
                if retry {
                    Attempt::Retry(last)
                } else {
                    Attempt::Stop(last)
                }
            }
        }
    }

    /// One attempt through the routed path or hyper's client.
    async fn send(
        &self,
        target: Option<&Target>,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        if let (Some(routed), Some(target)) = (&self.inner.routed, target) {
            return routed.send(target, request).await;
        }
        match self.inner.client.request(request).await {
            Ok(response) => {
                if let Some(upstream) = response.extensions().get::<UpstreamInfo>() {
                    self.inner
                        .connector
                        .report(upstream, Outcome::Http(response.status().as_u16()));
                }
                Ok(response)
            }
            Err(e) => {
                let tunnel = find_tunnel_error(&e);
                let refused =
                    tunnel.is_some_and(|t| matches!(t, TunnelError::Http2 { refused: true, .. }));
                Err(if e.is_connect() {
                    SendError::BeforeSending {
                        retryable: tunnel.is_none_or(TunnelError::is_retryable),
                        error: Box::new(e),
                    }
                } else if refused {
                    SendError::Refused(Box::new(e))
                } else {
                    SendError::AfterSending(Box::new(e))
                })
            }
        }
    }
}

fn find_tunnel_error(e: &hyper_util::client::legacy::Error) -> Option<&TunnelError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<TunnelError>() {
            return Some(t);
        }
        source = s.source();
    }
    None
}

fn finish(host: &str, attempts: u32, last: Last) -> Result<Response<Incoming>, RequestError> {
    match last {
        Last::Response(response) => Ok(response),
        Last::Error(source) => Err(RequestError::Failed {
            host: host.to_owned(),
            attempts,
            source,
        }),
    }
}

impl fmt::Debug for ResilientClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientClient")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

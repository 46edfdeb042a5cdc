//! The retry loop.

use std::{
    collections::HashMap,
    fmt,
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

use super::{DEADLINE_HEADER, HttpPolicy, RequestError};
use crate::{
    hbone::TunnelError,
    http::{MeshConnector, UpstreamInfo},
};

/// Per-service state shared by all requests to it.
struct ServiceState {
    budget: Mutex<RetryBudget>,
    breaker: CircuitBreaker,
}

/// An HTTP client over the mesh that applies an [`HttpPolicy`] to every request.
///
/// Bodies are [`Bytes`] so attempts can be replayed. Cloning is cheap and shares the connection
/// pool and per-service state.
#[derive(Clone)]
pub struct ResilientClient {
    client: Client<MeshConnector, Full<Bytes>>,
    /// Kept to report outcomes to the routes (passive health checking).
    connector: MeshConnector,
    policy: Arc<HttpPolicy>,
    services: Arc<Mutex<HashMap<String, Arc<ServiceState>>>>,
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
        Ok(Self {
            // No idle HTTP connections: every request opens a tunnel, so every request is
            // balanced (and retries can land on another endpoint). Tunnels ride pooled HBONE
            // connections, so this costs one CONNECT exchange, not a handshake.
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector.clone()),
            connector,
            policy: Arc::new(policy),
            services: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn state(&self, host: &str) -> Result<Arc<ServiceState>, RequestError> {
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = services.get(host) {
            return Ok(state.clone());
        }
        let budget = RetryBudget::new(self.policy.budget)
            .map_err(|e| RequestError::Invalid(format!("retry budget: {e}")))?;
        let state = Arc::new(ServiceState {
            budget: Mutex::new(budget),
            breaker: CircuitBreaker::new(self.policy.limits),
        });
        services.insert(host.to_owned(), state.clone());
        Ok(state)
    }

    /// Circuit-breaker counters for `host` (in use and overflows per kind).
    pub fn breaker_stats(&self, host: &str) -> Option<mesh_core::resilience::BreakerStats> {
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services.get(host).map(|s| s.breaker.stats())
    }

    /// Sends `request`, retrying and timing out as the policy says.
    pub async fn request(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Incoming>, RequestError> {
        let host = request
            .uri()
            .host()
            .ok_or_else(|| RequestError::Invalid(format!("URI {} has no host", request.uri())))?
            .to_ascii_lowercase();
        let state = self.state(&host)?;
        let _request_permit = state
            .breaker
            .try_acquire(ResourceKind::Request)
            .map_err(|o| overflow(&host, o))?;
        let policy = &self.policy;
        let started = Instant::now();
        let deadline = policy.timeout.map(|t| started + t);
        let attempts_made = AtomicU32::new(0);
        let run = self.attempts(&host, &state, request, deadline, &attempts_made);
        match policy.timeout {
            Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                Err(RequestError::Timeout {
                    host: host.clone(),
                    after: limit,
                    attempts: attempts_made.load(Ordering::Relaxed),
                })
            }),
            None => run.await,
        }
    }

    async fn attempts(
        &self,
        host: &str,
        state: &ServiceState,
        request: Request<Bytes>,
        deadline: Option<Instant>,
        attempts_made: &AtomicU32,
    ) -> Result<Response<Incoming>, RequestError> {
        let policy = &self.policy;
        let replayable = policy.retry_non_idempotent || idempotent(request.method());
        let (parts, body) = request.into_parts();
        state
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_request(SystemClock.now());
        let mut backoff = Backoff::new(policy.backoff, SplitMix64::from_entropy())
            .map_err(|e| RequestError::Invalid(format!("backoff: {e}")))?;
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
            let outcome = self.attempt(attempt, replayable).await;
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
            if !budget_ok {
                tracing::debug!(host, "retry budget exhausted; returning the last result");
                return finish(host, attempts_made.load(Ordering::Relaxed), last);
            }
            match state.breaker.try_acquire(ResourceKind::Retry) {
                Ok(permit) => _retry_permit = Some(permit),
                Err(_) => return finish(host, attempts_made.load(Ordering::Relaxed), last),
            }
            let delay = backoff.next_delay();
            if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                // No time left for another attempt: the last result is the answer.
                return finish(host, attempts_made.load(Ordering::Relaxed), last);
            }
            drop(last);
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, request: Request<Full<Bytes>>, replayable: bool) -> Attempt {
        let retry_on = &self.policy.retry_on;
        let send = self.client.request(request);
        let result = match self.policy.per_try_timeout {
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
                if let Some(upstream) = response.extensions().get::<UpstreamInfo>() {
                    self.connector.report(upstream, Outcome::Http(status));
                }
                if retry_on.status(status) && replayable {
                    Attempt::Retry(Last::Response(response))
                } else {
                    Attempt::Done(response)
                }
            }
            Err(e) => {
                let tunnel = find_tunnel_error(&e);
                let before_sending = e.is_connect();
                let refused =
                    tunnel.is_some_and(|t| matches!(t, TunnelError::Http2 { refused: true, .. }));
                let retry = if before_sending {
                    retry_on.connect_failure && tunnel.is_none_or(TunnelError::is_retryable)
                } else if refused {
                    retry_on.refused_stream
                } else {
                    retry_on.reset && replayable
                };
                let last = Last::Error(Box::new(e));
                if retry {
                    Attempt::Retry(last)
                } else {
                    Attempt::Stop(last)
                }
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
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

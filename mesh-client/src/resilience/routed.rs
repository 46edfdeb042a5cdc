//! Requests routed by the traffic configuration: VirtualService routes pick the destination
//! (host, subset, port) and its policy per request; each attempt opens a tunnel to an endpoint
//! of that destination and speaks HTTP/1.1 or HTTP/2 (by the service port's protocol) over it.

use std::{
    borrow::Cow,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header::HOST};
use http_body_util::Full;
use hyper::body::Incoming;
use mesh_core::{
    balance::{HashKey, PickContext, PreviousPriorities},
    fast_hash::FastMap,
    model::Protocol,
    model::Snapshot,
    resilience::Outcome,
    rng::SplitMix64,
    traffic::{ConnectionPoolSettings, HashKeySource, RequestView, RouteError, TrafficConfig},
};

use super::{
    HttpPolicy, RequestError,
    http1_pool::{Checkout, Http1Connection, Http1Pool},
    http2_shared::{Http2Connection, Http2Shared},
};
mod dial;

use crate::{
    discovery::Discovery,
    hbone::{Destination, HboneClient, TunnelError},
    http::BoxError,
    routing::BalancedDestinations,
};

/// What routed requests need: tunnels, balancers (which hold the traffic configuration) and
/// the service catalogue (for port protocols), plus the per-endpoint HTTP connections kept
/// alive between requests.
pub(super) struct Routed {
    pub(super) hbone: HboneClient,
    pub(super) routes: Arc<BalancedDestinations>,
    pub(super) discovery: Arc<dyn Discovery>,
    /// HTTP/1.1: connections kept alive per endpoint, one request at a time on each.
    http1: Arc<Http1Pool>,
    /// HTTP/2: one multiplexed connection per endpoint, and who answers on it.
    http2: Arc<Http2Shared>,
    /// Plans of the hosts called, by host (a few ports each).
    plans: Mutex<FastMap<String, Vec<CachedPlan>>>,
}

/// At most this many hosts have plans kept; beyond, the kept plans are dropped and made again.
const MAX_PLANNED_HOSTS: usize = 1024;

impl Routed {
    pub(super) fn new(
        hbone: HboneClient,
        routes: Arc<BalancedDestinations>,
        discovery: Arc<dyn Discovery>,
    ) -> Self {
        Self {
            hbone,
            routes,
            discovery,
            http1: Arc::new(Http1Pool::new()),
            http2: Arc::new(Http2Shared::new()),
            plans: Mutex::new(FastMap::default()),
        }
    }
}

/// Where every request to one `host:port` goes and under which policy, as long as the traffic
/// configuration and the service catalogue stay the same and the route that applies does not
/// depend on the request (see [`TrafficConfig::resolves_alike`]): then it is resolved once and
/// shared by the requests that follow, instead of matching routes, merging the
/// DestinationRule and building the retry policy per request.
pub(super) struct Plan {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) subset: Option<String>,
    pub(super) http2: bool,
    /// The DestinationRule's `connectionPool` for this destination: connect timeout, HTTP
    /// idle timeout, requests per connection and maximum connection duration.
    pub(super) pool: ConnectionPoolSettings,
    /// Retries, timeouts, budget and breaker limits.
    pub(super) policy: Arc<HttpPolicy>,
    /// Where consistent-hash keys come from, when the balancer hashes.
    hash_source: Option<HashKeySource>,
    /// The route's `retries.retryRemoteLocalities`.
    retry_remote_localities: bool,
}

/// A [`Plan`] kept for `port`, valid while the configuration it was made from is current.
struct CachedPlan {
    port: u16,
    traffic: Arc<TrafficConfig>,
    snapshot: Arc<Snapshot>,
    plan: Arc<Plan>,
}

/// Where the attempts of one request go, decided once per request: its destination's
/// [`Plan`] (reachable through `Deref`) and what this request's attempts remember.
pub(super) struct Target {
    pub(super) plan: Arc<Plan>,
    pub(super) ctx: PickContext,
    /// With the route's `retries.retryRemoteLocalities`: the priority levels this request's
    /// attempts went to, so later attempts avoid them (Envoy's `previous_priorities`).
    pub(super) previous_priorities: Option<Mutex<PreviousPriorities>>,
    /// When the route retries: the endpoints this request's attempts went to, which later
    /// attempts avoid while others can serve (Envoy's `previous_hosts`, set by Istio on every
    /// retry policy).
    pub(super) previous_hosts: Option<Mutex<TriedHosts>>,
}

/// The endpoints a request's attempts went to. The latest is kept aside and joins the list
/// only when another attempt follows, so a request answered at the first attempt (most of
/// them) allocates nothing for it.
#[derive(Default)]
pub(super) struct TriedHosts {
    earlier: Vec<SocketAddr>,
    last: Option<SocketAddr>,
}

impl TriedHosts {
    /// The endpoints of every attempt so far, for the one about to be made to avoid.
    fn before_attempt(&mut self) -> &[SocketAddr] {
        if let Some(last) = self.last.take()
            && !self.earlier.contains(&last)
        {
            self.earlier.push(last);
        }
        &self.earlier
    }
}

impl std::ops::Deref for Target {
    type Target = Plan;

    fn deref(&self) -> &Plan {
        &self.plan
    }
}

impl Target {
    /// The key of the per-destination state (retry budget, breaker): `host` or `host/subset`.
    pub(super) fn state_key(&self) -> Cow<'_, str> {
        match &self.subset {
            Some(subset) => Cow::Owned(format!("{}/{subset}", self.host)),
            None => Cow::Borrowed(&self.host),
        }
    }
}

/// How an attempt failed, in the terms retry conditions use.
pub(super) enum SendError {
    /// Nothing reached the upstream (no endpoint, tunnel refused, connection failed).
    BeforeSending {
        error: BoxError,
        /// Whether another attempt could succeed (a 401 from the peer's policy cannot).
        retryable: bool,
    },
    /// The upstream refused the stream unprocessed (HTTP/2 REFUSED_STREAM).
    Refused(BoxError),
    /// The request may have been processed (reset, connection lost, timeout).
    AfterSending(BoxError),
}

/// A request's attributes as route matching sees them.
struct PartsView<'a, B>(&'a Request<B>);

impl<B> RequestView for PartsView<'_, B> {
    fn method(&self) -> &str {
        self.0.method().as_str()
    }

    fn path(&self) -> &str {
        self.0.uri().path_and_query().map_or("/", |p| p.as_str())
    }

    fn authority(&self) -> &str {
        self.0
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| self.0.headers().get(HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.0.headers().get_all(name).iter();
        let first = values.next()?.to_str().ok()?;
        let mut joined = Cow::Borrowed(first);
        for value in values {
            if let Ok(value) = value.to_str() {
                let text = joined.to_mut();
                text.push(',');
                text.push_str(value);
            }
        }
        Some(joined)
    }

    fn scheme(&self) -> &str {
        self.0.uri().scheme_str().unwrap_or("http")
    }
}

impl Routed {
    /// Routes `parts` to a destination and its policy: the cached [`Plan`] of `host:port`
    /// when there is a current one, else a new one (kept when the route is the same for
    /// every request).
    pub(super) fn plan<B>(
        &self,
        request: &Request<B>,
        host: &str,
        port: u16,
    ) -> Result<Target, RequestError> {
        let traffic = self.routes.traffic();
        let snapshot = self.discovery.current();
        let view = PartsView(request);
        let plan = match self.cached_plan(host, port, &traffic, &snapshot) {
            Some(plan) => plan,
            None => self.new_plan(host, port, &view, traffic, snapshot)?,
        };
        let key = match &plan.hash_source {
            // The downstream of this client is the workload itself, so every request hashes
            // alike and sticks to one endpoint, as behind a sidecar.
            Some(HashKeySource::SourceIp) => Some(HashKey::from_bytes(
                self.hbone
                    .tls()
                    .credentials()
                    .svid()
                    .spiffe_id()
                    .as_str()
                    .as_bytes(),
            )),
            Some(source) => hash_key(&view, source),
            None => None,
        };
        Ok(Target {
            ctx: key.map_or_else(PickContext::new, PickContext::with_hash),
            previous_hosts: (plan.policy.retries > 0).then(|| Mutex::new(TriedHosts::default())),
            previous_priorities: plan
                .retry_remote_localities
                .then(|| Mutex::new(PreviousPriorities::istio())),
            plan,
        })
    }

    /// The plan kept for `host:port`, if it was made from `traffic` and `snapshot`.
    fn cached_plan(
        &self,
        host: &str,
        port: u16,
        traffic: &Arc<TrafficConfig>,
        snapshot: &Arc<Snapshot>,
    ) -> Option<Arc<Plan>> {
        let plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        plans
            .get(host)?
            .iter()
            .find(|c| {
                c.port == port
                    && Arc::ptr_eq(&c.traffic, traffic)
                    && Arc::ptr_eq(&c.snapshot, snapshot)
            })
            .map(|c| c.plan.clone())
    }

    /// Resolves `host:port` for this request, and keeps the result when every request would
    /// resolve alike (replacing a plan made from an older configuration).
    fn new_plan<B>(
        &self,
        host: &str,
        port: u16,
        view: &PartsView<'_, B>,
        traffic: Arc<TrafficConfig>,
        snapshot: Arc<Snapshot>,
    ) -> Result<Arc<Plan>, RequestError> {
        let call = traffic
            .resolve(host, port, view, &mut SplitMix64::from_entropy())
            .map_err(|e| match e {
                RouteError::NoRoute { .. } => RequestError::NoRoute(e.to_string()),
                other => RequestError::Invalid(other.to_string()),
            })?;
        let destination = call.destination;
        let dest_port = destination.port.unwrap_or(port);
        let http2 = snapshot
            .service(&destination.host)
            .and_then(|s| s.port(dest_port))
            .is_some_and(|p| matches!(p.protocol, Protocol::Http2 | Protocol::Grpc));
        let plan = Arc::new(Plan {
            host: destination.host,
            port: dest_port,
            subset: destination.subset,
            http2,
            pool: call.policy.connection_pool(),
            policy: Arc::new(HttpPolicy::from_traffic(&call.policy)),
            hash_source: call.policy.hash_key_source(),
            retry_remote_localities: call.policy.retry().retry_remote_localities,
        });
        if traffic.resolves_alike(host, port) {
            let mut plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
            if plans.len() >= MAX_PLANNED_HOSTS && !plans.contains_key(host) {
                // Hosts called once each (a crawler, say) must not grow this without bound.
                plans.clear();
            }
            let kept = plans.entry(host.to_owned()).or_default();
            // Plans of older configurations go; the traffic and snapshot they hold with them.
            kept.retain(|c| {
                c.port != port
                    && Arc::ptr_eq(&c.traffic, &traffic)
                    && Arc::ptr_eq(&c.snapshot, &snapshot)
            });
            kept.push(CachedPlan {
                port,
                traffic,
                snapshot,
                plan: plan.clone(),
            });
        }
        Ok(plan)
    }

    /// One attempt: pick an endpoint, open a tunnel, send, and report the outcome for
    /// passive health checking.
    pub(super) async fn send(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        let picked = {
            // Held only for the pick (no await): attempts of one request are sequential.
            let mut previous = target
                .previous_priorities
                .as_ref()
                .map(|p| p.lock().unwrap_or_else(PoisonError::into_inner));
            let ctx = match &previous {
                Some(p) => target.ctx.excluding_priorities(p.excluded()),
                None => target.ctx,
            };
            let mut tried = target
                .previous_hosts
                .as_ref()
                .map(|p| p.lock().unwrap_or_else(PoisonError::into_inner));
            let picked = self.routes.pick_attempt(
                &target.host,
                target.port,
                target.subset.as_deref(),
                &ctx,
                tried.as_mut().map_or(&[], |t| t.before_attempt()),
            );
            if let Some(pick) = &picked {
                if let (Some(previous), Some(level)) = (&mut previous, pick.priority) {
                    previous.attempted(level);
                }
                if let Some(tried) = &mut tried {
                    tried.last = Some(pick.endpoint);
                }
            }
            picked
        };
        let Some(pick) = picked else {
            return Err(SendError::BeforeSending {
                error: format!(
                    "no reachable endpoint for {}:{}{}",
                    target.host,
                    target.port,
                    target
                        .subset
                        .as_deref()
                        .map(|s| format!(" subset {s}"))
                        .unwrap_or_default()
                )
                .into(),
                retryable: true,
            });
        };
        let dest = pick.destination;
        // Outcomes are reported by the endpoint's address, which outlier detection knows it by.
        let endpoint = pick.endpoint;
        let sent = if target.http2 {
            let (mut sender, upstream) = match self.http2_sender(&dest, target, &request).await {
                Ok(sender) => sender,
                Err(e) => return Err(self.before_sending(target, endpoint, e)),
            };
            // As hyper's pooled client does for HTTP/1.1: callers see who answered.
            sender.send_request(request).await.map(|mut response| {
                response.extensions_mut().insert(upstream);
                response
            })
        } else {
            match self.send_http1(&dest, target, request).await {
                Ok(response) => Ok(response),
                Err(Http1Error::Tunnel(e)) => return Err(self.before_sending(target, endpoint, e)),
                Err(Http1Error::Hyper(e)) => Err(e),
            }
        };
        match sent {
            Ok(response) => {
                self.report(target, endpoint, Outcome::Http(response.status().as_u16()));
                Ok(response)
            }
            Err(e) => {
                self.report(target, endpoint, Outcome::LocalOriginFailure);
                Err(if refused_stream(&e) {
                    SendError::Refused(Box::new(e))
                } else {
                    SendError::AfterSending(Box::new(e))
                })
            }
        }
    }

    /// Sends an HTTP/1.1 request on a kept-alive connection to the endpoint, or on a new one
    /// (one tunnel). A request a kept connection turned away unsent (it closed meanwhile) is
    /// sent once more on a new connection, as hyper's pooled client does.
    async fn send_http1(
        &self,
        dest: &Destination,
        target: &Target,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, Http1Error> {
        let endpoint = dest.authority();
        // Origin form on the wire, with `Host` naming the service.
        if !request.headers().contains_key(HOST) {
            if let Some(authority) = request.uri().authority() {
                if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                    request.headers_mut().insert(HOST, value);
                }
            }
        }
        if request.uri().authority().is_some() {
            let path = request
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
            *request.uri_mut() = Uri::from(path);
        }
        let (mut connection, reused) = match self.http1.checkout(endpoint) {
            Checkout::Ready(connection) => (connection, true),
            Checkout::Busy(busy) => self.ready_or_dial(dest, target, &request, busy).await?,
            Checkout::None => (self.dial_http1(dest, target, &request).await?, false),
        };
        let mut response = match connection.sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => {
                    connection = self.dial_http1(dest, target, &unsent).await?;
                    connection
                        .sender
                        .send_request(unsent)
                        .await
                        .map_err(Http1Error::Hyper)?
                }
                _ => return Err(Http1Error::Hyper(e.into_error())),
            },
        };
        response
            .extensions_mut()
            .insert(connection.upstream.clone());
        self.http1.put_back(endpoint, connection);
        Ok(response)
    }

    /// Every kept connection is busy: the one used last is probably just finishing its
    /// response, so wait for it, but dial a new connection (after letting other tasks run
    /// once) in case it is really busy (a caller still reading a response). Whichever is
    /// ready first takes the request; the other is kept or dropped.
    async fn ready_or_dial(
        &self,
        dest: &Destination,
        target: &Target,
        request: &Request<Full<Bytes>>,
        mut busy: Http1Connection,
    ) -> Result<(Http1Connection, bool), Http1Error> {
        let endpoint = dest.authority();
        let dial = async {
            tokio::task::yield_now().await;
            self.dial_http1(dest, target, request).await
        };
        tokio::pin!(dial);
        tokio::select! {
            biased;
            ready = std::future::poll_fn(|cx| busy.sender.poll_ready(cx)) => match ready {
                Ok(()) => Ok((busy, true)),
                // It closed instead: the new connection it is.
                Err(_) => Ok(((&mut dial).await?, false)),
            },
            dialed = &mut dial => {
                self.http1.keep(endpoint, busy);
                Ok((dialed?, false))
            }
        }
    }

    /// The endpoint's multiplexed HTTP/2 connection, opened (one tunnel) when there is none
    /// or the last one closed.
    async fn http2_sender(
        &self,
        dest: &Destination,
        target: &Target,
        request: &Request<Full<Bytes>>,
    ) -> Result<Http2Connection, TunnelError> {
        let endpoint = dest.authority();
        if let Some(connection) = self.http2.checkout(endpoint) {
            return Ok(connection);
        }
        self.dial_http2(dest, target, request).await
    }

    fn before_sending(&self, target: &Target, endpoint: SocketAddr, e: TunnelError) -> SendError {
        let retryable = e.is_retryable();
        if retryable {
            self.report(target, endpoint, Outcome::LocalOriginFailure);
        }
        SendError::BeforeSending {
            error: Box::new(e),
            retryable,
        }
    }

    fn report(&self, target: &Target, endpoint: SocketAddr, outcome: Outcome) {
        use crate::http::ResolveDestination;
        self.routes.report(&target.host, endpoint, outcome);
    }
}

/// How an HTTP/1.1 attempt failed: before anything was sent (no tunnel, no connection) or
/// while sending.
enum Http1Error {
    Tunnel(TunnelError),
    Hyper(hyper::Error),
}

/// Whether hyper's error is an HTTP/2 REFUSED_STREAM (the request was not processed).
fn refused_stream(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = s.source();
    }
    false
}

/// The consistent-hash key of a request, when its source is present.
fn hash_key<B>(view: &PartsView<'_, B>, source: &HashKeySource) -> Option<HashKey> {
    let value: Cow<'_, str> = match source {
        HashKeySource::Header(name) => view.header(name)?,
        HashKeySource::Cookie(cookie) => Cow::Owned(view.cookie(&cookie.name)?),
        HashKeySource::QueryParameter(name) => Cow::Borrowed(view.query_param(name)?),
        _ => return None,
    };
    Some(HashKey::from_bytes(value.as_bytes()))
}

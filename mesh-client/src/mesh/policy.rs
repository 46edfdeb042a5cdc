//! The security policy files of a workload, compiled and enforced on its inbound traffic:
//! request authentication (JWT) and authorization, at L4 per tunnel and at L7 per request.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header::WWW_AUTHENTICATE};
use hyper::body::Incoming;
use mesh_core::clock::SystemClock;
use mesh_core::{clock::Clock, config::WorkloadSettings};
use mesh_policy::{
    authn::UnixClock,
    authz::{AuthzRequest, Decision, HttpAttributes, Verdict as AuthzVerdict},
    peer_authn::{DecidedBy, PeerAuthnMode},
    ratelimit::{Decision as LimitDecision, LocalRateLimiter, RateLimitConfig, RateLimiter},
};

use super::{
    MeshError,
    ext_authz::{Buffered, CheckOutcome, ExtAuthz},
};
use crate::{
    hbone::{InboundRequest, Verdict},
    http::InboundPeer,
    ratelimit::{GlobalRateLimiter, RedisLimiterSettings},
};

mod files;

use files::Documents;
pub use files::PolicyStatus;

/// The compiled policies in force for this workload.
pub(crate) struct Policies {
    /// The policy files' content, swapped when they change.
    docs: arc_swap::ArcSwap<Documents>,
    /// Whether policy files are configured (then tunnels are always checked: an edit may add
    /// a policy that applies to them).
    has_files: bool,
    status: std::sync::Mutex<PolicyStatus>,
    /// Per-process rate limits.
    local_limit: Option<LocalRateLimiter>,
    /// Rate limits shared through Redis.
    global_limit: Option<GlobalRateLimiter>,
    /// Where decisions and refusals are recorded (set once by the mesh).
    telemetry: std::sync::OnceLock<crate::observe::Telemetry>,
    /// The external authorizers CUSTOM policies delegate to.
    ext_authz: ExtAuthz,
}

fn read_limits(path: &std::path::Path, field: &str) -> Result<RateLimitConfig, MeshError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| MeshError::Policy {
        path: shown.clone(),
        reason: format!("{field}: cannot read it: {e}"),
    })?;
    RateLimitConfig::from_yaml(&text).map_err(|e| MeshError::Policy {
        path: shown,
        reason: format!("{field}: {e}"),
    })
}

impl Policies {
    /// Compiles the policies that select this workload (see [`Documents::compile`]) and the
    /// rate limits. [`watch`](Self::watch) keeps the policies in step with their files.
    pub(crate) fn load(settings: &WorkloadSettings) -> Result<Self, MeshError> {
        let docs = Documents::compile(settings)?;
        let limits = &settings.rate_limit;
        let local_limit = limits
            .local
            .as_deref()
            .map(|path| read_limits(path, "rate_limit.local").map(LocalRateLimiter::new))
            .transpose()?;
        let global_limit = limits
            .global
            .as_ref()
            .map(|global| {
                let config = read_limits(&global.rules, "rate_limit.global.rules")?;
                let mut redis = RedisLimiterSettings::new(global.redis.clone());
                redis.timeout = global.timeout;
                if global.fail_closed {
                    redis.failure_mode = mesh_policy::ratelimit::FailureMode::FailClosed;
                }
                GlobalRateLimiter::new(redis, config).map_err(|e| MeshError::Policy {
                    path: "rate_limit.global".to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            docs: arc_swap::ArcSwap::from_pointee(docs),
            has_files: !settings.policies.is_empty(),
            status: std::sync::Mutex::new(PolicyStatus::default()),
            local_limit,
            global_limit,
            telemetry: std::sync::OnceLock::new(),
            ext_authz: ExtAuthz::new(&settings.extension_providers),
        })
    }

    /// Records authorization decisions and rate-limit refusals in `telemetry` from now on.
    pub(crate) fn set_telemetry(&self, telemetry: crate::observe::Telemetry) {
        let _ = self.telemetry.set(telemetry);
    }

    /// The AuthorizationPolicies in force for this workload (`namespace/name`).
    pub(crate) fn authorization_policies(&self) -> Vec<String> {
        self.docs
            .load()
            .authorizer
            .policies()
            .map(ToString::to_string)
            .collect()
    }

    /// Whether a RequestAuthentication applies (JWTs are checked).
    pub(crate) fn authenticates(&self) -> bool {
        !self.docs.load().authenticator.is_empty()
    }

    /// Counts a decision, when policies apply (without any, every request is allowed by
    /// default and counting it says nothing).
    fn record_decision(
        &self,
        docs: &Documents,
        layer: crate::observe::Layer,
        decision: &Decision<'_>,
    ) {
        if let Some(t) = self.telemetry.get()
            && docs.authorizer.policies().next().is_some()
        {
            let policy = decision.policy.map(ToString::to_string);
            t.authz(layer, decision.allowed, policy.as_deref());
        }
    }

    /// Counts the outcome of asking the external authorizers, under the CUSTOM policy.
    fn record_custom(&self, allowed: bool, policy: &str) {
        if let Some(t) = self.telemetry.get() {
            t.authz(crate::observe::Layer::Http, allowed, Some(policy));
        }
    }

    /// A request a CUSTOM policy refused: counted, logged and noted for the access log;
    /// `asked` says whether the authorizer answered (Envoy's `UAEX` flag) or the request was
    /// refused before asking it (a body too large for the provider).
    fn refused_by_custom(
        &self,
        mut response: Response<Bytes>,
        why: &str,
        policy: &str,
        peer: &InboundPeer,
        provider: &str,
        asked: bool,
    ) -> Box<Response<Bytes>> {
        self.record_custom(false, policy);
        let what = if asked {
            "HTTP request denied by the external authorizer"
        } else {
            "HTTP request refused: body too large for the external authorizer"
        };
        tracing::info!(peer = %shown(peer), provider, %policy, reason = %why, "{what}");
        response
            .extensions_mut()
            .insert(crate::observe::http::PolicyNote(format!(
                "deny: CUSTOM ({policy}, {why})"
            )));
        if asked {
            response
                .extensions_mut()
                .insert(crate::observe::ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE);
        }
        Box::new(response)
    }

    /// Counts a rate-limit refusal and flags the answer as Envoy does (`RL`, or `RLSE` when
    /// the limiter failed closed).
    fn limited(&self, mut response: Box<Response<Bytes>>, global: bool) -> Box<Response<Bytes>> {
        let service_error = response.status() != StatusCode::TOO_MANY_REQUESTS;
        if let Some(t) = self.telemetry.get() {
            t.rate_limited(crate::observe::Layer::Http, global, service_error);
        }
        response.extensions_mut().insert(if service_error {
            crate::observe::ResponseFlags::RATE_LIMIT_SERVICE_ERROR
        } else {
            crate::observe::ResponseFlags::RATE_LIMITED
        });
        response
    }

    /// Whether tunnels need checking: policy files are configured (an edit may add a policy
    /// that applies), or a local rate limit counts tunnels.
    pub(crate) fn checks_tunnels(&self) -> bool {
        self.has_files || self.local_limit.is_some()
    }

    /// The peer authentication mode of `port` and why. Where no PeerAuthentication sets a
    /// mode, the embedded mesh requires mTLS (STRICT), unlike Istio's PERMISSIVE default:
    /// accepting plaintext is something a policy has to ask for.
    pub(crate) fn peer_mode(&self, port: u16) -> (PeerAuthnMode, String) {
        let decision = self.docs.load().peer_authn.mode(port);
        if decision.decided_by == DecidedBy::Default {
            return (
                PeerAuthnMode::Strict,
                format!(
                    "STRICT on port {port}: no PeerAuthentication sets a mode (the mesh's \
                     default; a PERMISSIVE policy lets plaintext in)"
                ),
            );
        }
        (decision.mode, decision.to_string())
    }

    /// Judges a raw TCP tunnel (L4): HTTP-only conditions follow ztunnel's conservative rule.
    pub(crate) fn check_tunnel(&self, request: &InboundRequest<'_>) -> Verdict {
        self.check_l4(request.peer_addr, request.target, Some(request.peer))
    }

    /// Judges a raw TCP connection (L4) from `source` to `target`, with the peer's verified
    /// principal, or none for a plaintext peer.
    pub(crate) fn check_l4(
        &self,
        source: std::net::SocketAddr,
        target: std::net::SocketAddr,
        principal: Option<&mesh_core::SpiffeId>,
    ) -> Verdict {
        let mut attributes = AuthzRequest::tcp(source.ip(), target);
        if let Some(principal) = principal {
            attributes = attributes.with_principal(principal.clone());
        }
        let docs = self.docs.load();
        let decision = docs.authorizer.evaluate(&attributes);
        self.record_decision(&docs, crate::observe::Layer::Tcp, &decision);
        match decision.verdict() {
            // Only the local limiter can answer without waiting; a tunnel counts as one
            // request with no HTTP attributes.
            AuthzVerdict::Allow => match &self.local_limit {
                Some(limiter) => {
                    let limit = limiter.decide(&attributes, SystemClock.now());
                    if limit.is_allowed() {
                        Verdict::Allow
                    } else {
                        if let Some(t) = self.telemetry.get() {
                            t.rate_limited(crate::observe::Layer::Tcp, false, false);
                        }
                        Verdict::Deny(format!("rate limited: {limit:?}"))
                    }
                }
                None => Verdict::Allow,
            },
            AuthzVerdict::Deny => Verdict::Deny(describe(&decision)),
            // An external authorizer judges HTTP requests; a raw tunnel has none to show it.
            AuthzVerdict::AskProviders(_) => Verdict::Deny(
                "a CUSTOM policy applies, and raw TCP tunnels cannot be sent to an external \
                 authorizer; serve HTTP to use CUSTOM"
                    .to_owned(),
            ),
        }
    }

    /// Authenticates and authorizes one HTTP request (L7) served inside a tunnel. Returns the
    /// request to serve (with JWT output headers set and the token removed unless forwarded),
    /// or the answer instead: 401 for an invalid token, 403 when authorization denies.
    pub(crate) async fn check_request(
        &self,
        request: Request<Incoming>,
    ) -> Result<Request<Incoming>, Box<Response<Bytes>>> {
        let Some(peer) = request.extensions().get::<InboundPeer>().cloned() else {
            return Err(Box::new(answer(
                StatusCode::FORBIDDEN,
                "RBAC: access denied",
            )));
        };
        let (mut parts, body) = request.into_parts();
        // One set of documents for the whole request, even if the files change meanwhile.
        let docs = self.docs.load_full();
        let mut auth = None;
        if !docs.authenticator.is_empty() {
            match docs.authenticator.authenticate(&parts, UnixClock.now()) {
                Ok(outcome) => {
                    outcome.apply(&mut parts);
                    auth = outcome.auth;
                }
                Err(e) => {
                    tracing::info!(peer = %shown(&peer), error = %e, "request authentication failed");
                    let mut response = answer(StatusCode::UNAUTHORIZED, e.public_message());
                    response
                        .headers_mut()
                        .insert(WWW_AUTHENTICATE, e.www_authenticate());
                    return Err(Box::new(response));
                }
            }
        }
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut attributes = HttpAttributes::new(parts.method.as_str(), path, host);
        for (name, value) in &parts.headers {
            if let Ok(value) = value.to_str() {
                attributes = attributes.with_header(name.as_str(), value);
            }
        }
        let mut subject = AuthzRequest::tcp(peer.addr.ip(), peer.target);
        if let Some(principal) = &peer.principal {
            subject = subject.with_principal(principal.clone());
        }
        let mut subject = subject.with_http(attributes);
        if let Some(auth) = auth {
            subject = subject.with_auth(auth);
        }
        let decision = docs.authorizer.evaluate(&subject);
        let verdict = decision.verdict();
        if !matches!(verdict, AuthzVerdict::AskProviders(_)) {
            self.record_decision(&docs, crate::observe::Layer::Http, &decision);
        }
        match verdict {
            AuthzVerdict::Allow => {
                self.check_limits(&subject).await?;
                Ok(Request::from_parts(parts, body))
            }
            AuthzVerdict::Deny => {
                let why = describe(&decision);
                tracing::info!(peer = %shown(&peer), reason = %why, "HTTP request denied by policy");
                let mut response = answer(StatusCode::FORBIDDEN, "RBAC: access denied");
                response
                    .extensions_mut()
                    .insert(crate::observe::http::PolicyNote(format!("deny: {why}")));
                Err(Box::new(response))
            }
            AuthzVerdict::AskProviders(delegations) => {
                let providers = delegations.iter().map(|d| d.provider);
                let body = match self.read_body_for_checks(providers, &parts, body).await {
                    Ok(body) => body,
                    Err((why, response)) => {
                        if let Some(first) = delegations.first() {
                            self.record_custom(false, &first.policy.to_string());
                        }
                        tracing::info!(peer = %shown(&peer), reason = %why, "HTTP request refused before the external authorizer");
                        return Err(response);
                    }
                };
                for delegation in delegations {
                    let policy = delegation.policy.to_string();
                    match self
                        .ext_authz
                        .check(delegation.provider, &parts, body.read())
                        .await
                    {
                        CheckOutcome::Allow {
                            upstream,
                            downstream,
                        } => {
                            for (name, value) in upstream {
                                parts.headers.insert(name, value);
                            }
                            if !downstream.is_empty() {
                                let add = parts
                                    .extensions
                                    .get_or_insert_default::<crate::http::AddResponseHeaders>();
                                add.0.extend(downstream);
                            }
                        }
                        CheckOutcome::Deny { response, why } => {
                            return Err(self.refused_by_custom(
                                response,
                                &why,
                                &policy,
                                &peer,
                                delegation.provider,
                                true,
                            ));
                        }
                        CheckOutcome::TooLarge { response, why } => {
                            return Err(self.refused_by_custom(
                                response,
                                &why,
                                &policy,
                                &peer,
                                delegation.provider,
                                false,
                            ));
                        }
                    }
                }
                if let Some(first) = delegations.first() {
                    self.record_custom(true, &first.policy.to_string());
                }
                self.check_limits(&subject).await?;
                let body = match body {
                    BodyForChecks::Untouched(body) => body,
                    BodyForChecks::Read(read) => read.into_incoming().await.map_err(|why| {
                        tracing::warn!(reason = %why, "cannot hand the checked request body on");
                        Box::new(answer(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
                    })?,
                };
                Ok(Request::from_parts(parts, body))
            }
        }
    }
}

/// The request body around CUSTOM checks.
enum BodyForChecks {
    /// No provider asked wants the body: it streams on untouched.
    Untouched(Incoming),
    /// Its start was read for the checks.
    Read(Buffered),
}

impl BodyForChecks {
    fn read(&self) -> Option<&Buffered> {
        match self {
            Self::Untouched(_) => None,
            Self::Read(read) => Some(read),
        }
    }
}

impl Policies {
    /// Reads as much of `body` as the `providers` that include the body in their checks
    /// need (none: untouched). A `Content-Length` over the limit of a provider refusing
    /// partial messages is answered 413 before reading; a body that fails while being read
    /// is answered 400.
    async fn read_body_for_checks<'a>(
        &self,
        providers: impl Iterator<Item = &'a str>,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<BodyForChecks, (String, Box<Response<Bytes>>)> {
        let wanted: Vec<_> = providers
            .filter_map(|p| self.ext_authz.body_settings(p).map(|s| (p, s)))
            .collect();
        // One byte past the limit tells a body of exactly the limit from a larger one.
        let Some(limit) = wanted
            .iter()
            .map(|(_, s)| {
                s.max_request_bytes
                    .saturating_add(usize::from(!s.allow_partial_message))
            })
            .max()
        else {
            return Ok(BodyForChecks::Untouched(body));
        };
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(declared) = declared {
            for (provider, s) in &wanted {
                if !s.allow_partial_message && declared > s.max_request_bytes as u64 {
                    let (mut response, why) =
                        super::ext_authz::too_large(provider, s.max_request_bytes);
                    response
                        .extensions_mut()
                        .insert(crate::observe::http::PolicyNote(format!(
                            "deny: CUSTOM ({why})"
                        )));
                    return Err((why, Box::new(response)));
                }
            }
        }
        Buffered::read(body, limit)
            .await
            .map(BodyForChecks::Read)
            .map_err(|e| {
                (
                    format!("reading the request body for the external authorizer: {e}"),
                    Box::new(answer(StatusCode::BAD_REQUEST, "bad request body")),
                )
            })
    }

    /// Applies the local, then the global rate limit: 429 with `retry-after` and
    /// `x-ratelimit-*` when either refuses (500 when Redis is down and the mode is closed).
    async fn check_limits(&self, subject: &AuthzRequest) -> Result<(), Box<Response<Bytes>>> {
        if let Some(limiter) = &self.local_limit {
            refuse_if_limited(limiter.decide(subject, SystemClock.now()))
                .map_err(|r| self.limited(r, false))?;
        }
        if let Some(limiter) = &self.global_limit {
            refuse_if_limited(limiter.check(subject, SystemClock.now()).await)
                .map_err(|r| self.limited(r, true))?;
        }
        Ok(())
    }
}

fn refuse_if_limited(decision: LimitDecision) -> Result<(), Box<Response<Bytes>>> {
    let Some(status) = decision.http_status() else {
        return Ok(());
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let text = if status == StatusCode::TOO_MANY_REQUESTS {
        "local_rate_limited"
    } else {
        "rate limit service unavailable"
    };
    let mut response = answer(status, text);
    for (name, value) in decision.response_headers() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Err(Box::new(response))
}

/// The peer for logs: its principal, or its address when it has none (plaintext).
fn shown(peer: &InboundPeer) -> String {
    match &peer.principal {
        Some(principal) => principal.to_string(),
        None => format!("plaintext {}", peer.addr),
    }
}

/// A short plain-text answer naming no internals.
fn answer(status: StatusCode, text: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(text.as_bytes()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    response
}

fn describe(decision: &Decision<'_>) -> String {
    match (decision.policy, decision.rule_index) {
        (Some(policy), Some(rule)) => {
            format!(
                "{} ({policy} rule {rule}: {})",
                decision.action_taken, decision.reason
            )
        }
        _ => format!("{} ({})", decision.action_taken, decision.reason),
    }
}

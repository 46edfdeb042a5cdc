//! The security policy files of a workload, compiled and enforced on its inbound tunnels.

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use mesh_core::config::WorkloadSettings;
use mesh_policy::authz::{
    Authorizer, AuthzRequest, HttpAttributes, Verdict as AuthzVerdict, Workload, parse_policies,
};

use super::MeshError;
use crate::{
    hbone::{InboundRequest, Verdict},
    http::PeerIdentity,
};

/// The compiled policies in force. Swappable, so a reload never leaves a window without policy.
pub(crate) struct Policies {
    authorizer: ArcSwap<Authorizer>,
}

impl Policies {
    /// Reads and compiles every policy file; the first invalid file fails the whole load.
    pub(crate) fn load(settings: &WorkloadSettings) -> Result<Self, MeshError> {
        let mut all = Vec::new();
        for path in &settings.policies {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| MeshError::Policy {
                path: shown.clone(),
                reason: format!("cannot read it: {e}"),
            })?;
            let policies = parse_policies(&text).map_err(|e| MeshError::Policy {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            all.extend(policies);
        }
        let mut workload = Workload::new(
            settings
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        );
        for (key, value) in &settings.labels {
            workload = workload.with_label(key.clone(), value.clone());
        }
        let authorizer = Authorizer::new(&all, &workload);
        Ok(Self {
            authorizer: ArcSwap::from_pointee(authorizer),
        })
    }

    /// Whether any policy applies to this workload.
    pub(crate) fn is_empty(&self) -> bool {
        self.authorizer.load().policies().next().is_none()
    }

    /// Judges a raw TCP tunnel (L4): HTTP-only conditions follow ztunnel's conservative rule.
    pub(crate) fn check_tunnel(&self, request: &InboundRequest<'_>) -> Verdict {
        let authz = self.authorizer.load();
        let attributes = AuthzRequest::tcp(request.peer_addr.ip(), request.target)
            .with_principal(request.peer.clone());
        let decision = authz.evaluate(&attributes);
        match decision.verdict() {
            AuthzVerdict::Allow => Verdict::Allow,
            AuthzVerdict::Deny => Verdict::Deny(describe(&decision)),
            // An external authorizer judges HTTP requests; a raw tunnel has none to show it.
            AuthzVerdict::AskProviders(_) => Verdict::Deny(
                "a CUSTOM policy applies, and raw TCP tunnels cannot be sent to an external \
                 authorizer; serve HTTP to use CUSTOM"
                    .to_owned(),
            ),
        }
    }
}

impl Policies {
    /// Judges one HTTP request (L7) served inside a tunnel. `Some(403)` when denied, as
    /// Envoy's RBAC filter answers.
    pub(crate) fn check_request(&self, request: &Request<Incoming>) -> Option<Response<Bytes>> {
        let Some(peer) = request.extensions().get::<PeerIdentity>() else {
            return Some(forbidden("no verified peer identity"));
        };
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                request
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut attributes = HttpAttributes::new(request.method().as_str(), path, host);
        for (name, value) in request.headers() {
            if let Ok(value) = value.to_str() {
                attributes = attributes.with_header(name.as_str(), value);
            }
        }
        let authz = self.authorizer.load();
        let decision = authz.evaluate(
            &AuthzRequest::tcp(peer.addr.ip(), peer.target)
                .with_principal(peer.id.clone())
                .with_http(attributes),
        );
        match decision.verdict() {
            AuthzVerdict::Allow => None,
            AuthzVerdict::Deny => {
                tracing::info!(peer = %peer.id, reason = %describe(&decision), "HTTP request denied by policy");
                Some(forbidden("RBAC: access denied"))
            }
            AuthzVerdict::AskProviders(_) => {
                tracing::warn!(peer = %peer.id, "CUSTOM authorization provider is not configured; denying");
                Some(forbidden(
                    "RBAC: access denied (external authorizer unavailable)",
                ))
            }
        }
    }
}

fn forbidden(text: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(text.as_bytes()));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

fn describe(decision: &mesh_policy::authz::Decision<'_>) -> String {
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

//! The request-path entry point: find tokens, pick the rules of their issuer, verify, and say
//! what to do with the request.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri, request::Parts};
use mesh_core::clock::Timestamp;
use serde_json::Value;

use super::{
    AuthnError, AuthnOptions, AuthnOutcome, JwksStore, RejectReason, RequestMutation, RuleRef,
    extract::tokens_at,
    model::{JwksSource, JwtRule, RequestAuthentication, TokenLocation},
    token::{self, Token},
    validate,
};
use crate::authz::{RequestAuth, Workload};

/// At most this many tokens are tried per request; more cannot make a request pass that the
/// first ones did not, and each costs a signature check.
pub const MAX_TOKENS_PER_REQUEST: usize = 8;

/// Verifies request JWTs with the RequestAuthentication policies that apply to one workload.
///
/// Semantics are Istio's (Envoy `jwt_authn` with `requires_any` over every rule plus
/// `allow_missing`):
///
/// - No token at any configured location: the request passes, unauthenticated
///   ([`AuthnOutcome::auth`] is `None`); authorization decides.
/// - A token is judged only by rules whose `issuer` equals its `iss` and that read tokens at
///   the location it was found in. The first token some rule accepts authenticates the
///   request.
/// - Tokens were present but none was accepted: [`AuthnError`] (answer 401), with the reason
///   of the first failure.
///
/// Build one per policy change; keys fetched from `jwksUri` are read from the shared
/// [`JwksStore`] at each request, so key rotation needs no rebuild.
///
/// ```
/// use mesh_core::clock::Timestamp;
/// use mesh_policy::{authn::jwt::{Authenticator, JwksStore, parse_request_authentications},
///                   authz::Workload};
///
/// let policies = parse_request_authentications(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: { name: jwt, namespace: shop }
/// spec:
///   jwtRules:
///   - issuer: https://issuer.example
///     jwksUri: https://issuer.example/jwks.json
/// "#)?;
/// let store = JwksStore::new();
/// let authn = Authenticator::new(&policies, &Workload::new("shop"), store.clone());
/// // The runtime fetches these into `store` (mesh-client's JWKS refresher does).
/// assert_eq!(authn.remote_jwks()[0].url, "https://issuer.example/jwks.json");
///
/// let request = http::Request::get("/orders").body(())?.into_parts().0;
/// let outcome = authn.authenticate(&request, Timestamp::from_nanos(1_700_000_000_000_000_000))?;
/// assert!(outcome.auth.is_none()); // no token: left to authorization
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Authenticator {
    rules: Vec<CompiledRule>,
    /// Every distinct location, with the rules reading it.
    locations: Vec<(TokenLocation, Vec<usize>)>,
    /// Every header any rule writes (payload and claims), removed unless set by the rule that
    /// verified the request, so clients cannot forge them.
    output_headers: Vec<HeaderName>,
    store: JwksStore,
    options: AuthnOptions,
}

#[derive(Clone, Debug)]
struct CompiledRule {
    at: RuleRef,
    rule: JwtRule,
}

/// A key set the runtime must fetch and keep fresh for an [`Authenticator`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteJwks {
    /// What to GET, and the [`JwksStore`] key to store the keys under.
    pub url: String,
    /// Whether `url` is a key set or an OpenID configuration naming one (`jwks_uri`).
    pub kind: RemoteJwksKind,
    /// How long a fetch may take (the longest `timeout` of the rules using it).
    pub timeout: Duration,
}

/// What a [`RemoteJwks`] URL serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteJwksKind {
    /// A JSON Web Key Set (`jwksUri`).
    Jwks,
    /// An OpenID Provider configuration whose `jwks_uri` names the key set.
    OpenIdConfiguration,
}

impl Authenticator {
    /// Keeps the rules of the `policies` that apply to `workload` (same namespace or the root
    /// namespace, and a matching selector: the scoping of
    /// [`Workload::is_selected_by`](crate::authz::Workload::is_selected_by)), in policy order.
    pub fn new(policies: &[RequestAuthentication], workload: &Workload, store: JwksStore) -> Self {
        let rules: Vec<CompiledRule> = policies
            .iter()
            .filter(|p| applies(workload, p))
            .flat_map(|p| {
                p.rules.iter().enumerate().map(|(i, rule)| CompiledRule {
                    at: RuleRef {
                        policy: p.id.clone(),
                        rule: i,
                        issuer: rule.issuer.clone(),
                    },
                    rule: rule.clone(),
                })
            })
            .collect();
        let mut locations: Vec<(TokenLocation, Vec<usize>)> = Vec::new();
        let mut output_headers: Vec<HeaderName> = Vec::new();
        for (index, compiled) in rules.iter().enumerate() {
            for location in &compiled.rule.locations {
                match locations.iter_mut().find(|(l, _)| l == location) {
                    Some((_, readers)) => readers.push(index),
                    None => locations.push((location.clone(), vec![index])),
                }
            }
            let outputs = (compiled.rule.output_payload_to_header.iter()).chain(
                compiled
                    .rule
                    .output_claim_to_headers
                    .iter()
                    .map(|c| &c.header),
            );
            for header in outputs {
                if !output_headers.contains(header) {
                    output_headers.push(header.clone());
                }
            }
        }
        Self {
            rules,
            locations,
            output_headers,
            store,
            options: AuthnOptions::default(),
        }
    }

    /// Uses other claim-checking options (clock skew, required expiry).
    #[must_use]
    pub fn with_options(mut self, options: AuthnOptions) -> Self {
        self.options = options;
        self
    }

    /// Whether no rule applies (every request passes unauthenticated, and nothing changes).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in force, in the order they are tried.
    pub fn rules(&self) -> impl Iterator<Item = (&RuleRef, &JwtRule)> {
        self.rules.iter().map(|c| (&c.at, &c.rule))
    }

    /// The key sets to fetch into the store (each URL once), for the JWKS refresher.
    pub fn remote_jwks(&self) -> Vec<RemoteJwks> {
        let mut out: Vec<RemoteJwks> = Vec::new();
        for CompiledRule { rule, .. } in &self.rules {
            let kind = match &rule.keys {
                JwksSource::Inline(_) => continue,
                JwksSource::Uri(_) => RemoteJwksKind::Jwks,
                JwksSource::OpenIdDiscovery { .. } => RemoteJwksKind::OpenIdConfiguration,
            };
            let Some(url) = rule.keys.store_key() else {
                continue;
            };
            match out.iter_mut().find(|r| r.url == url) {
                Some(existing) => existing.timeout = existing.timeout.max(rule.timeout),
                None => out.push(RemoteJwks {
                    url,
                    kind,
                    timeout: rule.timeout,
                }),
            }
        }
        out
    }

    /// Authenticates a request from its parts; `now` is Unix time (see
    /// [`UnixClock`](crate::authn::UnixClock)).
    pub fn authenticate(&self, parts: &Parts, now: Timestamp) -> Result<AuthnOutcome, AuthnError> {
        self.authenticate_headers(&parts.headers, &parts.uri, now)
    }

    /// Authenticates a request from its headers and URI; `now` is Unix time.
    pub fn authenticate_headers(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        now: Timestamp,
    ) -> Result<AuthnOutcome, AuthnError> {
        let mut first_error = None;
        let mut tried = 0;
        for (location, readers) in &self.locations {
            for raw in tokens_at(location, headers, uri) {
                if tried == MAX_TOKENS_PER_REQUEST {
                    break;
                }
                tried += 1;
                match self.verify(&raw, location, readers, now) {
                    Ok((rule, token)) => return Ok(self.accepted(rule, location, &token)),
                    Err(err) => {
                        first_error.get_or_insert(err);
                    }
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(AuthnOutcome {
                auth: None,
                verified_by: None,
                mutations: self
                    .output_headers
                    .iter()
                    .map(|h| RequestMutation::RemoveHeader(h.clone()))
                    .collect(),
            }),
        }
    }

    /// Verifies one token found at `location` against the rules reading it.
    fn verify<'t>(
        &self,
        raw: &'t str,
        location: &TokenLocation,
        readers: &[usize],
        now: Timestamp,
    ) -> Result<(usize, Token<'t>), AuthnError> {
        let reject = |reason, rule: Option<&RuleRef>| {
            AuthnError::new(reason, location.clone(), rule.cloned())
        };
        let token = token::parse(raw).map_err(|reason| reject(reason, None))?;
        let Some(issuer) = token.issuer() else {
            return Err(reject(RejectReason::UnknownIssuer(None), None));
        };
        let mut first_error = None;
        for &index in readers {
            let CompiledRule { at, rule } = &self.rules[index];
            if rule.issuer != issuer {
                continue;
            }
            let keys = match &rule.keys {
                JwksSource::Inline(jwks) => Some(jwks.clone()),
                remote => remote.store_key().and_then(|key| self.store.get(&key)),
            };
            let result = match keys {
                Some(keys) => validate::check(&token, rule, &keys, now.as_nanos(), &self.options),
                None => Err(RejectReason::KeysUnavailable(
                    rule.keys.store_key().unwrap_or_default(),
                )),
            };
            match result {
                Ok(()) => return Ok((index, token)),
                Err(reason) => {
                    first_error.get_or_insert_with(|| reject(reason, Some(at)));
                }
            }
        }
        Err(first_error
            .unwrap_or_else(|| reject(RejectReason::UnknownIssuer(Some(issuer.to_owned())), None)))
    }

    /// The outcome for a token rule `index` accepted at `location`.
    fn accepted(&self, index: usize, location: &TokenLocation, token: &Token<'_>) -> AuthnOutcome {
        let CompiledRule { at, rule } = &self.rules[index];
        let mut mutations = Vec::new();
        if !rule.forward_original_token {
            mutations.push(match location {
                TokenLocation::Header { name, .. } => RequestMutation::RemoveHeader(name.clone()),
                TokenLocation::QueryParam(p) => RequestMutation::RemoveQueryParam(p.clone()),
                TokenLocation::Cookie(c) => RequestMutation::RemoveCookie(c.clone()),
            });
        }
        let mut set = Vec::new();
        if let Some(header) = &rule.output_payload_to_header {
            if let Ok(value) = HeaderValue::from_str(token.payload_b64) {
                set.push((header.clone(), value));
            }
        }
        for claim in &rule.output_claim_to_headers {
            if let Some(value) = claim_value(&token.claims, &claim.claim) {
                set.push((claim.header.clone(), value));
            }
        }
        for header in &self.output_headers {
            if !set.iter().any(|(name, _)| name == header) {
                mutations.push(RequestMutation::RemoveHeader(header.clone()));
            }
        }
        mutations.extend(
            set.into_iter()
                .map(|(n, v)| RequestMutation::SetHeader(n, v)),
        );
        AuthnOutcome {
            auth: Some(RequestAuth::from_claims(Value::Object(
                token.claims.clone(),
            ))),
            verified_by: Some(at.clone()),
            mutations,
        }
    }
}

/// A claim (`a.b` for nested objects) as a header value: strings as they are, numbers and
/// booleans in JSON form, lists of those joined with `,`. Objects, and values that cannot be
/// header values, give nothing.
fn claim_value(claims: &serde_json::Map<String, Value>, path: &str) -> Option<HeaderValue> {
    let mut segments = path.split('.');
    let mut value = claims.get(segments.next()?)?;
    for segment in segments {
        value = value.get(segment)?;
    }
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let text = match value {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        other => scalar(other)?,
    };
    HeaderValue::from_str(&text).ok()
}

/// Istio's scoping: the workload's namespace or the root namespace, and a selector whose
/// labels the workload has.
fn applies(workload: &Workload, policy: &RequestAuthentication) -> bool {
    let ns = policy.id.namespace.as_str();
    if ns != workload.namespace && ns != workload.root_namespace {
        return false;
    }
    policy.selector.as_ref().is_none_or(|selector| {
        selector
            .iter()
            .all(|(k, v)| workload.labels.get(k).is_some_and(|have| have == v))
    })
}

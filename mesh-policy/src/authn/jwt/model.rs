//! Validated RequestAuthentication documents: what a policy says, with every value parsed.
//!
//! Produced only by [`parse_request_authentications`](super::parse_request_authentications),
//! after Istio's own validation, so the authenticator never meets an empty issuer, a header
//! name that is not one, or inline keys that do not parse.

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use http::HeaderName;

use super::jwks::Jwks;
use crate::authz::PolicyId;

/// Istio's default for `jwtRules[].timeout`: how long a JWKS fetch may take.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// One `security.istio.io` RequestAuthentication, validated.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RequestAuthentication {
    /// `namespace/name`.
    pub id: PolicyId,
    /// `spec.selector.matchLabels`; `None` (or empty) selects every workload in scope.
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.jwtRules`, in document order. A request's token must be valid for one of them.
    pub rules: Vec<JwtRule>,
}

/// One entry of `spec.jwtRules`: which issuer is trusted, where its tokens are found, how its
/// keys are obtained, and what to tell the application about a verified token.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JwtRule {
    /// `issuer`: the token's `iss` must equal it.
    pub issuer: String,
    /// `audiences`: when non-empty, the token's `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// Where the verification keys come from (`jwks`, `jwksUri`, or OpenID discovery).
    pub keys: JwksSource,
    /// Where tokens are looked for, with Istio's default (`Authorization: Bearer` and the
    /// `access_token` query parameter) already filled in when the rule names none.
    pub locations: Vec<TokenLocation>,
    /// `outputPayloadToHeader`: the header that receives the verified payload (base64url).
    pub output_payload_to_header: Option<HeaderName>,
    /// `outputClaimToHeaders`: claims copied into headers for the application.
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// `forwardOriginalToken`: keep the token in the request (default: it is removed).
    pub forward_original_token: bool,
    /// `timeout`: how long a JWKS fetch for this rule may take ([`DEFAULT_JWKS_TIMEOUT`]).
    pub timeout: Duration,
}

/// Where a rule's verification keys come from.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum JwksSource {
    /// `jwks`: a key set written into the policy, parsed at load time.
    Inline(Arc<Jwks>),
    /// `jwksUri`: a key set fetched (and refreshed) by the runtime into a
    /// [`JwksStore`](super::JwksStore) under this URL.
    Uri(String),
    /// Neither was given: as istiod does, the keys are found through the issuer's OpenID
    /// configuration (`<issuer>/.well-known/openid-configuration`, its `jwks_uri`), stored
    /// under [`JwksSource::store_key`].
    OpenIdDiscovery {
        /// The issuer URL the discovery document is read from.
        issuer: String,
    },
}

impl JwksSource {
    /// The key under which the runtime stores fetched keys for this source, `None` for inline
    /// keys: the JWKS URL, or the issuer's OpenID configuration URL.
    pub fn store_key(&self) -> Option<String> {
        match self {
            Self::Inline(_) => None,
            Self::Uri(uri) => Some(uri.clone()),
            Self::OpenIdDiscovery { issuer } => Some(openid_configuration_url(issuer)),
        }
    }
}

/// `<issuer>/.well-known/openid-configuration`, as istiod builds it (one trailing `/` of the
/// issuer dropped first).
pub fn openid_configuration_url(issuer: &str) -> String {
    let issuer = issuer.strip_suffix('/').unwrap_or(issuer);
    format!("{issuer}/.well-known/openid-configuration")
}

/// A place in the request a token is read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenLocation {
    /// `fromHeaders[]`: a header whose value starts with `prefix` (compared ignoring ASCII
    /// case, so `bearer x` matches `Bearer `); the token is the rest, trimmed.
    Header {
        /// The header's name.
        name: HeaderName,
        /// What precedes the token (`Bearer `), possibly empty.
        prefix: String,
    },
    /// `fromParams[]`: a query parameter (percent-decoded).
    QueryParam(String),
    /// `fromCookies[]`: a cookie in the `Cookie` header.
    Cookie(String),
}

impl TokenLocation {
    /// Istio's default locations when a rule names none: `Authorization: Bearer <token>` and
    /// the `access_token` query parameter.
    pub fn istio_defaults() -> Vec<Self> {
        vec![
            Self::Header {
                name: http::header::AUTHORIZATION,
                prefix: "Bearer ".to_owned(),
            },
            Self::QueryParam("access_token".to_owned()),
        ]
    }
}

impl fmt::Display for TokenLocation {
    /// `header authorization`, `query parameter access_token`, `cookie session`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header { name, .. } => write!(f, "header {name}"),
            Self::QueryParam(name) => write!(f, "query parameter {name}"),
            Self::Cookie(name) => write!(f, "cookie {name}"),
        }
    }
}

/// One `outputClaimToHeaders` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToHeader {
    /// The header to set.
    pub header: HeaderName,
    /// The claim to copy; `a.b` reads the nested claim `b` of object `a`.
    pub claim: String,
}

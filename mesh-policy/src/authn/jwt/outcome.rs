//! What authentication answers: a pass (with or without a verified token) plus the request
//! changes to apply, or a rejection with a typed reason.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header::COOKIE, request::Parts};
use thiserror::Error;

use super::{
    extract::{cookie_pairs, query_pairs},
    model::TokenLocation,
};
use crate::authz::{PolicyId, RequestAuth};

/// A request that passed authentication.
///
/// `auth` is `None` when the request carried no token at all: Istio lets such a request
/// through authentication and leaves it to authorization (require `requestPrincipals` there
/// to insist on a token). Apply [`mutations`](Self::mutations) before forwarding the request
/// ([`AuthnOutcome::apply`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AuthnOutcome {
    /// The verified token's attributes for authorization (`request.auth.*`).
    pub auth: Option<RequestAuth>,
    /// Which rule verified the token, when one did.
    pub verified_by: Option<RuleRef>,
    /// Changes to make to the request: output headers set, the token removed unless
    /// `forwardOriginalToken`, and spoofed copies of output headers removed.
    pub mutations: Vec<RequestMutation>,
}

impl AuthnOutcome {
    /// Whether a token was verified.
    pub fn is_authenticated(&self) -> bool {
        self.auth.is_some()
    }

    /// Applies [`mutations`](Self::mutations) to a request's parts.
    pub fn apply(&self, parts: &mut Parts) {
        self.apply_to(&mut parts.headers, &mut parts.uri);
    }

    /// Applies [`mutations`](Self::mutations) to headers and URI.
    pub fn apply_to(&self, headers: &mut HeaderMap, uri: &mut Uri) {
        for mutation in &self.mutations {
            mutation.apply(headers, uri);
        }
    }
}

/// Identifies a `jwtRules` entry: the policy and the rule's index in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// The RequestAuthentication's `namespace/name`.
    pub policy: PolicyId,
    /// The index in `spec.jwtRules`.
    pub rule: usize,
    /// The rule's issuer.
    pub issuer: String,
}

impl fmt::Display for RuleRef {
    /// `shop/jwt jwtRules[0] (https://issuer)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} jwtRules[{}] ({})",
            self.policy, self.rule, self.issuer
        )
    }
}

/// One change to the request before it reaches the application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestMutation {
    /// Set a header, replacing any value the client sent.
    SetHeader(HeaderName, HeaderValue),
    /// Remove every value of a header.
    RemoveHeader(HeaderName),
    /// Remove a query parameter (every occurrence).
    RemoveQueryParam(String),
    /// Remove a cookie from the `Cookie` headers.
    RemoveCookie(String),
}

impl RequestMutation {
    /// Applies this change.
    pub fn apply(&self, headers: &mut HeaderMap, uri: &mut Uri) {
        match self {
            Self::SetHeader(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            Self::RemoveHeader(name) => {
                headers.remove(name);
            }
            Self::RemoveQueryParam(param) => remove_query_param(uri, param),
            Self::RemoveCookie(cookie) => remove_cookie(headers, cookie),
        }
    }
}

fn remove_query_param(uri: &mut Uri, param: &str) {
    let Some(query) = uri.query() else { return };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let mut one = query_pairs(pair);
            one.next().is_none_or(|(name, _)| name != param)
        })
        .collect();
    let path = uri.path();
    let path_and_query = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    // The new value is a subset of a path-and-query that already parsed, so it parses too.
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(new_uri) = Uri::from_parts(parts) {
            *uri = new_uri;
        }
    }
}

fn remove_cookie(headers: &mut HeaderMap, cookie: &str) {
    let values: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| {
            // A value that is not text cannot hold the token; keep it as it is.
            let Ok(text) = value.to_str() else {
                return Some(value.clone());
            };
            let kept: Vec<String> = cookie_pairs(text)
                .filter(|(name, _)| *name != cookie)
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            if kept.is_empty() {
                None
            } else {
                HeaderValue::from_str(&kept.join("; ")).ok()
            }
        })
        .collect();
    headers.remove(COOKIE);
    for value in values {
        headers.append(COOKIE, value);
    }
}

/// A request carried a token, and no rule accepted it: answer 401.
///
/// [`Display`](fmt::Display) is for logs (it names the location and rule); the response body
/// should be [`AuthnError::public_message`], which names no configuration.
#[derive(Clone, Debug, PartialEq, Error)]
#[error("JWT in {} rejected{}: {}", .0.location, .0.rule.as_ref().map(|r| format!(" by {r}")).unwrap_or_default(), .0.reason)]
pub struct AuthnError(Box<Details>);

#[derive(Clone, Debug, PartialEq)]
struct Details {
    reason: RejectReason,
    location: TokenLocation,
    rule: Option<RuleRef>,
}

impl AuthnError {
    pub(crate) fn new(
        reason: RejectReason,
        location: TokenLocation,
        rule: Option<RuleRef>,
    ) -> Self {
        Self(Box::new(Details {
            reason,
            location,
            rule,
        }))
    }

    /// Why the token was refused.
    pub fn reason(&self) -> &RejectReason {
        &self.0.reason
    }

    /// Where the token was found.
    pub fn location(&self) -> &TokenLocation {
        &self.0.location
    }

    /// The rule that judged it, when the token's issuer matched one.
    pub fn rule(&self) -> Option<&RuleRef> {
        self.0.rule.as_ref()
    }

    /// 401 Unauthorized, as Envoy answers.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// The `WWW-Authenticate` value to send with the 401 (RFC 6750:
    /// `Bearer error="invalid_token"`).
    pub fn www_authenticate(&self) -> HeaderValue {
        HeaderValue::from_static("Bearer error=\"invalid_token\"")
    }

    /// A short body for the 401, in Envoy's words (`Jwt is expired`), naming no internals.
    pub fn public_message(&self) -> &'static str {
        self.0.reason.public_message()
    }
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not a JWT: wrong number of segments, not base64url, not JSON, no `alg`.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's `alg` is not one verified here (`none`, HMAC, unknown names).
    #[error(
        "algorithm {0:?} is not accepted (RS256/384/512, PS256/384/512, ES256, ES384 and EdDSA are)"
    )]
    UnsupportedAlgorithm(String),
    /// No rule trusts the token's `iss` at the location it was found in.
    #[error("{}", match .0 { Some(iss) => format!("issuer {iss:?} is not configured for this location"), None => "the token has no `iss` claim".to_owned() })]
    UnknownIssuer(Option<String>),
    /// `exp` (plus the allowed clock skew) is in the past.
    #[error("token expired at {exp} (now {now}, clock skew allowed {skew_secs} s)")]
    Expired {
        /// The token's `exp`, seconds since the Unix epoch.
        exp: f64,
        /// The time judged at, seconds since the Unix epoch.
        now: u64,
        /// The allowed clock skew.
        skew_secs: u64,
    },
    /// `nbf` (minus the allowed clock skew) is in the future.
    #[error("token not valid before {nbf} (now {now}, clock skew allowed {skew_secs} s)")]
    NotYetValid {
        /// The token's `nbf`, seconds since the Unix epoch.
        nbf: f64,
        /// The time judged at, seconds since the Unix epoch.
        now: u64,
        /// The allowed clock skew.
        skew_secs: u64,
    },
    /// `exp` or `nbf` is not a number.
    #[error("claim `{0}` is not a number of seconds")]
    BadTimeClaim(&'static str),
    /// The token has no `exp`, and expiry is required ([`AuthnOptions`](super::AuthnOptions)).
    #[error("the token has no `exp` claim and tokens must expire")]
    MissingExpiration,
    /// The rule lists audiences and the token's `aud` holds none of them.
    #[error("audiences {token:?} are not allowed (expected one of {allowed:?})")]
    AudienceMismatch {
        /// The token's `aud` values.
        token: Vec<String>,
        /// The rule's `audiences`.
        allowed: Vec<String>,
    },
    /// The issuer's keys hold none for this token's `alg` (and `kid`, if given).
    #[error("no key in the issuer's key set matches alg {alg}{}", .kid.as_ref().map(|k| format!(" and kid {k:?}")).unwrap_or_default())]
    NoMatchingKey {
        /// The token's `alg`.
        alg: String,
        /// The token's `kid`.
        kid: Option<String>,
    },
    /// No candidate key verifies the signature.
    #[error("signature verification failed")]
    BadSignature,
    /// The issuer's remote key set has not been fetched (yet, or ever): fail closed.
    #[error(
        "the issuer's keys from {0} are not available (not fetched yet, or every fetch failed)"
    )]
    KeysUnavailable(String),
}

impl RejectReason {
    /// Envoy's response body for this reason.
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "Jwt is not in the form of Header.Payload.Signature",
            Self::UnsupportedAlgorithm(_) => "Jwt algorithm is not supported",
            Self::UnknownIssuer(_) => "Jwt issuer is not configured",
            Self::Expired { .. } => "Jwt is expired",
            Self::NotYetValid { .. } => "Jwt not yet valid",
            Self::BadTimeClaim(_) => "Jwt time claims are malformed",
            Self::MissingExpiration => "Jwt doesn't have expiration",
            Self::AudienceMismatch { .. } => "Audiences in Jwt are not allowed",
            Self::NoMatchingKey { .. } => "Jwks doesn't have key to match kid or alg from Jwt",
            Self::BadSignature => "Jwt verification fails",
            Self::KeysUnavailable(_) => "Jwks remote fetch is failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Uri};

    use super::RequestMutation;

    #[test]
    fn removing_query_params_and_cookies() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", HeaderValue::from_static("a=1; jwt=t; b=2"));
        headers.append("cookie", HeaderValue::from_static("jwt=t"));
        headers.append("cookie", HeaderValue::from_bytes(b"raw=\xff").unwrap());
        let mut uri: Uri = "http://h/p?x=1&access_token=t&y".parse().unwrap();
        RequestMutation::RemoveQueryParam("access_token".into()).apply(&mut headers, &mut uri);
        RequestMutation::RemoveCookie("jwt".into()).apply(&mut headers, &mut uri);
        assert_eq!(uri.to_string(), "http://h/p?x=1&y");
        let cookies: Vec<_> = headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2".as_bytes(), b"raw=\xff"]);
        let mut only: Uri = "/p?access_token=t".parse().unwrap();
        RequestMutation::RemoveQueryParam("access_token".into()).apply(&mut headers, &mut only);
        assert_eq!(only.to_string(), "/p");
    }
}

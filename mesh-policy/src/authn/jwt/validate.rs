//! Judging one parsed token against one rule: time, audience, then the signature.
//!
//! The order is Envoy's: the cheap claim checks come first, so an expired or misaddressed
//! token costs no public-key operation.

use std::time::Duration;

use serde_json::Value;

use super::{RejectReason, jwks::Jwks, model::JwtRule, token::Token};

/// How claims are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthnOptions {
    /// Allowed clock skew for `exp` and `nbf`: a token is expired once `now > exp + skew` and
    /// not yet valid while `now + skew < nbf`. Default 60 s, Envoy's `clock_skew_seconds`
    /// default, which Istio leaves unchanged.
    pub clock_skew: Duration,
    /// Refuse tokens without `exp`. Default `false`: Istio does not set Envoy's
    /// `require_expiration`, so tokens without `exp` never expire.
    pub require_expiration: bool,
}

impl Default for AuthnOptions {
    fn default() -> Self {
        Self {
            clock_skew: Duration::from_secs(60),
            require_expiration: false,
        }
    }
}

impl AuthnOptions {
    /// These options with another clock skew.
    #[must_use]
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// These options, refusing (or not) tokens without `exp`.
    #[must_use]
    pub fn with_require_expiration(mut self, require: bool) -> Self {
        self.require_expiration = require;
        self
    }
}

/// Checks `token` (already matched to `rule` by issuer) at `now_nanos` (Unix time).
pub(crate) fn check(
    token: &Token<'_>,
    rule: &JwtRule,
    keys: &Jwks,
    now_nanos: u64,
    options: &AuthnOptions,
) -> Result<(), RejectReason> {
    check_time(token, now_nanos, options)?;
    check_audience(token, rule)?;
    check_signature(token, keys)
}

fn check_time(
    token: &Token<'_>,
    now_nanos: u64,
    options: &AuthnOptions,
) -> Result<(), RejectReason> {
    #[allow(
        clippy::cast_precision_loss,
        reason = "sub-microsecond precision is irrelevant"
    )]
    let now = now_nanos as f64 / 1e9;
    let skew = options.clock_skew.as_secs_f64();
    let now_secs = now_nanos / 1_000_000_000;
    let skew_secs = options.clock_skew.as_secs();
    match time_claim(token, "exp")? {
        Some(exp) if now > exp + skew => {
            return Err(RejectReason::Expired {
                exp,
                now: now_secs,
                skew_secs,
            });
        }
        None if options.require_expiration => return Err(RejectReason::MissingExpiration),
        _ => {}
    }
    match time_claim(token, "nbf")? {
        Some(nbf) if now + skew < nbf => Err(RejectReason::NotYetValid {
            nbf,
            now: now_secs,
            skew_secs,
        }),
        _ => Ok(()),
    }
}

/// A NumericDate claim (RFC 7519: seconds, possibly fractional).
fn time_claim(token: &Token<'_>, name: &'static str) -> Result<Option<f64>, RejectReason> {
    match token.claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(RejectReason::BadTimeClaim(name)),
        Some(_) => Err(RejectReason::BadTimeClaim(name)),
    }
}

/// When the rule lists audiences, the token's `aud` (a string or a list) must hold one.
fn check_audience(token: &Token<'_>, rule: &JwtRule) -> Result<(), RejectReason> {
    if rule.audiences.is_empty() {
        return Ok(());
    }
    let token_audiences: Vec<&str> = match token.claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if token_audiences
        .iter()
        .any(|aud| rule.audiences.iter().any(|allowed| allowed == aud))
    {
        Ok(())
    } else {
        Err(RejectReason::AudienceMismatch {
            token: token_audiences.iter().map(|a| (*a).to_owned()).collect(),
            allowed: rule.audiences.clone(),
        })
    }
}

/// Tries every key that fits the token's `alg` and `kid`, in set order.
fn check_signature(token: &Token<'_>, keys: &Jwks) -> Result<(), RejectReason> {
    let mut candidates = keys.candidates(token.alg, token.kid.as_deref()).peekable();
    if candidates.peek().is_none() {
        return Err(RejectReason::NoMatchingKey {
            alg: format!("{:?}", token.alg),
            kid: token.kid.clone(),
        });
    }
    for key in candidates {
        let verified = jsonwebtoken::crypto::verify(
            token.signature_b64,
            token.signing_input.as_bytes(),
            key.decoding_key(),
            token.alg,
        );
        if matches!(verified, Ok(true)) {
            return Ok(());
        }
    }
    Err(RejectReason::BadSignature)
}

//! Istio `RequestAuthentication` (`security.istio.io/v1` and `v1beta1`): JWT request
//! authentication as a pure engine.
//!
//! 1. [`parse_request_authentications`] reads policy documents strictly (unknown fields and
//!    values istiod refuses are errors naming document, policy and field path, as for
//!    AuthorizationPolicy; inline `jwks` must parse).
//! 2. [`Authenticator::new`] keeps the `jwtRules` of the policies that apply to one workload
//!    and reads remote keys from a shared [`JwksStore`]; [`Authenticator::remote_jwks`] lists
//!    what the runtime must fetch (`jwksUri`, or OpenID discovery from the issuer when a rule
//!    has neither `jwks` nor `jwksUri`, as istiod does).
//! 3. [`Authenticator::authenticate`] takes the request's parts and the current Unix time and
//!    answers [`AuthnOutcome`] (pass; with [`RequestAuth`](crate::authz::RequestAuth) when a
//!    token was verified, plus [`RequestMutation`]s to apply) or [`AuthnError`] (answer 401)
//!    with a typed [`RejectReason`].
//!
//! Behaviour, and where it comes from:
//!
//! - Token locations: `fromHeaders` (prefix compared ignoring ASCII case), `fromParams`,
//!   `fromCookies`; with none of them, Istio's defaults `Authorization: Bearer <token>` and
//!   `?access_token=`.
//! - Algorithms: RS256/384/512, PS256/384/512, ES256, ES384, EdDSA (Ed25519), verified by
//!   `jsonwebtoken` on aws-lc-rs. `alg: none`, HMAC and anything else are refused, so a public
//!   key can never be used as an HMAC secret. Keys are chosen by `kid` (keys without one are
//!   tried too), key type and the key's own `alg`.
//! - Claims: `iss` must equal the rule's `issuer`; with `audiences`, `aud` must hold one;
//!   `exp`/`nbf` are judged with 60 s of clock skew (Envoy's default, which Istio keeps), `exp`
//!   optional as in Istio ([`AuthnOptions`] changes both).
//! - Output: `outputPayloadToHeader` (the payload segment, base64url as sent),
//!   `outputClaimToHeaders` (strings, numbers, booleans, lists joined with `,`; `a.b` for
//!   nested claims), and the token removed from its header, query parameter or cookie unless
//!   `forwardOriginalToken`.
//!
//! Deliberate differences from Istio/Envoy: headers named in any rule's outputs are removed
//! from requests that do not set them (Envoy leaves a client's forged `x-jwt-payload` in
//! place when no token is sent); tokens in query parameters and cookies are removed too unless
//! forwarded (Envoy removes only headers); `jwks` together with `jwksUri` is refused (Istio
//! silently ignores `jwksUri`); `targetRef` is refused as for AuthorizationPolicy.

mod authenticator;
mod document;
mod extract;
mod jwks;
mod load;
mod model;
mod outcome;
mod store;
mod token;
mod validate;

pub use authenticator::{Authenticator, MAX_TOKENS_PER_REQUEST, RemoteJwks, RemoteJwksKind};
pub use jwks::{Jwks, JwksError, JwksKey, KeyKind, SkippedKey};
pub use load::parse_request_authentications;
pub use model::{
    ClaimToHeader, DEFAULT_JWKS_TIMEOUT, JwksSource, JwtRule, RequestAuthentication, TokenLocation,
    openid_configuration_url,
};
pub use outcome::{AuthnError, AuthnOutcome, RejectReason, RequestMutation, RuleRef};
pub use store::JwksStore;
pub use validate::AuthnOptions;

/// The JOSE algorithm names, re-exported so callers need no direct `jsonwebtoken` dependency
/// to inspect [`JwksKey::alg`].
pub use jsonwebtoken::Algorithm;

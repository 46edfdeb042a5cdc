//! Request authentication I/O: fetching and refreshing the JWT key sets (`jwksUri`, or the
//! issuer's OpenID configuration) that [`mesh_policy::authn::jwt`] verifies tokens with.
//!
//! The decision engine is pure and reads keys from a shared
//! [`JwksStore`](mesh_policy::authn::JwksStore); this module fills it:
//!
//! - [`JwksClient`] does one fetch: HTTP/1.1 or HTTP/2 over hyper, HTTPS with rustls
//!   (aws-lc-rs) trusting the platform's roots by default ([`JwksTls`] says why and how to pin a
//!   private CA), status 200 required, a body limit, and the rule's `timeout` (default 5 s, as
//!   Istio) over the whole exchange including OpenID discovery.
//! - [`JwksRefresher`] keeps a task per URL: fetch at start, then every 20 minutes (istiod's
//!   default), failures retried with full-jitter backoff from 1 s doubling up to the refresh
//!   interval; a failed fetch never removes keys, so the last good set stays in force through
//!   an identity provider outage. Until the first success, tokens of that issuer are refused
//!   (fail closed). [`JwksRefresher::status`] reports each URL's state.
//!
//! Not here: wiring into the inbound server (it calls
//! [`Authenticator::authenticate`](mesh_policy::authn::Authenticator::authenticate) per
//! request and answers 401 on error).

mod fetch;
mod refresh;

pub use fetch::{DEFAULT_MAX_BODY_BYTES, JwksClient, JwksFetchError, JwksTls};
pub use refresh::{DEFAULT_REFRESH_INTERVAL, JwksRefreshConfig, JwksRefresher, JwksSourceStatus};

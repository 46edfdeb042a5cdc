//! One JWKS fetch over HTTP(S): GET, status and size checks, a deadline, and parsing, plus
//! OpenID discovery (`/.well-known/openid-configuration` -> `jwks_uri` -> key set).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use mesh_policy::authn::jwt::{Jwks, JwksError, RemoteJwks, RemoteJwksKind};
use rustls::{RootCertStore, pki_types::CertificateDer};
use thiserror::Error;

/// Largest key set or OpenID configuration accepted (real ones are a few KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Which certificate authorities an HTTPS JWKS endpoint may chain to.
///
/// The default trusts the platform's store (what istiod's Go HTTP client uses, and where
/// operators already install their internal CAs, so an in-house identity provider works with
/// no extra configuration) and nothing else. Pinning a private CA instead: set
/// `platform_roots: false` and list it in `extra_roots`. A bundled Mozilla list (webpki-roots)
/// was not chosen: it ignores the operator's store and ages with the binary.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JwksTls {
    /// Trust the platform's certificate store (`/etc/ssl/certs` and friends, via
    /// rustls-native-certs; `SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured).
    pub platform_roots: bool,
    /// Further trust anchors (DER), e.g. a private identity provider's CA.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for JwksTls {
    fn default() -> Self {
        Self {
            platform_roots: true,
            extra_roots: Vec::new(),
        }
    }
}

impl JwksTls {
    /// Trust exactly these roots (no platform store).
    pub fn only(roots: Vec<CertificateDer<'static>>) -> Self {
        Self {
            platform_roots: false,
            extra_roots: roots,
        }
    }
}

/// Why a fetch failed. The refresher keeps the last good keys whatever the reason.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JwksFetchError {
    /// The URL cannot be fetched (not absolute http/https).
    #[error("bad JWKS URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No complete response within the rule's `timeout`.
    #[error("GET {url}: no complete response within {timeout:?} (jwtRules[].timeout)")]
    Timeout {
        /// The URL.
        url: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// Connecting, TLS, or the HTTP exchange failed.
    #[error("GET {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// The underlying error, with its causes.
        reason: String,
    },
    /// The server answered something other than 200.
    #[error("GET {url}: HTTP status {status}; expected 200")]
    Status {
        /// The URL.
        url: String,
        /// The status received.
        status: StatusCode,
    },
    /// The body exceeded the size limit.
    #[error("GET {url}: response body larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The body is not a usable key set.
    #[error("GET {url}: not a usable key set: {source}")]
    Jwks {
        /// The URL.
        url: String,
        /// Why the set was refused.
        source: JwksError,
    },
    /// The body is not an OpenID configuration with an http(s) `jwks_uri`.
    #[error("GET {url}: not an OpenID configuration with a usable jwks_uri: {reason}")]
    Discovery {
        /// The configuration URL.
        url: String,
        /// What is missing or wrong.
        reason: String,
    },
}

/// An HTTP(S) client for key sets: HTTP/1.1 and HTTP/2 (ALPN), rustls with aws-lc-rs.
#[derive(Clone, Debug)]
pub struct JwksClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    max_body_bytes: usize,
}

impl JwksClient {
    /// A client trusting `tls`'s roots. Platform certificates that fail to load are skipped
    /// (and logged); the client is still usable for plain HTTP and the remaining roots.
    pub fn new(tls: &JwksTls) -> Self {
        let mut roots = RootCertStore::empty();
        if tls.platform_roots {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, "JWKS client: cannot read a platform certificate");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "JWKS client: platform roots loaded");
        }
        let (_, ignored) = roots.add_parsable_certificates(tls.extra_roots.iter().cloned());
        if ignored > 0 {
            tracing::warn!(
                ignored,
                "JWKS client: extra roots that are not CA certificates were skipped"
            );
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
        // The aws-lc-rs provider supports the default versions; fall back to rustls's own
        // default provider only if that ever changed.
        let config = config.unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        });
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Uses another body size limit.
    #[must_use]
    pub fn with_max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Fetches what `source` names: the key set, or the OpenID configuration and then the key
    /// set its `jwks_uri` names. The whole exchange is bounded by `source.timeout`.
    pub async fn fetch(&self, source: &RemoteJwks) -> Result<Jwks, JwksFetchError> {
        let timeout = source.timeout;
        let work = async {
            match source.kind {
                RemoteJwksKind::OpenIdConfiguration => {
                    let jwks_uri = self.discover(&source.url).await?;
                    self.fetch_jwks(&jwks_uri).await
                }
                _ => self.fetch_jwks(&source.url).await,
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(JwksFetchError::Timeout {
                    url: source.url.clone(),
                    timeout,
                })
            })
    }

    /// GETs and parses one key set (no deadline of its own: see [`JwksClient::fetch`]).
    pub async fn fetch_jwks(&self, url: &str) -> Result<Jwks, JwksFetchError> {
        let body = self.get(url).await?;
        let text = String::from_utf8_lossy(&body);
        Jwks::parse(&text).map_err(|source| JwksFetchError::Jwks {
            url: url.to_owned(),
            source,
        })
    }

    /// Reads `jwks_uri` from an OpenID configuration.
    async fn discover(&self, url: &str) -> Result<String, JwksFetchError> {
        let body = self.get(url).await?;
        let discovery = |reason: &str| JwksFetchError::Discovery {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let config: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| discovery(&format!("not JSON: {e}")))?;
        let jwks_uri = config
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| discovery("no `jwks_uri` string"))?;
        match jwks_uri.parse::<Uri>() {
            Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) => {
                Ok(jwks_uri.to_owned())
            }
            _ => Err(discovery(&format!(
                "jwks_uri {jwks_uri:?} is not an http(s) URL"
            ))),
        }
    }

    async fn get(&self, url: &str) -> Result<Bytes, JwksFetchError> {
        let uri: Uri = url.parse().map_err(|e| JwksFetchError::BadUrl {
            url: url.to_owned(),
            reason: format!("{e}"),
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(JwksFetchError::BadUrl {
                url: url.to_owned(),
                reason: "expected an absolute http or https URL".to_owned(),
            });
        }
        let request = http::Request::get(uri)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("mesh-client/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| JwksFetchError::BadUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let response =
            self.client
                .request(request)
                .await
                .map_err(|e| JwksFetchError::Transport {
                    url: url.to_owned(),
                    reason: error_chain(&e),
                })?;
        if response.status() != StatusCode::OK {
            return Err(JwksFetchError::Status {
                url: url.to_owned(),
                status: response.status(),
            });
        }
        let limit = self.max_body_bytes;
        let collected = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    JwksFetchError::TooLarge {
                        url: url.to_owned(),
                        limit,
                    }
                } else {
                    JwksFetchError::Transport {
                        url: url.to_owned(),
                        reason: format!("reading the body: {e}"),
                    }
                }
            })?;
        Ok(collected.to_bytes())
    }
}

/// An error and its causes, `: `-separated (hyper's top-level message alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

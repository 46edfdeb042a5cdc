//! What the engine is told about a connection or request.

use std::{
    borrow::Cow,
    net::{IpAddr, SocketAddr},
};

use mesh_core::SpiffeId;

/// A connection (raw TCP tunnel) or HTTP request to authorize, as the inbound side saw it.
///
/// `http: None` means a raw TCP tunnel: only connection attributes exist, and rules that need
/// HTTP attributes are judged conservatively (see [`Authorizer`](super::Authorizer)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AuthzRequest {
    /// The peer's verified identity; `None` for plaintext peers.
    pub source_principal: Option<SpiffeId>,
    /// The peer's address (Istio's `source.ip`, `ipBlocks`).
    pub source_ip: IpAddr,
    /// The original client's address when known from `X-Forwarded-For` or the PROXY protocol
    /// (`remote.ip`, `remoteIpBlocks`); `None` means the peer is the client, as in Envoy.
    pub remote_ip: Option<IpAddr>,
    /// Our address the connection was made to (`destination.ip`).
    pub destination_ip: IpAddr,
    /// The port the connection was made to (`ports`, `destination.port`).
    pub destination_port: u16,
    /// The TLS server name the peer asked for (`connection.sni`).
    pub sni: Option<String>,
    /// HTTP attributes, for requests; `None` for a raw TCP tunnel.
    pub http: Option<HttpAttributes>,
    /// The authenticated request credential (JWT), if any. Ignored without `http`.
    pub auth: Option<RequestAuth>,
}

impl AuthzRequest {
    /// A raw TCP connection from `source_ip` to `destination`, with no identity yet.
    pub fn tcp(source_ip: IpAddr, destination: SocketAddr) -> Self {
        Self {
            source_principal: None,
            source_ip,
            remote_ip: None,
            destination_ip: destination.ip(),
            destination_port: destination.port(),
            sni: None,
            http: None,
            auth: None,
        }
    }

    /// Sets the peer's verified identity.
    #[must_use]
    pub fn with_principal(mut self, principal: SpiffeId) -> Self {
        self.source_principal = Some(principal);
        self
    }

    /// Sets the original client address.
    #[must_use]
    pub fn with_remote_ip(mut self, remote_ip: IpAddr) -> Self {
        self.remote_ip = Some(remote_ip);
        self
    }

    /// Sets the TLS server name.
    #[must_use]
    pub fn with_sni(mut self, sni: impl Into<String>) -> Self {
        self.sni = Some(sni.into());
        self
    }

    /// Makes this an HTTP request with these attributes.
    #[must_use]
    pub fn with_http(mut self, http: HttpAttributes) -> Self {
        self.http = Some(http);
        self
    }

    /// Sets the request credential.
    #[must_use]
    pub fn with_auth(mut self, auth: RequestAuth) -> Self {
        self.auth = Some(auth);
        self
    }
}

/// The HTTP attributes policies can test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpAttributes {
    /// The method, as sent (`GET`).
    pub method: String,
    /// The request target's path, possibly with a query string (ignored by path rules, as
    /// Envoy matches `url_path`).
    pub path: String,
    /// The `:authority` / `Host` value, possibly with a port.
    pub host: String,
    /// Request headers, in order; names compare case-insensitively.
    pub headers: Vec<(String, String)>,
}

impl HttpAttributes {
    /// A request with no headers.
    pub fn new(
        method: impl Into<String>,
        path: impl Into<String>,
        host: impl Into<String>,
    ) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            host: host.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of header `name` (case-insensitive). Repeated headers are joined with `,`, the
    /// way Envoy's header matchers see them, and the HTTP/2 pseudo-headers `:authority`,
    /// `:method` and `:path` read the request's own attributes, as they do in Envoy.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            ":authority" => return Some(Cow::Borrowed(&self.host)),
            ":method" => return Some(Cow::Borrowed(&self.method)),
            ":path" => return Some(Cow::Borrowed(&self.path)),
            _ => {}
        }
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        match values.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = format!("{first},{second}");
                values.for_each(|v| {
                    joined.push(',');
                    joined.push_str(v);
                });
                Some(Cow::Owned(joined))
            }
        }
    }

    /// The path without its query string.
    pub fn url_path(&self) -> &str {
        // A byte scan: paths are short, and `split_once`'s searcher costs more than the scan.
        let end = self
            .path
            .bytes()
            .position(|b| b == b'?')
            .unwrap_or(self.path.len());
        self.path.get(..end).unwrap_or(&self.path)
    }
}

/// An authenticated request credential (a verified JWT): Istio's `request.auth.*`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RequestAuth {
    /// `iss/sub` (`requestPrincipals`, `request.auth.principal`).
    pub principal: Option<String>,
    /// The `aud` values (`request.auth.audiences`).
    pub audiences: Vec<String>,
    /// The `azp` claim (`request.auth.presenter`).
    pub presenter: Option<String>,
    /// All claims, as JSON (`request.auth.claims[...]`).
    pub claims: serde_json::Value,
}

impl RequestAuth {
    /// Derives the attributes from a verified token's claims as Istio does: principal
    /// `iss/sub`, audiences from `aud` (a string or a list), presenter from `azp`.
    pub fn from_claims(claims: serde_json::Value) -> Self {
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let principal = text("iss")
            .zip(text("sub"))
            .map(|(iss, sub)| format!("{iss}/{sub}"));
        let audiences = match claims.get("aud") {
            Some(serde_json::Value::String(aud)) => vec![aud.clone()],
            Some(serde_json::Value::Array(auds)) => auds
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Self {
            principal,
            audiences,
            presenter: text("azp"),
            claims,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{HttpAttributes, RequestAuth};

    #[test]
    fn headers_are_case_insensitive_and_joined() {
        let http = HttpAttributes::new("GET", "/a?b=c", "h")
            .with_header("X-Id", "1")
            .with_header("x-id", "2")
            .with_header("Other", "");
        assert_eq!(http.header("x-ID").as_deref(), Some("1,2"));
        assert_eq!(http.header("other").as_deref(), Some(""));
        assert_eq!(http.header("missing"), None);
        assert_eq!(http.url_path(), "/a");
        assert_eq!(http.header(":path").as_deref(), Some("/a?b=c"));
        assert_eq!(http.header(":method").as_deref(), Some("GET"));
        assert_eq!(http.header(":authority").as_deref(), Some("h"));
    }

    #[test]
    fn auth_from_claims() {
        let auth = RequestAuth::from_claims(json!({
            "iss": "https://issuer", "sub": "alice", "aud": ["a", "b"], "azp": "cli"
        }));
        assert_eq!(auth.principal.as_deref(), Some("https://issuer/alice"));
        assert_eq!(auth.audiences, ["a", "b"]);
        assert_eq!(auth.presenter.as_deref(), Some("cli"));
        let single = RequestAuth::from_claims(json!({"aud": "x", "iss": "i"}));
        assert_eq!(single.audiences, ["x"]);
        assert_eq!(single.principal, None);
    }
}

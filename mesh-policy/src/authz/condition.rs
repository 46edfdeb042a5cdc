//! `rules[].when[]` conditions: an attribute key and the values it must (not) take.

use std::fmt;

use ipnet::IpNet;

use super::pattern::StringPattern;

/// The attribute a `when` condition tests, parsed from its `key`.
///
/// Only the keys Istio documents for AuthorizationPolicy are accepted; an unknown key is a
/// load error rather than a condition that silently never matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConditionKey {
    /// `request.headers[NAME]`; the name is stored lowercased (HTTP names are case-insensitive).
    RequestHeader(String),
    /// `source.ip`: the peer's address.
    SourceIp,
    /// `remote.ip`: the original client address.
    RemoteIp,
    /// `source.namespace`: the namespace in the peer's principal.
    SourceNamespace,
    /// `source.principal`: the peer's identity without `spiffe://`.
    SourcePrincipal,
    /// `request.auth.principal`: the JWT's `iss/sub`.
    RequestPrincipal,
    /// `request.auth.audiences`: the JWT's `aud`.
    RequestAudiences,
    /// `request.auth.presenter`: the JWT's `azp`.
    RequestPresenter,
    /// `request.auth.claims[a][b]...`: a (nested) JWT claim, by path.
    RequestClaim(Vec<String>),
    /// `destination.ip`: the address the connection was made to.
    DestinationIp,
    /// `destination.port`: the port the connection was made to.
    DestinationPort,
    /// `connection.sni`: the TLS server name the peer asked for.
    ConnectionSni,
}

/// Why a `when` key was refused; the document loader adds the field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyError(pub(crate) String);

impl ConditionKey {
    /// Parses a `when[].key`, with Istio's error messages for the keys it refuses.
    pub(crate) fn parse(key: &str) -> Result<Self, KeyError> {
        let simple = match key {
            "source.ip" => Some(Self::SourceIp),
            "remote.ip" => Some(Self::RemoteIp),
            "source.namespace" => Some(Self::SourceNamespace),
            "source.principal" => Some(Self::SourcePrincipal),
            "request.auth.principal" => Some(Self::RequestPrincipal),
            "request.auth.audiences" => Some(Self::RequestAudiences),
            "request.auth.presenter" => Some(Self::RequestPresenter),
            "destination.ip" => Some(Self::DestinationIp),
            "destination.port" => Some(Self::DestinationPort),
            "connection.sni" => Some(Self::ConnectionSni),
            _ => None,
        };
        if let Some(simple) = simple {
            return Ok(simple);
        }
        if let Some(rest) = key.strip_prefix("request.headers") {
            let names = bracketed(key, rest)?;
            return match names.as_slice() {
                [name] => Ok(Self::RequestHeader(name.to_ascii_lowercase())),
                _ => Err(KeyError(format!(
                    "bad key {key:?}: a header is named by exactly one [NAME]"
                ))),
            };
        }
        if let Some(rest) = key.strip_prefix("request.auth.claims") {
            return Ok(Self::RequestClaim(bracketed(key, rest)?));
        }
        Err(KeyError(unknown_key_reason(key)))
    }

    /// Whether the attribute exists only for HTTP requests (not on a raw TCP tunnel).
    pub fn is_http_only(&self) -> bool {
        matches!(
            self,
            Self::RequestHeader(_)
                | Self::RequestPrincipal
                | Self::RequestAudiences
                | Self::RequestPresenter
                | Self::RequestClaim(_)
        )
    }

    /// The kind of value the key's `values` hold.
    pub(crate) fn value_kind(&self) -> ValueKind {
        match self {
            Self::SourceIp | Self::RemoteIp | Self::DestinationIp => ValueKind::Ip,
            Self::DestinationPort => ValueKind::Port,
            _ => ValueKind::String,
        }
    }
}

/// How a key's values are parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueKind {
    /// Istio string patterns.
    String,
    /// IP addresses or CIDR ranges.
    Ip,
    /// Port numbers.
    Port,
}

/// Splits `[a][b]` into `["a", "b"]`, as Istio reads claim and header keys.
fn bracketed(key: &str, rest: &str) -> Result<Vec<String>, KeyError> {
    let bad = || KeyError(format!("bad key {key:?}: should have the form name[value]"));
    let inner = rest
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(bad)?;
    let names: Vec<String> = inner.split("][").map(str::to_owned).collect();
    if names.iter().any(|n| n.is_empty() || n.contains(['[', ']'])) {
        return Err(bad());
    }
    Ok(names)
}

/// Istio's reasons for the keys it knows but refuses, and a pointer for the rest.
fn unknown_key_reason(key: &str) -> String {
    match key {
        "destination.namespace" => format!("attribute {key} is replaced by the metadata.namespace"),
        "destination.name" | "destination.user" => {
            format!("deprecated attribute {key}: only supported in v1alpha1")
        }
        _ if key.starts_with("destination.labels") => {
            format!("attribute {key} is replaced by the workload selector")
        }
        _ if key.starts_with("experimental.envoy.filters.") => {
            format!("attribute {key} is Envoy-specific and not supported by this mesh")
        }
        _ => format!(
            "unknown attribute {key:?}; supported: request.headers[NAME], source.ip, remote.ip, \
             source.namespace, source.principal, request.auth.principal, \
             request.auth.audiences, request.auth.presenter, request.auth.claims[NAME], \
             destination.ip, destination.port, connection.sni"
        ),
    }
}

impl fmt::Display for ConditionKey {
    /// The key as Istio spells it (header names lowercased).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequestHeader(name) => write!(f, "request.headers[{name}]"),
            Self::SourceIp => f.write_str("source.ip"),
            Self::RemoteIp => f.write_str("remote.ip"),
            Self::SourceNamespace => f.write_str("source.namespace"),
            Self::SourcePrincipal => f.write_str("source.principal"),
            Self::RequestPrincipal => f.write_str("request.auth.principal"),
            Self::RequestAudiences => f.write_str("request.auth.audiences"),
            Self::RequestPresenter => f.write_str("request.auth.presenter"),
            Self::RequestClaim(path) => {
                f.write_str("request.auth.claims")?;
                path.iter().try_for_each(|p| write!(f, "[{p}]"))
            }
            Self::DestinationIp => f.write_str("destination.ip"),
            Self::DestinationPort => f.write_str("destination.port"),
            Self::ConnectionSni => f.write_str("connection.sni"),
        }
    }
}

/// The parsed `values` or `notValues` of a condition; the variant follows the key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Values {
    /// String patterns (headers, principals, namespaces, claims, SNI, ...).
    Strings(Vec<StringPattern>),
    /// Addresses and ranges (`source.ip`, `remote.ip`, `destination.ip`).
    Ips(Vec<IpNet>),
    /// Ports (`destination.port`).
    Ports(Vec<u16>),
}

impl Values {
    /// Whether no value was given.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Strings(v) => v.is_empty(),
            Self::Ips(v) => v.is_empty(),
            Self::Ports(v) => v.is_empty(),
        }
    }
}

/// One `when` entry: `key` must take one of `values` (if any) and none of `not_values`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Condition {
    /// The attribute tested.
    pub key: ConditionKey,
    /// Accepted values (empty: no constraint).
    pub values: Values,
    /// Refused values (empty: no constraint).
    pub not_values: Values,
}

#[cfg(test)]
mod tests {
    use super::ConditionKey::{self, *};

    #[test]
    fn parses_every_documented_key() {
        let cases = [
            ("source.ip", SourceIp),
            ("remote.ip", RemoteIp),
            ("source.namespace", SourceNamespace),
            ("source.principal", SourcePrincipal),
            ("request.auth.principal", RequestPrincipal),
            ("request.auth.audiences", RequestAudiences),
            ("request.auth.presenter", RequestPresenter),
            ("destination.ip", DestinationIp),
            ("destination.port", DestinationPort),
            ("connection.sni", ConnectionSni),
            ("request.headers[X-User]", RequestHeader("x-user".into())),
            ("request.auth.claims[iss]", RequestClaim(vec!["iss".into()])),
            (
                "request.auth.claims[realm][roles]",
                RequestClaim(vec!["realm".into(), "roles".into()]),
            ),
        ];
        for (text, key) in cases {
            assert_eq!(ConditionKey::parse(text), Ok(key.clone()), "{text}");
            if !matches!(key, RequestHeader(_)) {
                assert_eq!(key.to_string(), text);
            }
        }
    }

    #[test]
    fn refuses_unknown_and_malformed_keys() {
        for (key, needle) in [
            ("source.user", "unknown attribute"),
            ("request.headers", "name[value]"),
            ("request.headers[]", "name[value]"),
            ("request.headers[a][b]", "exactly one"),
            ("request.auth.claims[a]x", "name[value]"),
            ("destination.namespace", "metadata.namespace"),
            ("destination.labels[app]", "workload selector"),
            ("destination.user", "v1alpha1"),
            ("experimental.envoy.filters.a[b]", "Envoy-specific"),
        ] {
            let err = ConditionKey::parse(key).unwrap_err();
            assert!(err.0.contains(needle), "{key}: {}", err.0);
        }
    }

    #[test]
    fn http_only_keys() {
        assert!(RequestHeader("a".into()).is_http_only());
        assert!(RequestClaim(vec!["a".into()]).is_http_only());
        assert!(RequestPrincipal.is_http_only());
        assert!(!SourcePrincipal.is_http_only());
        assert!(!ConnectionSni.is_http_only());
        assert!(!RemoteIp.is_http_only());
    }
}

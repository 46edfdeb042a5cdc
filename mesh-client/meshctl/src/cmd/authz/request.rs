//! From `authz check` flags to the engine's inputs: the workload and the request.
//!
//! Every flag is validated here, before any policy is evaluated, and errors name the flag.

use std::net::IpAddr;

use mesh_core::SpiffeId;
use mesh_policy::authz::{AuthzRequest, HttpAttributes, RequestAuth, Workload};
use serde_json::{Map, Value};

use crate::{cli::AuthzCheckArgs, error::Error};

/// The workload the policies are scoped to.
pub(super) fn workload(args: &AuthzCheckArgs) -> Result<Workload, Error> {
    let mut workload =
        Workload::new(args.namespace.clone()).with_root_namespace(args.root_namespace.clone());
    for label in &args.labels {
        let (key, value) = key_value("--label", label)?;
        workload = workload.with_label(key, value);
    }
    Ok(workload)
}

/// The request described by the flags: raw TCP unless `--method` is given.
pub(super) fn request(args: &AuthzCheckArgs) -> Result<AuthzRequest, Error> {
    let source = ip("--source-ip", &args.source_ip)?;
    let destination = ip("--destination-ip", &args.destination_ip)?;
    let mut request = AuthzRequest::tcp(source, (destination, args.port).into());
    if let Some(principal) = &args.principal {
        request = request.with_principal(spiffe_id(principal)?);
    }
    if let Some(remote) = &args.remote_ip {
        request = request.with_remote_ip(ip("--remote-ip", remote)?);
    }
    if let Some(sni) = &args.sni {
        request = request.with_sni(sni.clone());
    }
    let Some(method) = &args.method else {
        return Ok(request);
    };
    let host = args.host.clone().unwrap_or_else(|| match destination {
        IpAddr::V4(ip) => format!("{ip}:{}", args.port),
        IpAddr::V6(ip) => format!("[{ip}]:{}", args.port),
    });
    let mut http = HttpAttributes::new(method.clone(), args.path.clone(), host);
    for header in &args.headers {
        let (name, value) = key_value("--header", header)?;
        http = http.with_header(name, value);
    }
    request = request.with_http(http);
    if args.request_principal.is_some() || !args.claims.is_empty() {
        request = request.with_auth(auth(args)?);
    }
    Ok(request)
}

/// The JWT attributes from `--claim` and `--request-principal`.
fn auth(args: &AuthzCheckArgs) -> Result<RequestAuth, Error> {
    let mut claims = Map::new();
    for claim in &args.claims {
        let (name, value) = key_value("--claim", claim)?;
        let path = claim_path(name).ok_or_else(|| Error::InvalidArg {
            flag: "--claim",
            value: claim.clone(),
            reason: "a nested claim is written name[key][key]=value".to_owned(),
        })?;
        insert_claim(&mut claims, &path, value);
    }
    let mut auth = RequestAuth::from_claims(Value::Object(claims));
    if let Some(principal) = &args.request_principal {
        if !principal.contains('/') {
            return Err(Error::InvalidArg {
                flag: "--request-principal",
                value: principal.clone(),
                reason: "expected ISSUER/SUBJECT, as Istio's requestPrincipals".to_owned(),
            });
        }
        auth.principal = Some(principal.clone());
    }
    Ok(auth)
}

/// `a[b][c]` as `["a", "b", "c"]`; a plain name is a one-element path.
fn claim_path(name: &str) -> Option<Vec<&str>> {
    let Some((first, rest)) = name.split_once('[') else {
        return Some(vec![name]);
    };
    let inner = rest.strip_suffix(']')?;
    let mut path = vec![first];
    path.extend(inner.split("]["));
    (!path.iter().any(|p| p.is_empty() || p.contains(['[', ']']))).then_some(path)
}

/// Sets `path` to `value`; a second value for the same claim turns it into a list.
fn insert_claim(claims: &mut Map<String, Value>, path: &[&str], value: &str) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut map = claims;
    for parent in parents {
        let entry = map
            .entry((*parent).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(inner) = entry else { return };
        map = inner;
    }
    let new = Value::String(value.to_owned());
    match map.get_mut(*last) {
        None => {
            map.insert((*last).to_owned(), new);
        }
        Some(Value::Array(items)) => items.push(new),
        Some(existing) => *existing = Value::Array(vec![existing.take(), new]),
    }
}

/// Accepts `spiffe://td/path` or Istio's scheme-less `td/path`.
fn spiffe_id(value: &str) -> Result<SpiffeId, Error> {
    let full = if value.starts_with("spiffe://") {
        value.to_owned()
    } else {
        format!("spiffe://{value}")
    };
    full.parse().map_err(|e| Error::InvalidArg {
        flag: "--principal",
        value: value.to_owned(),
        reason: format!("{e}; expected a SPIFFE ID such as spiffe://cluster.local/ns/NS/sa/SA"),
    })
}

fn ip(flag: &'static str, value: &str) -> Result<IpAddr, Error> {
    value.parse().map_err(|_| Error::InvalidArg {
        flag,
        value: value.to_owned(),
        reason: "expected an IP address such as 10.0.0.1 or ::1".to_owned(),
    })
}

/// Splits `KEY=VALUE` at the first `=`; the key must not be empty.
fn key_value<'a>(flag: &'static str, value: &'a str) -> Result<(&'a str, &'a str), Error> {
    match value.split_once('=') {
        Some((key, v)) if !key.is_empty() => Ok((key, v)),
        _ => Err(Error::InvalidArg {
            flag,
            value: value.to_owned(),
            reason: "expected NAME=VALUE".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::{claim_path, insert_claim};

    #[test]
    fn claim_paths() {
        assert_eq!(claim_path("groups"), Some(vec!["groups"]));
        assert_eq!(claim_path("realm[roles]"), Some(vec!["realm", "roles"]));
        assert_eq!(claim_path("a[b][c]"), Some(vec!["a", "b", "c"]));
        assert_eq!(claim_path("a[b"), None);
        assert_eq!(claim_path("a[]"), None);
    }

    #[test]
    fn repeated_claims_become_lists() {
        let mut claims = Map::new();
        for (path, value) in [
            (vec!["groups"], "dev"),
            (vec!["groups"], "ops"),
            (vec!["groups"], "qa"),
            (vec!["realm", "roles"], "reader"),
            (vec!["iss"], "https://idp"),
        ] {
            insert_claim(&mut claims, &path, value);
        }
        assert_eq!(
            Value::Object(claims),
            json!({"groups": ["dev", "ops", "qa"], "realm": {"roles": "reader"}, "iss": "https://idp"})
        );
    }
}

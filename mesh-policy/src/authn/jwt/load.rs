//! Reading RequestAuthentication documents from YAML as people write them for Istio.
//!
//! The documents go through the same strict two-pass reader as AuthorizationPolicies
//! (`authz::load::parse_documents`: multi-document files, unknown fields and type errors named
//! by path), then through the checks of istiod's `ValidateRequestAuthentication`, plus a few
//! of our own where Istio would accept a document that cannot work (inline keys none of which
//! is usable, `jwks` and `jwksUri` both set, no key source and an issuer that is not a URL).

use std::{sync::Arc, time::Duration};

use http::HeaderName;

use super::{
    document::{RawClaimToHeader, RawJwtRule, RawRequestAuthentication},
    jwks::Jwks,
    model::{
        ClaimToHeader, DEFAULT_JWKS_TIMEOUT, JwksSource, JwtRule, RequestAuthentication,
        TokenLocation,
    },
};
use crate::authz::{
    PolicyError,
    load::{Cx, parse_documents, policy_id, selector},
};

/// Parses every RequestAuthentication document in `yaml`, in file order.
///
/// Accepts `security.istio.io/v1` and `v1beta1`. Empty documents are skipped; the first
/// problem stops the load (a file is accepted whole or not at all), reported as a
/// [`PolicyError`] naming the document, the policy and the field path, e.g.
/// `document 1 (shop/jwt): spec.jwtRules[0].fromHeaders[0]: unknown field `prefx`, ...`.
///
/// ```
/// let yaml = r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: { name: jwt, namespace: shop }
/// spec:
///   selector: { matchLabels: { app: web } }
///   jwtRules:
///   - issuer: https://issuer.example
///     jwksUri: https://issuer.example/jwks.json
///     audiences: [shop]
/// "#;
/// let policies = mesh_policy::authn::jwt::parse_request_authentications(yaml)?;
/// assert_eq!(policies[0].rules[0].issuer, "https://issuer.example");
/// # Ok::<(), mesh_policy::authz::PolicyError>(())
/// ```
pub fn parse_request_authentications(
    yaml: &str,
) -> Result<Vec<RequestAuthentication>, PolicyError> {
    parse_documents(yaml, "RequestAuthentication", convert)
}

fn convert(cx: &Cx, raw: RawRequestAuthentication) -> Result<RequestAuthentication, PolicyError> {
    let id = policy_id(cx, &raw.metadata)?;
    let spec = raw.spec.unwrap_or_default();
    let result = (|| {
        if spec.target_ref.is_some() || spec.target_refs.is_some() {
            let field = if spec.target_ref.is_some() {
                "targetRef"
            } else {
                "targetRefs"
            };
            return Err(cx.unsupported(
                format!("spec.{field}"),
                "targetRef binds a policy to a gateway or waypoint; this mesh authenticates \
                 inside the workload, so select workloads with spec.selector.matchLabels instead",
            ));
        }
        let selector = spec
            .selector
            .map(|s| selector(cx, s.match_labels.unwrap_or_default()))
            .transpose()?;
        let rules = (spec.jwt_rules.unwrap_or_default().into_iter().enumerate())
            .map(|(i, rule)| convert_rule(cx, &format!("spec.jwtRules[{i}]"), rule))
            .collect::<Result<_, _>>()?;
        Ok(RequestAuthentication {
            id: id.clone(),
            selector,
            rules,
        })
    })();
    result.map_err(|mut err: PolicyError| {
        err.policy = Some(id.clone());
        err
    })
}

fn convert_rule(cx: &Cx, path: &str, raw: RawJwtRule) -> Result<JwtRule, PolicyError> {
    let p = |field: &str| format!("{path}.{field}");
    let issuer = raw.issuer.unwrap_or_default();
    if issuer.is_empty() {
        return Err(cx.invalid(p("issuer"), "issuer must be set"));
    }
    let audiences = raw.audiences.unwrap_or_default();
    if let Some(i) = audiences.iter().position(String::is_empty) {
        return Err(cx.invalid(
            format!("{path}.audiences[{i}]"),
            "audience must be non-empty string",
        ));
    }
    let keys = key_source(cx, path, &issuer, raw.jwks, raw.jwks_uri)?;
    let locations = locations(
        cx,
        path,
        raw.from_headers,
        raw.from_params,
        raw.from_cookies,
    )?;
    let output_payload_to_header = raw
        .output_payload_to_header
        .filter(|h| !h.is_empty())
        .map(|h| header_name(cx, &p("outputPayloadToHeader"), &h))
        .transpose()?;
    let output_claim_to_headers = (raw.output_claim_to_headers.unwrap_or_default().into_iter())
        .enumerate()
        .map(|(i, c)| claim_to_header(cx, &format!("{path}.outputClaimToHeaders[{i}]"), c))
        .collect::<Result<_, _>>()?;
    let timeout = match raw.timeout {
        None => DEFAULT_JWKS_TIMEOUT,
        Some(text) => {
            match parse_duration(&text) {
                Some(d) if !d.is_zero() => d,
                _ => {
                    return Err(cx.invalid(
                    p("timeout"),
                    format!("bad duration {text:?}: expected a positive duration such as 5s or 1500ms"),
                ));
                }
            }
        }
    };
    Ok(JwtRule {
        issuer,
        audiences,
        keys,
        locations,
        output_payload_to_header,
        output_claim_to_headers,
        forward_original_token: raw.forward_original_token.unwrap_or(false),
        timeout,
    })
}

/// `jwks`, `jwksUri`, or OpenID discovery from the issuer when neither is given.
fn key_source(
    cx: &Cx,
    path: &str,
    issuer: &str,
    jwks: Option<String>,
    jwks_uri: Option<String>,
) -> Result<JwksSource, PolicyError> {
    let jwks = jwks.filter(|j| !j.is_empty());
    let jwks_uri = jwks_uri.filter(|u| !u.is_empty());
    match (jwks, jwks_uri) {
        (Some(_), Some(_)) => Err(cx.invalid(
            path,
            "set either `jwks` or `jwksUri`, not both (Istio would silently ignore jwksUri)",
        )),
        (Some(text), None) => Jwks::parse(&text)
            .map(|jwks| JwksSource::Inline(Arc::new(jwks)))
            .map_err(|e| cx.invalid(format!("{path}.jwks"), format!("jwks parse error: {e}"))),
        (None, Some(uri)) => {
            check_http_url(&uri).map_err(|reason| cx.invalid(format!("{path}.jwksUri"), reason))?;
            Ok(JwksSource::Uri(uri))
        }
        (None, None) => {
            check_http_url(issuer).map_err(|_| {
                cx.invalid(
                    path,
                    format!(
                        "no `jwks` or `jwksUri`, and the issuer {issuer:?} is not an http(s) URL \
                         whose OpenID configuration could name the keys; set jwksUri or jwks"
                    ),
                )
            })?;
            Ok(JwksSource::OpenIdDiscovery {
                issuer: issuer.to_owned(),
            })
        }
    }
}

/// Istio's `ParseJwksURI`: an absolute http or https URL with a host.
fn check_http_url(text: &str) -> Result<(), String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "{text:?}: only http and https URLs are supported for jwksUri"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{text:?}: the URL has no host"));
    }
    Ok(())
}

/// `fromHeaders`, `fromParams`, `fromCookies`, or Istio's defaults when all are absent.
fn locations(
    cx: &Cx,
    path: &str,
    headers: Option<Vec<super::document::RawHeaderLocation>>,
    params: Option<Vec<String>>,
    cookies: Option<Vec<String>>,
) -> Result<Vec<TokenLocation>, PolicyError> {
    let headers = headers.unwrap_or_default();
    let params = params.unwrap_or_default();
    let cookies = cookies.unwrap_or_default();
    if headers.is_empty() && params.is_empty() && cookies.is_empty() {
        return Ok(TokenLocation::istio_defaults());
    }
    let mut out = Vec::new();
    for (i, h) in headers.into_iter().enumerate() {
        let hpath = format!("{path}.fromHeaders[{i}]");
        let name = h.name.unwrap_or_default();
        if name.is_empty() {
            return Err(cx.invalid(
                format!("{hpath}.name"),
                "location header name must be non-empty string",
            ));
        }
        out.push(TokenLocation::Header {
            name: header_name(cx, &format!("{hpath}.name"), &name)?,
            prefix: h.prefix.unwrap_or_default(),
        });
    }
    for (i, name) in params.into_iter().enumerate() {
        if name.is_empty() {
            return Err(cx.invalid(
                format!("{path}.fromParams[{i}]"),
                "location query must be non-empty string",
            ));
        }
        out.push(TokenLocation::QueryParam(name));
    }
    for (i, name) in cookies.into_iter().enumerate() {
        if name.is_empty() {
            return Err(cx.invalid(
                format!("{path}.fromCookies[{i}]"),
                "cookie name must be non-empty string",
            ));
        }
        out.push(TokenLocation::Cookie(name));
    }
    dedup(&mut out);
    Ok(out)
}

fn dedup(locations: &mut Vec<TokenLocation>) {
    let mut seen = Vec::with_capacity(locations.len());
    locations.retain(|l| {
        let new = !seen.contains(l);
        if new {
            seen.push(l.clone());
        }
        new
    });
}

fn claim_to_header(
    cx: &Cx,
    path: &str,
    raw: RawClaimToHeader,
) -> Result<ClaimToHeader, PolicyError> {
    let header = raw.header.unwrap_or_default();
    let claim = raw.claim.unwrap_or_default();
    if header.is_empty() || claim.is_empty() {
        return Err(cx.invalid(
            path,
            "outputClaimToHeaders header and claim value must be non-empty string",
        ));
    }
    Ok(ClaimToHeader {
        header: header_name(cx, &format!("{path}.header"), &header)?,
        claim,
    })
}

/// An HTTP header name as Istio's `ValidateStrictHTTPHeaderName` accepts them (RFC 7230
/// tokens); stored lowercased.
fn header_name(cx: &Cx, path: &str, name: &str) -> Result<HeaderName, PolicyError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        cx.invalid(
            path,
            format!(
                "{name:?} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
            ),
        )
    })
}

/// A Go-style duration (`5s`, `1.5s`, `300ms`, `1m30s`; units ns, us, µs, ms, s, m, h), which
/// covers protobuf's JSON form (`5s`, `0.5s`) too.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        for bad in ["", "5", "s", "5x", "-1s", "1.2.3s", "5 s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}

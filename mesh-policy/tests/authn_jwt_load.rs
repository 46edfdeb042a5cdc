//! The RequestAuthentication loader: every field read as Istio writes it, defaults, and
//! refusals that name the document, policy and field path.

mod jwt_support;

use std::time::Duration;

use jsonwebtoken::Algorithm;
use mesh_policy::authn::jwt::{
    ClaimToHeader, JwksSource, TokenLocation, parse_request_authentications,
};
use mesh_policy::authz::PolicyErrorKind;

fn header(name: &str, prefix: &str) -> TokenLocation {
    TokenLocation::Header {
        name: name.parse().unwrap(),
        prefix: prefix.to_owned(),
    }
}

#[test]
fn reads_every_field() {
    let k = jwt_support::key(Algorithm::ES256, "k1");
    let yaml = format!(
        r#"
# A Deployment-style preamble and an empty document are fine.
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata:
  name: jwt
  namespace: shop
  labels: {{team: a}}
  annotations: {{note: x}}
  resourceVersion: "12"
spec:
  selector:
    matchLabels: {{app: web}}
  jwtRules:
  - issuer: "https://issuer.example"
    audiences: [shop, admin]
    jwksUri: https://issuer.example/jwks.json
    fromHeaders:
    - name: x-jwt
    - name: Authorization
      prefix: "Bearer "
    fromParams: [token]
    fromCookies: [session]
    outputPayloadToHeader: X-Payload
    outputClaimToHeaders:
    - header: x-sub
      claim: sub
    forwardOriginalToken: true
    timeout: 1500ms
  - issuer: inline
    jwks: '{}'
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: discovery}}
spec:
  jwtRules:
  - issuer: https://accounts.example
"#,
        jwt_support::jwks(&[&k])
    );
    let policies = parse_request_authentications(&yaml).unwrap();
    assert_eq!(policies.len(), 2);
    let p = &policies[0];
    assert_eq!(p.id.to_string(), "shop/jwt");
    assert_eq!(p.selector.as_ref().unwrap()["app"], "web");
    let r = &p.rules[0];
    assert_eq!(r.issuer, "https://issuer.example");
    assert_eq!(r.audiences, ["shop", "admin"]);
    assert_eq!(
        r.keys,
        JwksSource::Uri("https://issuer.example/jwks.json".into())
    );
    assert_eq!(
        r.locations,
        [
            header("x-jwt", ""),
            header("authorization", "Bearer "),
            TokenLocation::QueryParam("token".into()),
            TokenLocation::Cookie("session".into()),
        ]
    );
    assert_eq!(
        r.output_payload_to_header.as_ref().map(|h| h.as_str()),
        Some("x-payload")
    );
    assert_eq!(
        r.output_claim_to_headers,
        [ClaimToHeader {
            header: "x-sub".parse().unwrap(),
            claim: "sub".into()
        }]
    );
    assert!(r.forward_original_token);
    assert_eq!(r.timeout, Duration::from_millis(1500));
    // Defaults.
    let inline = &p.rules[1];
    assert!(matches!(&inline.keys, JwksSource::Inline(jwks) if jwks.keys().len() == 1));
    assert_eq!(inline.locations, TokenLocation::istio_defaults());
    assert!(!inline.forward_original_token);
    assert_eq!(inline.timeout, Duration::from_secs(5));
    assert_eq!(policies[1].id.to_string(), "default/discovery");
    assert_eq!(
        policies[1].rules[0].keys,
        JwksSource::OpenIdDiscovery {
            issuer: "https://accounts.example".into()
        }
    );
    // A policy without rules is valid (and authenticates nothing).
    let empty = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: e}\nspec: {}\n";
    assert!(
        parse_request_authentications(empty).unwrap()[0]
            .rules
            .is_empty()
    );
}

/// Asserts that `spec` (the YAML under `spec:`) is refused at `path` with a reason containing
/// `needle`.
fn refused(spec: &str, path: &str, kind: PolicyErrorKind, needle: &str) {
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
         metadata: {{name: jwt, namespace: shop}}\nspec:\n{spec}"
    );
    let err = parse_request_authentications(&yaml).expect_err(spec);
    assert_eq!(err.path, path, "{err}");
    assert_eq!(err.kind, kind, "{err}");
    assert!(
        err.reason.contains(needle),
        "{err} should mention {needle:?}"
    );
    if kind != PolicyErrorKind::Syntax {
        assert_eq!(
            err.policy.as_ref().map(ToString::to_string).as_deref(),
            Some("shop/jwt")
        );
    }
    assert!(err.to_string().starts_with("document 1"), "{err}");
}

#[test]
fn unknown_fields_and_wrong_types_name_their_path() {
    use PolicyErrorKind::Syntax;
    refused(
        "  jwtRule: []\n",
        "spec.jwtRule",
        Syntax,
        "unknown field `jwtRule`",
    );
    refused(
        "  jwtRules:\n  - issuer: i\n    jwksUrl: https://x\n",
        "spec.jwtRules[0].jwksUrl",
        Syntax,
        "unknown field `jwksUrl`",
    );
    refused(
        "  jwtRules:\n  - issuer: https://i\n    fromHeaders: [{name: x, prefx: y}]\n",
        "spec.jwtRules[0].fromHeaders[0].prefx",
        Syntax,
        "unknown field",
    );
    refused(
        "  jwtRules:\n  - issuer: https://i\n    outputClaimToHeaders: [{header: x, claim: y, extra: 1}]\n",
        "spec.jwtRules[0].outputClaimToHeaders[0].extra",
        Syntax,
        "unknown field",
    );
    refused(
        "  jwtRules:\n  - issuer: https://i\n    audiences: shop\n",
        "spec.jwtRules[0].audiences",
        Syntax,
        "expected a sequence",
    );
    refused(
        "  jwtRules:\n  - issuer: https://i\n    forwardOriginalToken: yes-please\n",
        "spec.jwtRules[0].forwardOriginalToken",
        Syntax,
        "boolean",
    );
    refused(
        "  selector: {matchLabel: {a: b}}\n",
        "spec.selector.matchLabel",
        Syntax,
        "unknown field",
    );
}

#[test]
fn values_istio_refuses_are_refused() {
    use PolicyErrorKind::{Invalid, Unsupported};
    let rule = |fields: &str| format!("  jwtRules:\n  - issuer: https://i.example\n{fields}");
    refused(
        "  jwtRules:\n  - audiences: [a]\n",
        "spec.jwtRules[0].issuer",
        Invalid,
        "issuer must be set",
    );
    refused(
        &rule("    audiences: [a, '']\n"),
        "spec.jwtRules[0].audiences[1]",
        Invalid,
        "non-empty",
    );
    refused(
        &rule("    jwksUri: ftp://i.example/k\n"),
        "spec.jwtRules[0].jwksUri",
        Invalid,
        "http and https",
    );
    refused(
        &rule("    jwksUri: 'not a url'\n"),
        "spec.jwtRules[0].jwksUri",
        Invalid,
        "not a valid URL",
    );
    refused(
        &rule("    jwksUri: /relative\n"),
        "spec.jwtRules[0].jwksUri",
        Invalid,
        "http and https",
    );
    refused(
        &rule("    jwks: 'nope'\n"),
        "spec.jwtRules[0].jwks",
        Invalid,
        "jwks parse error",
    );
    refused(
        &rule("    jwks: '{\"keys\": [{\"kty\": \"oct\", \"k\": \"AA\"}]}'\n"),
        "spec.jwtRules[0].jwks",
        Invalid,
        "no usable key",
    );
    refused(
        &rule("    jwks: '{\"keys\": []}'\n    jwksUri: https://i.example/k\n"),
        "spec.jwtRules[0]",
        Invalid,
        "not both",
    );
    refused(
        "  jwtRules:\n  - issuer: not-a-url\n",
        "spec.jwtRules[0]",
        Invalid,
        "set jwksUri or jwks",
    );
    refused(
        &rule("    fromHeaders: [{prefix: x}]\n"),
        "spec.jwtRules[0].fromHeaders[0].name",
        Invalid,
        "non-empty",
    );
    refused(
        &rule("    fromHeaders: [{name: 'bad header'}]\n"),
        "spec.jwtRules[0].fromHeaders[0].name",
        Invalid,
        "valid HTTP header",
    );
    refused(
        &rule("    fromParams: ['']\n"),
        "spec.jwtRules[0].fromParams[0]",
        Invalid,
        "non-empty",
    );
    refused(
        &rule("    fromCookies: ['']\n"),
        "spec.jwtRules[0].fromCookies[0]",
        Invalid,
        "non-empty",
    );
    refused(
        &rule("    outputPayloadToHeader: 'x y'\n"),
        "spec.jwtRules[0].outputPayloadToHeader",
        Invalid,
        "valid HTTP header",
    );
    refused(
        &rule("    outputClaimToHeaders: [{header: x-a}]\n"),
        "spec.jwtRules[0].outputClaimToHeaders[0]",
        Invalid,
        "must be non-empty",
    );
    refused(
        &rule("    outputClaimToHeaders: [{header: 'x:a', claim: sub}]\n"),
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
        Invalid,
        "valid HTTP header",
    );
    refused(
        &rule("    timeout: soon\n"),
        "spec.jwtRules[0].timeout",
        Invalid,
        "bad duration",
    );
    refused(
        &rule("    timeout: 0s\n"),
        "spec.jwtRules[0].timeout",
        Invalid,
        "positive",
    );
    refused(
        "  selector: {matchLabels: {app: 'w*'}}\n",
        "spec.selector.matchLabels[app]",
        Invalid,
        "wildcard",
    );
    refused(
        "  targetRef: {kind: Gateway, name: gw}\n",
        "spec.targetRef",
        Unsupported,
        "spec.selector.matchLabels",
    );
}

#[test]
fn documents_of_other_kinds_are_named() {
    let mixed =
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n";
    let err = parse_request_authentications(mixed).unwrap_err();
    assert_eq!(
        (err.path.as_str(), err.kind),
        ("kind", PolicyErrorKind::Unsupported)
    );
    assert!(err.reason.contains("only RequestAuthentication"), "{err}");
    let old = "apiVersion: security.istio.io/v1alpha1\nkind: RequestAuthentication\nmetadata: {name: a}\n";
    let err = parse_request_authentications(old).unwrap_err();
    assert_eq!(err.path, "apiVersion");
    let second = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a}\n\
                  ---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {}\n";
    let err = parse_request_authentications(second).unwrap_err();
    assert_eq!((err.document, err.path.as_str()), (2, "metadata.name"));
}

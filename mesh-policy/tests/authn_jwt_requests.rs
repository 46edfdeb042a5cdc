//! RequestAuthentication on whole requests: token locations (headers with prefixes, query
//! parameters, cookies), output headers and token removal, several rules and policies,
//! workload scoping, and the no-token pass.

mod jwt_support;

use http::header::AUTHORIZATION;
use jsonwebtoken::Algorithm;
use jwt_support::{NOW, at, authenticator, bearer, claims, inline_rule, key, policy_yaml, request};
use mesh_policy::authn::jwt::{
    Authenticator, JwksStore, RejectReason, RequestMutation, TokenLocation,
    parse_request_authentications,
};
use mesh_policy::authz::Workload;
use serde_json::json;

const ISS: &str = "https://issuer.example";

#[test]
fn no_token_passes_unauthenticated() {
    let k = key(Algorithm::ES256, "k1");
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]),
        &JwksStore::new(),
    );
    for parts in [
        request("/", &[]),
        request("/", &[("authorization", "Basic dXNlcjpwYXNz")]),
        request("/?other=1", &[("cookie", "access_token=x")]),
        request("/", &[("authorization", "Bearer ")]),
    ] {
        let outcome = authn.authenticate(&parts, at(NOW)).expect("passes");
        assert!(!outcome.is_authenticated());
        assert_eq!(outcome.verified_by, None);
    }
}

#[test]
fn default_locations_are_bearer_and_access_token() {
    let k = key(Algorithm::ES256, "k1");
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]),
        &JwksStore::new(),
    );
    let token = k.sign(&claims(ISS));
    let lower = request("/", &[("authorization", &format!("bearer {token}"))]);
    assert!(
        authn
            .authenticate(&lower, at(NOW))
            .unwrap()
            .is_authenticated()
    );
    let mut query = request(&format!("/orders?x=1&access_token={token}"), &[]);
    let outcome = authn.authenticate(&query, at(NOW)).unwrap();
    assert!(outcome.is_authenticated());
    assert_eq!(
        outcome.mutations,
        [RequestMutation::RemoveQueryParam("access_token".into())]
    );
    outcome.apply(&mut query);
    assert_eq!(query.uri, "/orders?x=1");
    // An invalid token at a default location is rejected, not ignored.
    let err = authn
        .authenticate(&request("/?access_token=junk", &[]), at(NOW))
        .unwrap_err();
    assert_eq!(
        err.location(),
        &TokenLocation::QueryParam("access_token".into())
    );
}

#[test]
fn configured_locations_replace_the_defaults() {
    let k = key(Algorithm::RS256, "k1");
    let extra = "fromHeaders:\n- name: X-Jwt-Assertion\n- name: x-auth\n  prefix: 'Token '\n\
                 fromParams: [jwt]\nfromCookies: [session]\n";
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], extra)]),
        &JwksStore::new(),
    );
    let token = k.sign(&claims(ISS));
    let ok = |parts: http::request::Parts| {
        let outcome = authn.authenticate(&parts, at(NOW)).expect("valid");
        assert!(outcome.is_authenticated());
        outcome.mutations
    };
    assert_eq!(
        ok(request("/", &[("x-jwt-assertion", &token)])),
        [RequestMutation::RemoveHeader(
            "x-jwt-assertion".parse().unwrap()
        )]
    );
    assert_eq!(
        ok(request("/", &[("x-auth", &format!("token {token}"))])),
        [RequestMutation::RemoveHeader("x-auth".parse().unwrap())]
    );
    assert_eq!(
        ok(request(&format!("/?jwt={token}"), &[])),
        [RequestMutation::RemoveQueryParam("jwt".into())]
    );
    let mut with_cookie = request("/", &[("cookie", &format!("theme=dark; session={token}"))]);
    let outcome = authn.authenticate(&with_cookie, at(NOW)).unwrap();
    assert_eq!(
        outcome.mutations,
        [RequestMutation::RemoveCookie("session".into())]
    );
    outcome.apply(&mut with_cookie);
    assert_eq!(with_cookie.headers["cookie"], "theme=dark");

    // Without the prefix, x-auth holds no token; the defaults are not read any more.
    for parts in [
        request("/", &[("x-auth", &token)]),
        bearer(&token),
        request(&format!("/?access_token={token}"), &[]),
    ] {
        assert!(
            !authn
                .authenticate(&parts, at(NOW))
                .unwrap()
                .is_authenticated()
        );
    }
}

#[test]
fn output_headers_and_forwarding() {
    let k = key(Algorithm::EdDSA, "k1");
    let extra = "outputPayloadToHeader: x-jwt-payload\nforwardOriginalToken: true\n\
                 outputClaimToHeaders:\n- {header: x-sub, claim: sub}\n- {header: x-exp, claim: exp}\n\
                 - {header: x-team, claim: org.team}\n- {header: x-groups, claim: groups}\n\
                 - {header: x-admin, claim: admin}\n- {header: x-missing, claim: nope}\n";
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], extra)]),
        &JwksStore::new(),
    );
    let mut c = claims(ISS);
    c["org"] = json!({"team": "payments"});
    c["groups"] = json!(["a", "b"]);
    c["admin"] = json!(false);
    let token = k.sign(&c);
    let mut parts = request(
        "/",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-sub", "forged"),
            ("x-missing", "forged"),
        ],
    );
    let outcome = authn.authenticate(&parts, at(NOW)).unwrap();
    outcome.apply(&mut parts);
    let h = &parts.headers;
    assert_eq!(h["x-jwt-payload"], token.split('.').nth(1).unwrap());
    assert_eq!(h["x-sub"], "alice");
    assert_eq!(h["x-exp"], (NOW + 3600).to_string());
    assert_eq!(h["x-team"], "payments");
    assert_eq!(h["x-groups"], "a,b");
    assert_eq!(h["x-admin"], "false");
    // A claim the token lacks leaves no (forged) header behind.
    assert!(h.get("x-missing").is_none());
    // forwardOriginalToken keeps the token.
    assert_eq!(h[AUTHORIZATION], format!("Bearer {token}"));

    // Without a token, forged copies of the output headers are removed.
    let mut forged = request(
        "/",
        &[
            ("x-jwt-payload", "e30"),
            ("x-sub", "admin"),
            ("x-other", "kept"),
        ],
    );
    let outcome = authn.authenticate(&forged, at(NOW)).unwrap();
    outcome.apply(&mut forged);
    assert!(forged.headers.get("x-jwt-payload").is_none());
    assert!(forged.headers.get("x-sub").is_none());
    assert_eq!(forged.headers["x-other"], "kept");
}

#[test]
fn several_rules_and_policies() {
    let a = key(Algorithm::ES256, "a");
    let b = key(Algorithm::RS256, "b");
    let iss_b = "https://b.example";
    let yaml = format!(
        "{}---\n{}",
        policy_yaml("first", &[inline_rule(ISS, &[&a], "audiences: [shop]")]),
        policy_yaml(
            "second",
            &[
                inline_rule(iss_b, &[&b], "fromHeaders: [{name: x-b-token}]"),
                inline_rule(ISS, &[&a], "audiences: [admin]"),
            ]
        ),
    );
    let authn = authenticator(&yaml, &JwksStore::new());
    assert_eq!(authn.rules().count(), 3);
    // Issuer A, audience admin: the first rule refuses, the third accepts.
    let mut admin = claims(ISS);
    admin["aud"] = json!("admin");
    let outcome = authn
        .authenticate(&bearer(&a.sign(&admin)), at(NOW))
        .unwrap();
    let by = outcome.verified_by.unwrap();
    assert_eq!((by.policy.name.as_str(), by.rule), ("second", 1));
    // Issuer B's token is read from its own header only.
    let b_token = b.sign(&claims(iss_b));
    let outcome = authn
        .authenticate(&request("/", &[("x-b-token", &b_token)]), at(NOW))
        .unwrap();
    assert_eq!(
        outcome.auth.unwrap().principal.as_deref(),
        Some("https://b.example/alice")
    );
    let err = authn.authenticate(&bearer(&b_token), at(NOW)).unwrap_err();
    assert_eq!(
        err.reason(),
        &RejectReason::UnknownIssuer(Some(iss_b.into()))
    );
    // Neither rule of issuer A accepts audience "other"; the first rule's reason is reported.
    let mut other = claims(ISS);
    other["aud"] = json!("other");
    let err = authn
        .authenticate(&bearer(&a.sign(&other)), at(NOW))
        .unwrap_err();
    assert!(
        matches!(err.reason(), RejectReason::AudienceMismatch { allowed, .. } if allowed == &["shop"])
    );
    assert_eq!(err.rule().map(|r| r.policy.name.as_str()), Some("first"));
    assert!(err.to_string().contains("header authorization"), "{err}");
    // One valid token is enough (Envoy's requires_any), wherever it is.
    let both = request(
        "/",
        &[
            ("authorization", "Bearer not.a.token"),
            ("x-b-token", &b_token),
        ],
    );
    assert!(
        authn
            .authenticate(&both, at(NOW))
            .unwrap()
            .is_authenticated()
    );
}

#[test]
fn only_policies_for_this_workload_apply() {
    let k = key(Algorithm::ES256, "k1");
    let rule = inline_rule(ISS, &[&k], "");
    let scoped = |ns: &str, selector: &str| {
        policy_yaml("p", std::slice::from_ref(&rule))
            .replace("namespace: shop", &format!("namespace: {ns}"))
            .replace("spec:\n", &format!("spec:\n{selector}"))
    };
    let web = Workload::new("shop").with_label("app", "web");
    let junk = request("/", &[("authorization", "Bearer junk")]);
    for (yaml, applies) in [
        (scoped("shop", ""), true),
        (scoped("istio-system", ""), true),
        (scoped("other", ""), false),
        (
            scoped("shop", "  selector: {matchLabels: {app: web}}\n"),
            true,
        ),
        (
            scoped("shop", "  selector: {matchLabels: {app: db}}\n"),
            false,
        ),
    ] {
        let policies = parse_request_authentications(&yaml).unwrap();
        let authn = Authenticator::new(&policies, &web, JwksStore::new());
        assert_eq!(authn.is_empty(), !applies, "{yaml}");
        assert_eq!(
            authn.authenticate(&junk, at(NOW)).is_err(),
            applies,
            "{yaml}"
        );
    }
}

#[test]
fn the_verified_token_feeds_authorization() {
    use mesh_policy::authz::{Authorizer, AuthzRequest, HttpAttributes, parse_policies};
    let k = key(Algorithm::ES384, "k1");
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]),
        &JwksStore::new(),
    );
    let authz_yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
        metadata: {name: require-jwt, namespace: shop}\nspec:\n  rules:\n  \
        - from: [{source: {requestPrincipals: [\"https://issuer.example/alice\"]}}]\n";
    let authz_policies = parse_policies(authz_yaml).unwrap();
    let authz = Authorizer::new(&authz_policies, &Workload::new("shop"));
    let decide = |parts: &http::request::Parts| {
        let outcome = authn.authenticate(parts, at(NOW)).unwrap();
        let mut req = AuthzRequest::tcp(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2:8080".parse().unwrap(),
        )
        .with_http(HttpAttributes::new("GET", "/", "shop"));
        if let Some(auth) = outcome.auth {
            req = req.with_auth(auth);
        }
        authz.evaluate(&req).allowed
    };
    assert!(decide(&bearer(&k.sign(&claims(ISS)))));
    assert!(!decide(&request("/", &[])));
}

#[test]
fn the_engine_can_be_shared_across_threads() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<Authenticator>();
    shared::<JwksStore>();
    shared::<mesh_policy::authn::AuthnOutcome>();
    shared::<mesh_policy::authn::AuthnError>();
}

//! RequestAuthentication verification with real keys and real signatures: every algorithm,
//! every rejection reason, key selection, time with clock skew, and the JWKS store.

mod jwt_support;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use jwt_support::{
    NOW, at, authenticator, bearer, claims, inline_rule, key, key_variant, policy_yaml,
};
use mesh_policy::authn::jwt::{AuthnOptions, Jwks, JwksStore, RejectReason, RequestMutation};
use serde_json::json;

const ISS: &str = "https://issuer.example";

const ALL: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[test]
fn every_algorithm_verifies_and_yields_the_principal() {
    for alg in ALL {
        let k = key(alg, "k1");
        let yaml = policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]);
        let authn = authenticator(&yaml, &JwksStore::new());
        let token = k.sign(&claims(ISS));
        let outcome = authn
            .authenticate(&bearer(&token), at(NOW))
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        let auth = outcome.auth.expect("authenticated");
        assert_eq!(
            auth.principal.as_deref(),
            Some("https://issuer.example/alice"),
            "{alg:?}"
        );
        assert_eq!(auth.audiences, ["shop"]);
        assert_eq!(auth.claims["sub"], "alice");
        let by = outcome.verified_by.expect("rule");
        assert_eq!((by.policy.to_string().as_str(), by.rule), ("shop/jwt", 0));
        // The token is not forwarded by default.
        assert_eq!(
            outcome.mutations,
            [RequestMutation::RemoveHeader(http::header::AUTHORIZATION)]
        );
    }
}

fn reject(authn: &mesh_policy::authn::Authenticator, token: &str, now: u64) -> RejectReason {
    let err = authn
        .authenticate(&bearer(token), at(now))
        .expect_err("token must be rejected");
    assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(err.www_authenticate(), "Bearer error=\"invalid_token\"");
    assert!(!err.public_message().contains("issuer.example"));
    err.reason().clone()
}

#[test]
fn expiry_and_not_before_allow_sixty_seconds_of_skew() {
    let k = key(Algorithm::ES256, "k1");
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]),
        &JwksStore::new(),
    );
    let mut c = claims(ISS);
    c["exp"] = json!(NOW - 59);
    assert!(authn.authenticate(&bearer(&k.sign(&c)), at(NOW)).is_ok());
    c["exp"] = json!(NOW - 61);
    let reason = reject(&authn, &k.sign(&c), NOW);
    assert!(
        matches!(
            reason,
            RejectReason::Expired {
                now: NOW,
                skew_secs: 60,
                ..
            }
        ),
        "{reason:?}"
    );
    assert_eq!(reason.public_message(), "Jwt is expired");
    // Fractional NumericDates are honoured.
    c["exp"] = json!(NOW as f64 - 60.5);
    assert!(matches!(
        reject(&authn, &k.sign(&c), NOW),
        RejectReason::Expired { .. }
    ));

    let mut c = claims(ISS);
    c["nbf"] = json!(NOW + 59);
    assert!(authn.authenticate(&bearer(&k.sign(&c)), at(NOW)).is_ok());
    c["nbf"] = json!(NOW + 61);
    assert!(matches!(
        reject(&authn, &k.sign(&c), NOW),
        RejectReason::NotYetValid { .. }
    ));
    // Time comes only from the caller: the same token is fine a little later.
    assert!(
        authn
            .authenticate(&bearer(&k.sign(&c)), at(NOW + 2))
            .is_ok()
    );

    c["nbf"] = json!("tomorrow");
    assert_eq!(
        reject(&authn, &k.sign(&c), NOW),
        RejectReason::BadTimeClaim("nbf")
    );
    let mut c = claims(ISS);
    c["exp"] = json!(true);
    assert_eq!(
        reject(&authn, &k.sign(&c), NOW),
        RejectReason::BadTimeClaim("exp")
    );
}

#[test]
fn clock_skew_and_required_expiry_are_configurable() {
    let k = key(Algorithm::EdDSA, "k1");
    let yaml = policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]);
    let mut c = claims(ISS);
    c["exp"] = json!(NOW - 1);
    let strict = authenticator(&yaml, &JwksStore::new())
        .with_options(AuthnOptions::default().with_clock_skew(Duration::ZERO));
    assert!(matches!(
        reject(&strict, &k.sign(&c), NOW),
        RejectReason::Expired { skew_secs: 0, .. }
    ));

    let mut no_exp = claims(ISS);
    no_exp.as_object_mut().unwrap().remove("exp");
    // Istio accepts tokens without exp...
    let default = authenticator(&yaml, &JwksStore::new());
    assert!(
        default
            .authenticate(&bearer(&k.sign(&no_exp)), at(NOW))
            .is_ok()
    );
    // ...unless expiry is required.
    let require = default.with_options(AuthnOptions::default().with_require_expiration(true));
    assert_eq!(
        reject(&require, &k.sign(&no_exp), NOW),
        RejectReason::MissingExpiration
    );
}

#[test]
fn signatures_must_come_from_the_issuers_keys() {
    let k = key(Algorithm::RS256, "k1");
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]),
        &JwksStore::new(),
    );
    // Another key under the same kid: a forged token.
    let forger = key_variant(Algorithm::RS256, "k1", 1);
    assert_eq!(
        reject(&authn, &forger.sign(&claims(ISS)), NOW),
        RejectReason::BadSignature
    );
    // A genuine token with its payload swapped.
    let genuine = k.sign(&claims(ISS));
    let mut evil = claims(ISS);
    evil["sub"] = json!("admin");
    let evil_payload = k.sign(&evil).split('.').nth(1).unwrap().to_owned();
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!("{}.{evil_payload}.{}", parts[0], parts[2]);
    assert_eq!(reject(&authn, &tampered, NOW), RejectReason::BadSignature);
    // The signature of an ES256 token is no RS256 signature.
    let ec = key(Algorithm::ES256, "k1");
    let reason = reject(&authn, &ec.sign(&claims(ISS)), NOW);
    assert!(
        matches!(reason, RejectReason::NoMatchingKey { ref alg, .. } if alg == "ES256"),
        "{reason:?}"
    );
}

#[test]
fn alg_none_and_key_confusion_are_refused() {
    let k = key(Algorithm::RS256, "k1");
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]),
        &JwksStore::new(),
    );
    let genuine = k.sign(&claims(ISS));
    let payload = genuine.split('.').nth(1).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!("{}.{payload}.", b64.encode(r#"{"alg":"none","kid":"k1"}"#));
    assert_eq!(
        reject(&authn, &none, NOW),
        RejectReason::UnsupportedAlgorithm("none".into())
    );
    let none_sig = format!(
        "{}.{payload}.{}",
        b64.encode(r#"{"alg":"none"}"#),
        genuine.split('.').nth(2).unwrap()
    );
    assert_eq!(
        reject(&authn, &none_sig, NOW),
        RejectReason::UnsupportedAlgorithm("none".into())
    );
    // HS256 "signed" with the public key as the HMAC secret (the classic key confusion).
    let n = k.jwk["n"].as_str().unwrap().to_owned();
    let message = format!("{}.{payload}", b64.encode(r#"{"alg":"HS256","kid":"k1"}"#));
    let mac = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(n.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    let confused = format!("{message}.{mac}");
    assert_eq!(
        reject(&authn, &confused, NOW),
        RejectReason::UnsupportedAlgorithm("HS256".into())
    );
    // Changing the header's alg to another RSA algorithm breaks the signature.
    let ps_header = b64.encode(r#"{"alg":"PS256","kid":"k1"}"#);
    let relabeled = format!(
        "{ps_header}.{payload}.{}",
        genuine.split('.').nth(2).unwrap()
    );
    assert_eq!(reject(&authn, &relabeled, NOW), RejectReason::BadSignature);
}

#[test]
fn malformed_tokens_are_rejected_not_ignored() {
    let k = key(Algorithm::ES384, "k1");
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]),
        &JwksStore::new(),
    );
    for bad in [
        "abc",
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJFUzM4NCJ9.e30.%%%",
    ] {
        let reason = reject(&authn, bad, NOW);
        assert!(
            matches!(reason, RejectReason::Malformed(_)),
            "{bad}: {reason:?}"
        );
    }
    let genuine = k.sign(&claims(ISS));
    let truncated = &genuine[..genuine.len() - 8]; // still base64url, too short
    assert_eq!(reject(&authn, truncated, NOW), RejectReason::BadSignature);
}

#[test]
fn issuer_and_audiences_are_checked() {
    let k = key(Algorithm::PS256, "k1");
    let authn = authenticator(
        &policy_yaml(
            "jwt",
            &[inline_rule(ISS, &[&k], "audiences: [shop, admin]")],
        ),
        &JwksStore::new(),
    );
    let reason = reject(&authn, &k.sign(&claims("https://other.example")), NOW);
    assert_eq!(
        reason,
        RejectReason::UnknownIssuer(Some("https://other.example".into()))
    );
    let mut c = claims(ISS);
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        reject(&authn, &k.sign(&c), NOW),
        RejectReason::UnknownIssuer(None)
    );

    let mut c = claims(ISS);
    for (aud, ok) in [
        (json!("shop"), true),
        (json!(["x", "admin"]), true),
        (json!("other"), false),
        (json!([]), false),
        (json!(null), false),
    ] {
        c["aud"] = aud.clone();
        let result = authn.authenticate(&bearer(&k.sign(&c)), at(NOW));
        match (result, ok) {
            (Ok(o), true) => assert!(o.is_authenticated()),
            (Err(e), false) => assert!(
                matches!(e.reason(), RejectReason::AudienceMismatch { .. }),
                "{e}"
            ),
            (other, _) => panic!("aud {aud}: {other:?}"),
        }
    }
    // Without `audiences` any aud is fine.
    let open = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&k], "")]),
        &JwksStore::new(),
    );
    c["aud"] = json!("anything");
    assert!(open.authenticate(&bearer(&k.sign(&c)), at(NOW)).is_ok());
}

#[test]
fn keys_are_chosen_by_kid_type_and_alg() {
    let rsa = key(Algorithm::RS256, "rsa");
    let ec = key(Algorithm::ES256, "ec");
    let ed = key(Algorithm::EdDSA, "ed");
    let authn = authenticator(
        &policy_yaml("jwt", &[inline_rule(ISS, &[&rsa, &ec, &ed], "")]),
        &JwksStore::new(),
    );
    for k in [&rsa, &ec, &ed] {
        assert!(
            authn
                .authenticate(&bearer(&k.sign(&claims(ISS))), at(NOW))
                .is_ok()
        );
    }
    // An unknown kid finds no key, even though a key would verify the signature.
    let reason = reject(&authn, &rsa.with_kid("rotated").sign(&claims(ISS)), NOW);
    assert_eq!(
        reason,
        RejectReason::NoMatchingKey {
            alg: "RS256".into(),
            kid: Some("rotated".into())
        }
    );
    // A token without kid is tried against every key of its type.
    let header = json!({"alg": "ES256"});
    assert!(
        authn
            .authenticate(
                &bearer(&ec.sign_with_header(&header, &claims(ISS))),
                at(NOW)
            )
            .is_ok()
    );
}

#[test]
fn keys_without_kid_are_tried_in_turn() {
    let first = key(Algorithm::ES256, "x");
    let second = key(Algorithm::ES256, "y");
    let mut set: serde_json::Value =
        serde_json::from_str(&jwt_support::jwks(&[&first, &second])).unwrap();
    for k in set["keys"].as_array_mut().unwrap() {
        k.as_object_mut().unwrap().remove("kid");
    }
    let rule = format!("issuer: {ISS}\njwks: '{set}'\n");
    let authn = authenticator(&policy_yaml("jwt", &[rule]), &JwksStore::new());
    // The token names a kid, but keys without kid are still candidates (Envoy's rule).
    assert!(
        authn
            .authenticate(&bearer(&second.sign(&claims(ISS))), at(NOW))
            .is_ok()
    );
    assert!(
        authn
            .authenticate(&bearer(&first.sign(&claims(ISS))), at(NOW))
            .is_ok()
    );
    let stranger = key(Algorithm::ES256, "z");
    assert_eq!(
        reject(&authn, &stranger.sign(&claims(ISS)), NOW),
        RejectReason::BadSignature
    );
}

#[test]
fn a_key_restricted_by_alg_verifies_only_that_alg() {
    let rs = key(Algorithm::RS256, "k1");
    let mut jwk = rs.jwk.clone();
    jwk["alg"] = json!("RS256");
    let rule = format!("issuer: {ISS}\njwks: '{}'\n", json!({"keys": [jwk]}));
    let authn = authenticator(&policy_yaml("jwt", &[rule]), &JwksStore::new());
    assert!(
        authn
            .authenticate(&bearer(&rs.sign(&claims(ISS))), at(NOW))
            .is_ok()
    );
    let ps = rs.for_alg(Algorithm::PS256);
    assert!(matches!(
        reject(&authn, &ps.sign(&claims(ISS)), NOW),
        RejectReason::NoMatchingKey { .. }
    ));
}

#[test]
fn remote_keys_come_from_the_store_and_rotate_without_rebuild() {
    let old = key(Algorithm::ES256, "old");
    let new = key(Algorithm::ES256, "new");
    let uri = "https://issuer.example/jwks.json";
    let yaml = policy_yaml(
        "jwt",
        &[format!("issuer: {ISS}\njwksUri: {uri}\ntimeout: 2s")],
    );
    let store = JwksStore::new();
    let authn = authenticator(&yaml, &store);
    let remote = authn.remote_jwks();
    assert_eq!(remote.len(), 1);
    assert_eq!(
        (remote[0].url.as_str(), remote[0].timeout),
        (uri, Duration::from_secs(2))
    );

    // Not fetched yet: fail closed.
    let reason = reject(&authn, &old.sign(&claims(ISS)), NOW);
    assert_eq!(reason, RejectReason::KeysUnavailable(uri.into()));
    store.insert(uri, Jwks::parse(&jwt_support::jwks(&[&old])).unwrap());
    assert!(
        authn
            .authenticate(&bearer(&old.sign(&claims(ISS))), at(NOW))
            .is_ok()
    );
    assert!(matches!(
        reject(&authn, &new.sign(&claims(ISS)), NOW),
        RejectReason::NoMatchingKey { .. }
    ));
    // Rotation: the same authenticator sees the new set.
    store.insert(uri, Jwks::parse(&jwt_support::jwks(&[&new])).unwrap());
    assert!(
        authn
            .authenticate(&bearer(&new.sign(&claims(ISS))), at(NOW))
            .is_ok()
    );
    assert!(matches!(
        reject(&authn, &old.sign(&claims(ISS)), NOW),
        RejectReason::NoMatchingKey { .. }
    ));
    store.remove(uri);
    assert_eq!(
        reject(&authn, &new.sign(&claims(ISS)), NOW),
        RejectReason::KeysUnavailable(uri.into())
    );
}

#[test]
fn openid_discovery_when_no_keys_are_configured() {
    let yaml = policy_yaml("jwt", &[format!("issuer: {ISS}/")]);
    let store = JwksStore::new();
    let authn = authenticator(&yaml, &store);
    let remote = authn.remote_jwks();
    assert_eq!(
        remote[0].url,
        "https://issuer.example/.well-known/openid-configuration"
    );
    assert_eq!(
        remote[0].kind,
        mesh_policy::authn::jwt::RemoteJwksKind::OpenIdConfiguration
    );
    assert_eq!(remote[0].timeout, Duration::from_secs(5));
    let k = key(Algorithm::RS256, "k1");
    store.insert(
        remote[0].url.clone(),
        Jwks::parse(&jwt_support::jwks(&[&k])).unwrap(),
    );
    assert!(
        authn
            .authenticate(&bearer(&k.sign(&claims(&format!("{ISS}/")))), at(NOW))
            .is_ok()
    );
}

#[test]
fn jwks_skips_unusable_keys_and_reports_them() {
    let good = key(Algorithm::EdDSA, "good");
    let set = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"},
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
        {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "short"},
        {"kty": "OKP", "crv": "Ed25519", "x": good.jwk["x"], "alg": "ES256", "kid": "wrong-alg"},
        {"kty": "OKP", "crv": "X25519", "x": good.jwk["x"], "kid": "x25519"},
        {"kty": "WAT", "kid": "wat"},
        "not an object",
        good.jwk,
    ]});
    let jwks = Jwks::parse(&set.to_string()).unwrap();
    assert_eq!(jwks.keys().len(), 1);
    assert_eq!(jwks.keys()[0].kid(), Some("good"));
    let reasons: Vec<String> = jwks.skipped().iter().map(ToString::to_string).collect();
    assert_eq!(reasons.len(), 9, "{reasons:#?}");
    for (reason, needle) in reasons.iter().zip([
        "symmetric",
        "P-521",
        "RSA key of 17 bits",
        "\"enc\"",
        "32 bytes",
        "does not fit",
        "X25519",
        "WAT",
        "not a JSON object",
    ]) {
        assert!(reason.contains(needle), "{reason} should mention {needle}");
    }
}

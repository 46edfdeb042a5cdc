//! Property tests: whatever a client sends, authentication answers (pass or 401) and never
//! panics; a token that was not signed by the issuer's key never authenticates.

mod jwt_support;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use jwt_support::{NOW, at, authenticator, claims, inline_rule, key, policy_yaml};
use mesh_policy::authn::{Authenticator, jwt::JwksStore};
use proptest::prelude::*;
use std::sync::LazyLock;

static AUTHN: LazyLock<(Authenticator, String)> = LazyLock::new(|| {
    let rsa = key(Algorithm::RS256, "rsa");
    let ec = key(Algorithm::ES256, "ec");
    let ed = key(Algorithm::EdDSA, "ed");
    let extra = "fromHeaders:\n- name: authorization\n  prefix: 'Bearer '\n- name: x-jwt\n\
                 fromParams: [access_token]\nfromCookies: [session]\n\
                 outputClaimToHeaders: [{header: x-sub, claim: sub}]\n";
    let yaml = policy_yaml(
        "jwt",
        &[inline_rule(
            "https://issuer.example",
            &[&rsa, &ec, &ed],
            extra,
        )],
    );
    let genuine = ec.sign(&claims("https://issuer.example"));
    (authenticator(&yaml, &JwksStore::new()), genuine)
});

fn judge(headers: &[(&str, &[u8])], uri: &str) -> Option<bool> {
    let mut builder = http::Request::get("/");
    if let Ok(parsed) = uri.parse::<http::Uri>() {
        builder = builder.uri(parsed);
    }
    for (name, value) in headers {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            builder = builder.header(*name, value);
        }
    }
    let parts = builder.body(()).ok()?.into_parts().0;
    match AUTHN.0.authenticate(&parts, at(NOW)) {
        Ok(outcome) => Some(outcome.is_authenticated()),
        Err(err) => {
            // Every rejection renders for logs and for the client.
            assert!(!err.to_string().is_empty());
            assert!(!err.public_message().is_empty());
            Some(false)
        }
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_=-]{0,40}",
        any::<Vec<u8>>().prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        "\\PC{0,30}".prop_map(|s| URL_SAFE_NO_PAD.encode(s)),
        prop::sample::select(vec![
            r#"{"alg":"none"}"#,
            r#"{"alg":"RS256","kid":"rsa"}"#,
            r#"{"alg":"ES256"}"#,
            r#"{"alg":"EdDSA","kid":7}"#,
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"https://issuer.example","exp":1e300}"#,
            r#"{"iss":"https://issuer.example","nbf":-1,"exp":"x"}"#,
            r#"{"iss":"https://issuer.example","sub":{"a":1}}"#,
            r#"[]"#,
            r#"null"#,
        ])
        .prop_map(|s| URL_SAFE_NO_PAD.encode(s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(raw in any::<Vec<u8>>(), text in "\\PC{0,200}") {
        let bearer = [b"Bearer ".as_slice(), &raw].concat();
        judge(&[("authorization", &bearer), ("x-jwt", text.as_bytes())], "/");
        judge(&[("cookie", &raw)], &format!("/?access_token={text}"));
        judge(&[("x-jwt", &raw)], &text);
    }

    #[test]
    fn forged_tokens_never_authenticate(header in segment(), payload in segment(), signature in segment()) {
        let token = format!("{header}.{payload}.{signature}");
        let authenticated = judge(&[("authorization", format!("Bearer {token}").as_bytes())], "/");
        prop_assert_ne!(authenticated, Some(true), "{}", token);
    }

    #[test]
    fn altering_a_genuine_token_breaks_it(position in 0usize..400, byte in any::<u8>()) {
        let genuine = AUTHN.1.clone();
        let mut bytes = genuine.clone().into_bytes();
        let position = position % bytes.len();
        prop_assume!(bytes[position] != byte);
        bytes[position] = byte;
        let altered = String::from_utf8_lossy(&bytes).into_owned();
        // Changing the encoding of trailing bits may leave the decoded bytes unchanged;
        // everything else must fail.
        let same_bytes = altered.split('.').zip(genuine.split('.')).all(|(a, b)| {
            URL_SAFE_NO_PAD.decode(a).ok().zip(URL_SAFE_NO_PAD.decode(b).ok()).is_some_and(|(x, y)| x == y)
        });
        prop_assume!(!same_bytes);
        let authenticated = judge(&[("x-jwt", altered.as_bytes())], "/");
        prop_assert_ne!(authenticated, Some(true), "{}", altered);
    }
}

#[test]
fn the_genuine_token_is_accepted() {
    assert_eq!(judge(&[("x-jwt", AUTHN.1.as_bytes())], "/"), Some(true));
}

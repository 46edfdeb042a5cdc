//! Real keys and real tokens for the RequestAuthentication tests: key pairs generated with
//! rcgen (aws-lc-rs), published as JWKS, and tokens signed with jsonwebtoken for every
//! algorithm the engine verifies.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::{Arc, LazyLock};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use mesh_core::clock::Timestamp;
use serde_json::{Value, json};

/// "Now" in every test: 2023-11-14T22:13:20Z.
pub const NOW: u64 = 1_700_000_000;

pub fn at(secs: u64) -> Timestamp {
    Timestamp::from_nanos(secs * 1_000_000_000)
}

/// A signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public key as a JWK (with `kid`).
    pub jwk: Value,
}

impl TestKey {
    /// Signs `claims` with this key, `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": alg_name(self.alg), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// Signs with an arbitrary header (for `kid`-less tokens and algorithm confusion).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.alg)
            .expect("signing works");
        format!("{message}.{signature}")
    }

    /// The same key under another `kid`.
    pub fn with_kid(&self, kid: &str) -> Self {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        Self {
            kid: kid.to_owned(),
            alg: self.alg,
            encoding: self.encoding.clone(),
            jwk,
        }
    }

    /// The same key material used with another algorithm of its family (RS256 key for PS384).
    pub fn for_alg(&self, alg: Algorithm) -> Self {
        Self {
            kid: self.kid.clone(),
            alg,
            encoding: self.encoding.clone(),
            jwk: self.jwk.clone(),
        }
    }
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        other => panic!("no name for {other:?}"),
    }
}

static RSA: LazyLock<Arc<rcgen::KeyPair>> = LazyLock::new(|| {
    Arc::new(rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA keygen"))
});
static RSA_OTHER: LazyLock<Arc<rcgen::KeyPair>> = LazyLock::new(|| {
    Arc::new(rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA keygen"))
});

/// A fresh key for `alg` (RSA keys are generated once per test binary and shared, as 2048-bit
/// generation is slow in debug builds; `variant` 1 gives a second, different RSA key).
pub fn key(alg: Algorithm, kid: &str) -> TestKey {
    key_variant(alg, kid, 0)
}

pub fn key_variant(alg: Algorithm, kid: &str, variant: u8) -> TestKey {
    let (encoding, mut jwk) = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let pair = if variant == 0 { &*RSA } else { &*RSA_OTHER };
            let pkcs1 = pkcs8_inner_key(&pair.serialize_der());
            let (n, e) = rsa_public_components(pair.public_key_raw());
            (
                EncodingKey::from_rsa_der(&pkcs1),
                json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)}),
            )
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let (rcgen_alg, crv, size) = if alg == Algorithm::ES256 {
                (&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32)
            } else {
                (&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", 48)
            };
            let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("EC keygen");
            let point = pair.public_key_raw();
            assert_eq!(point.len(), 1 + 2 * size);
            (
                EncodingKey::from_ec_der(&pair.serialize_der()),
                json!({"kty": "EC", "crv": crv,
                       "x": URL_SAFE_NO_PAD.encode(&point[1..=size]),
                       "y": URL_SAFE_NO_PAD.encode(&point[1 + size..])}),
            )
        }
        Algorithm::EdDSA => {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 keygen");
            (
                EncodingKey::from_ed_der(&pair.serialize_der()),
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())}),
            )
        }
        other => panic!("no test key for {other:?}"),
    };
    jwk["kid"] = json!(kid);
    TestKey {
        kid: kid.to_owned(),
        alg,
        encoding,
        jwk,
    }
}

/// `{"keys": [...]}` of these keys' public JWKs.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// Standard claims from `iss`, valid around [`NOW`].
pub fn claims(iss: &str) -> Value {
    json!({"iss": iss, "sub": "alice", "aud": "shop", "iat": NOW - 10, "exp": NOW + 3600})
}

/// The content of the private-key OCTET STRING of a PKCS#8 `PrivateKeyInfo` (the PKCS#1
/// `RSAPrivateKey` for RSA), which is what jsonwebtoken's RSA signer reads.
fn pkcs8_inner_key(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info, _) = der_tlv(pkcs8);
    let (_, _version, rest) = der_tlv(info);
    let (_, _algorithm, rest) = der_tlv(rest);
    let (tag, key, _) = der_tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8 privateKey is an OCTET STRING");
    key.to_vec()
}

/// `(n, e)` of a PKCS#1 `RSAPublicKey`.
fn rsa_public_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (_, seq, _) = der_tlv(der);
    let (_, n, rest) = der_tlv(seq);
    let (_, e, _) = der_tlv(rest);
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|x| **x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    (strip(n), strip(e))
}

/// One DER TLV: (tag, content, rest).
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = if input[1] < 0x80 {
        (input[1] as usize, 2)
    } else {
        let count = (input[1] & 0x7f) as usize;
        let len = input[2..2 + count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + count)
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// A RequestAuthentication in namespace `shop` with these `jwtRules` (YAML list items).
pub fn policy_yaml(name: &str, rules: &[String]) -> String {
    let mut yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
         metadata: {{name: {name}, namespace: shop}}\nspec:\n  jwtRules:\n"
    );
    for rule in rules {
        for (i, line) in rule.lines().enumerate() {
            yaml.push_str(if i == 0 { "  - " } else { "    " });
            yaml.push_str(line);
            yaml.push('\n');
        }
    }
    yaml
}

/// A rule trusting `issuer` with these keys inline, plus `extra` YAML lines.
pub fn inline_rule(issuer: &str, keys: &[&TestKey], extra: &str) -> String {
    format!("issuer: {issuer}\njwks: '{}'\n{extra}", jwks(keys))
}

/// An authenticator for workload `shop` (no labels) over these policy documents.
pub fn authenticator(
    yaml: &str,
    store: &mesh_policy::authn::JwksStore,
) -> mesh_policy::authn::Authenticator {
    let policies = mesh_policy::authn::jwt::parse_request_authentications(yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    mesh_policy::authn::Authenticator::new(
        &policies,
        &mesh_policy::authz::Workload::new("shop"),
        store.clone(),
    )
}

/// A GET request's parts for `uri` with these headers.
pub fn request(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("valid request").into_parts().0
}

/// `Authorization: Bearer <token>` request to `/`.
pub fn bearer(token: &str) -> http::request::Parts {
    request("/", &[("authorization", &format!("Bearer {token}"))])
}

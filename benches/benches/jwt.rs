//! JWT request authentication: `mesh_policy::authn::Authenticator` verifying a bearer token
//! against the `jsonwebtoken` library verifying the same token directly, for RS256 (2048-bit
//! RSA), ES256 (P-256) and EdDSA (Ed25519).
//!
//! Rows of group `jwt`, per algorithm:
//!
//! - `authenticator`: `Authenticator::authenticate_headers` on a request carrying
//!   `Authorization: Bearer <token>`, for a RequestAuthentication with one rule (issuer,
//!   audience, inline JWKS of one key): finding the token, parsing header and claims, issuer,
//!   time and audience checks, key choice, the signature, and building the outcome
//!   (`request.auth.*` claims for authorization, the token-removal mutation);
//! - `jsonwebtoken_decode`: baseline, `jsonwebtoken::decode::<serde_json::Value>` of the same
//!   token with the same key and a `Validation` checking the same claims (issuer, audience,
//!   `exp` with 60 s of leeway): what a service calling the library directly pays;
//! - `signature_only`: `jsonwebtoken::crypto::verify` of the signature alone, the floor both
//!   sit on.
//!
//! `authenticator / jsonwebtoken_decode` is the price of the Istio semantics around the same
//! cryptography (its goal is to stay close to 1). Tokens expire a day after the bench starts,
//! so both sides accept them at the real current time; each row checks its result once before
//! it is timed.
//!
//! `cargo bench --bench jwt -- --quick` (filter with a regular expression after `--`).

use std::{
    hint::black_box,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Uri};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mesh_core::clock::Timestamp;
use mesh_policy::{
    authn::{Authenticator, JwksStore, jwt::parse_request_authentications},
    authz::Workload,
};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.example";

/// One algorithm's key material: the signer, the public JWK and the library's decoding key.
struct Key {
    name: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    decoding: DecodingKey,
}

fn key(name: &'static str, alg: Algorithm) -> Key {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match alg {
        Algorithm::RS256 => {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA keygen");
            let pkcs1 = der_octet_string_of_pkcs8(&pair.serialize_der());
            let (n, e) = rsa_public_components(pair.public_key_raw());
            Key {
                name,
                alg,
                encoding: EncodingKey::from_rsa_der(&pkcs1),
                jwk: json!({"kty": "RSA", "kid": name, "n": b64(&n), "e": b64(&e)}),
                decoding: DecodingKey::from_rsa_components(&b64(&n), &b64(&e))
                    .expect("RSA decoding key"),
            }
        }
        Algorithm::ES256 => {
            let pair =
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC keygen");
            let point = pair.public_key_raw();
            let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
            Key {
                name,
                alg,
                encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
                jwk: json!({"kty": "EC", "crv": "P-256", "kid": name, "x": x, "y": y}),
                decoding: DecodingKey::from_ec_components(&x, &y).expect("EC decoding key"),
            }
        }
        Algorithm::EdDSA => {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 keygen");
            let x = b64(pair.public_key_raw());
            Key {
                name,
                alg,
                encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
                jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": name, "x": x}),
                decoding: DecodingKey::from_ed_components(&x).expect("Ed25519 decoding key"),
            }
        }
        other => panic!("no bench key for {other:?}"),
    }
}

/// The content of the private-key OCTET STRING of a PKCS#8 `PrivateKeyInfo` (for RSA, the
/// PKCS#1 `RSAPrivateKey` jsonwebtoken's signer reads).
fn der_octet_string_of_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info, _) = der_tlv(pkcs8);
    let (_, _version, rest) = der_tlv(info);
    let (_, _algorithm, rest) = der_tlv(rest);
    let (tag, key, _) = der_tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8 privateKey is an OCTET STRING");
    key.to_vec()
}

/// `(n, e)` of a PKCS#1 `RSAPublicKey`, without leading zero bytes.
fn rsa_public_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (_, sequence, _) = der_tlv(der);
    let (_, n, rest) = der_tlv(sequence);
    let (_, e, _) = der_tlv(rest);
    let strip = |b: &[u8]| {
        b.iter()
            .copied()
            .skip_while(|x| *x == 0)
            .collect::<Vec<u8>>()
    };
    (strip(n), strip(e))
}

/// One DER TLV: (tag, content, rest). Enough for the well-formed keys rcgen writes.
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = if input[1] < 0x80 {
        (usize::from(input[1]), 2)
    } else {
        let count = usize::from(input[1] & 0x7f);
        let len = input[2..2 + count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + count)
    };
    (tag, &input[header..header + len], &input[header + len..])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt");
    let now = unix_now();
    let claims = json!({
        "iss": ISSUER, "sub": "alice", "aud": "shop", "iat": now, "exp": now + 86_400,
        "groups": ["admin", "dev"], "email": "alice@example.com",
    });
    for (name, alg) in [
        ("rs256", Algorithm::RS256),
        ("es256", Algorithm::ES256),
        ("eddsa", Algorithm::EdDSA),
    ] {
        let key = key(name, alg);
        let mut header = Header::new(key.alg);
        header.kid = Some(key.name.to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("signs");

        let jwks = json!({"keys": [key.jwk]}).to_string();
        let yaml = format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
             metadata: {{name: jwt, namespace: shop}}\nspec:\n  jwtRules:\n  \
             - issuer: {ISSUER}\n    audiences: [shop]\n    jwks: '{jwks}'\n"
        );
        let policies = parse_request_authentications(&yaml).expect("the policy loads");
        let authn = Authenticator::new(&policies, &Workload::new("shop"), JwksStore::new());
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value"),
        );
        let uri: Uri = "/orders?page=2".parse().expect("a URI");
        let at = Timestamp::from_nanos(now * 1_000_000_000);
        let outcome = authn
            .authenticate_headers(&headers, &uri, at)
            .expect("the authenticator accepts the token");
        let auth = outcome.auth.expect("authenticated");
        assert_eq!(
            auth.principal.as_deref(),
            Some("https://issuer.example/alice")
        );
        group.bench_function(format!("{name}/authenticator"), |b| {
            b.iter(|| {
                let outcome = authn.authenticate_headers(black_box(&headers), &uri, at);
                black_box(outcome.is_ok())
            });
        });

        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&["shop"]);
        validation.leeway = 60;
        let decoded = jsonwebtoken::decode::<Value>(&token, &key.decoding, &validation)
            .expect("jsonwebtoken accepts the token");
        assert_eq!(decoded.claims["sub"], "alice");
        group.bench_function(format!("{name}/jsonwebtoken_decode"), |b| {
            b.iter(|| {
                let decoded =
                    jsonwebtoken::decode::<Value>(black_box(&token), &key.decoding, &validation);
                black_box(decoded.is_ok())
            });
        });

        let (message, signature) = token.rsplit_once('.').expect("three segments");
        assert!(
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.decoding, key.alg)
                .expect("verifies")
        );
        group.bench_function(format!("{name}/signature_only"), |b| {
            b.iter(|| {
                let ok = jsonwebtoken::crypto::verify(
                    black_box(signature),
                    message.as_bytes(),
                    &key.decoding,
                    key.alg,
                );
                black_box(ok.is_ok())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);

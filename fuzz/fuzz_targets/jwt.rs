//! Feeds tokens to `mesh_policy::authn::Authenticator` (Istio RequestAuthentication) at every
//! location its rules read, against fixed keys, and checks that nothing unsigned is accepted.
//!
//! Setup: two rules. `https://issuer.example` (audience `shop`) trusts an inline JWKS holding
//! an ES256 key (`kid: ec1`) and an Ed25519 key (`kid: ed1`), reads `x-jwt`,
//! `Authorization: Bearer`, `?token=` and the `session` cookie, and outputs the payload and
//! `sub` to headers. `https://other.example` trusts the Ed25519 key without a `kid`, fetched
//! into the `JwksStore`, and reads Istio's default locations.
//!
//! Input layout (read with `arbitrary::Unstructured`): the time, then up to four tokens, each
//! made one of these ways and put at a chosen location:
//! - arbitrary text;
//! - chosen header and claims (issuer, audience, `exp`, `nbf`, `kid`, extra claims) signed by
//!   a trusted key, or arbitrary text as the payload signed by a trusted key;
//! - the same signed by an attacker's key that claims a trusted `kid`, or as HS256 with the
//!   public key as the HMAC secret (key confusion);
//! - splices: segments of earlier tokens recombined, bytes overwritten.
//!
//! Invariants: no panic; an accepted token's claims are exactly those of a payload a trusted
//! key signed in this run (and the payload header carries that payload); its issuer is the
//! verifying rule's, its `exp`/`nbf` hold with 60 s of skew and, for the first rule, its
//! audience includes `shop`. A single well-formed, trusted-signed token with valid claims at a
//! location its issuer's rule reads is accepted (no false rejection).

#![no_main]

use std::sync::LazyLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderValue, Request};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::{
    arbitrary::{Result, Unstructured},
    fuzz_target,
};
use mesh_core::clock::Timestamp;
use mesh_policy::authn::{
    Authenticator, JwksStore,
    jwt::{Jwks, RequestMutation, parse_request_authentications},
};
use mesh_policy::authz::Workload;
use serde_json::{Map, Value, json};

/// P-256 key published as `ec1` (a test key made with `openssl genpkey`; never used elsewhere).
const EC1: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgpKD7nH8l8LfgkND5
NXUAq/HeuWWJu69Mh1TxLuPVmTqhRANCAARbHUih87rxxmpngIDkZOfJRqlGnIXj
3PWaGVWkOys5WIjCcfwkRDAyEiKTRTVsgrBWNriQjXHYyJcsSvlpL/Jp
-----END PRIVATE KEY-----
";
/// The attacker's P-256 key: published nowhere.
const EC_ATTACKER: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1LdZhTgR+qXOP/H4
6QYvgZjpM2nX1dsx6WJXsSH03qmhRANCAASIPfvPO4gl3v8CEmnXJhUZF2bjTsBa
XEcUkzupxrir/lpr8610RVLpRSPX/8aabuOmCd9onXR3Op/VRunoPyk4
-----END PRIVATE KEY-----
";
/// Ed25519 key published as `ed1` (and kid-less for the second issuer).
const ED1: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICUKhgyxPJ+MV4sfkm5MpvRa2RQ8Kdh4hASfIkkF60fK
-----END PRIVATE KEY-----
";

const ISSUER: &str = "https://issuer.example";
const OTHER: &str = "https://other.example";
const OTHER_JWKS: &str = "https://other.example/jwks.json";
/// Around 2023-11-14.
const NOW: i64 = 1_700_000_000;
const SKEW: i64 = 60;

struct Fixture {
    ec1: EncodingKey,
    ed1: EncodingKey,
    attacker: EncodingKey,
    /// The ES256 public key's JWK, as text: the HMAC secret of the key-confusion attack.
    ec1_jwk: String,
    authn: Authenticator,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ec = rcgen::KeyPair::from_pem(EC1).expect("EC1 parses");
    let point = ec.public_key_raw();
    let ec1_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec1", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
    let ed = rcgen::KeyPair::from_pem(ED1).expect("ED1 parses");
    let ed_x = URL_SAFE_NO_PAD.encode(ed.public_key_raw());
    let ed1_jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed1", "x": ed_x});
    let inline = json!({"keys": [ec1_jwk, ed1_jwk]}).to_string();
    let yaml = format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{ name: jwt, namespace: shop }}
spec:
  jwtRules:
  - issuer: {ISSUER}
    audiences: [shop]
    jwks: '{inline}'
    fromHeaders:
    - name: x-jwt
    - name: Authorization
      prefix: "Bearer "
    fromParams: [token]
    fromCookies: [session]
    outputPayloadToHeader: x-payload
    outputClaimToHeaders:
    - header: x-sub
      claim: sub
  - issuer: {OTHER}
    jwksUri: {OTHER_JWKS}
"#
    );
    let policies = parse_request_authentications(&yaml).expect("the fixture policy loads");
    let store = JwksStore::new();
    let other = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ed_x}]}).to_string();
    store.insert(
        OTHER_JWKS,
        Jwks::parse(&other).expect("the store's JWKS parses"),
    );
    let authn = Authenticator::new(&policies, &Workload::new("shop"), store);
    Fixture {
        ec1: EncodingKey::from_ec_der(&ec.serialize_der()),
        ed1: EncodingKey::from_ed_der(&ed.serialize_der()),
        attacker: EncodingKey::from_ec_der(
            &rcgen::KeyPair::from_pem(EC_ATTACKER)
                .expect("the attacker key parses")
                .serialize_der(),
        ),
        ec1_jwk: ec1_jwk.to_string(),
        authn,
    }
});

/// Where a token is put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// `Authorization: Bearer` (both rules).
    Bearer,
    /// `x-jwt` (first rule).
    XJwt,
    /// `?token=` (first rule).
    TokenParam,
    /// `?access_token=` (second rule).
    AccessTokenParam,
    /// `Cookie: session=` (first rule).
    Cookie,
}

const PLACES: [Place; 5] = [
    Place::Bearer,
    Place::XJwt,
    Place::TokenParam,
    Place::AccessTokenParam,
    Place::Cookie,
];

impl Place {
    fn read_by(self, issuer: &str) -> bool {
        match self {
            Self::Bearer => true,
            Self::XJwt | Self::TokenParam | Self::Cookie => issuer == ISSUER,
            Self::AccessTokenParam => issuer == OTHER,
        }
    }
}

/// A payload a trusted key signed: its segment and claims.
struct Signed {
    payload_b64: String,
    claims: Option<Map<String, Value>>,
}

/// What the input asked for, and whether it must be accepted.
struct Case {
    tokens: Vec<(String, Place)>,
    trusted: Vec<Signed>,
    /// Set when the only token is trusted-signed with claims valid for a rule reading it.
    must_accept: bool,
}

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let mut u = Unstructured::new(data);
    let Ok((now, case)) = build(&mut u, fixture) else {
        return;
    };
    check(fixture, now, &case);
});

fn sign(key: &EncodingKey, alg: Algorithm, header: &str, payload: &str) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signs");
    format!("{message}.{signature}")
}

fn time_claim(u: &mut Unstructured<'_>, now: i64) -> Result<Option<Value>> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => None,
        1 => Some(json!(now + 3600)),
        2 => Some(json!(now - 3600)),
        3 => Some(json!(now + i64::from(u.int_in_range(-90..=90i8)?))),
        4 => Some(json!(u.arbitrary::<i64>()?)),
        5 => Some(json!(u.arbitrary::<f64>()?)),
        6 => Some(json!(u.arbitrary::<&str>()?)),
        _ => Some(Value::Null),
    })
}

/// Structured claims; also says whether they are valid for `issuer`'s rule at `now`.
fn claims(
    u: &mut Unstructured<'_>,
    now: i64,
) -> Result<(Map<String, Value>, Option<&'static str>)> {
    let mut claims = Map::new();
    let issuer = match u.int_in_range(0..=3u8)? {
        0 => Some(ISSUER),
        1 => Some(OTHER),
        2 => {
            claims.insert("iss".into(), json!(u.arbitrary::<&str>()?));
            None
        }
        _ => None,
    };
    if let Some(issuer) = issuer {
        claims.insert("iss".into(), json!(issuer));
    }
    claims.insert("sub".into(), json!(u.arbitrary::<&str>()?));
    let aud_ok = match u.int_in_range(0..=4u8)? {
        0 => {
            claims.insert("aud".into(), json!("shop"));
            true
        }
        1 => {
            claims.insert("aud".into(), json!(["other", "shop"]));
            true
        }
        2 => {
            claims.insert("aud".into(), json!(u.arbitrary::<&str>()?));
            false
        }
        3 => {
            claims.insert("aud".into(), json!(7));
            false
        }
        _ => false,
    };
    let exp = time_claim(u, now)?;
    let nbf = time_claim(u, now)?;
    let time_ok = |v: &Option<Value>, valid: &dyn Fn(i64) -> bool| match v {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_i64().is_some_and(valid),
        Some(_) => false,
    };
    let exp_ok = time_ok(&exp, &|exp| now <= exp.saturating_add(SKEW));
    let nbf_ok = time_ok(&nbf, &|nbf| now.saturating_add(SKEW) >= nbf);
    // Floats and huge values are legal NumericDates; only judge the plain integer cases.
    let judged = [&exp, &nbf].iter().all(|v| match v {
        Some(Value::Number(n)) => n.as_i64().is_some_and(|t| t.abs_diff(now) < 1 << 40),
        _ => true,
    });
    if let Some(exp) = exp {
        claims.insert("exp".into(), exp);
    }
    if let Some(nbf) = nbf {
        claims.insert("nbf".into(), nbf);
    }
    if u.arbitrary()? {
        let name: &str = u.arbitrary()?;
        if !matches!(name, "iss" | "sub" | "aud" | "exp" | "nbf") {
            claims.insert(name.into(), json!(u.arbitrary::<&str>()?));
        }
    }
    let valid_for = issuer.filter(|i| judged && exp_ok && nbf_ok && (*i == OTHER || aud_ok));
    Ok((claims, valid_for))
}

fn build(u: &mut Unstructured<'_>, f: &Fixture) -> Result<(i64, Case)> {
    let now = NOW + i64::from(u.arbitrary::<i16>()?);
    let count = u.int_in_range(1..=4u8)?;
    let mut case = Case {
        tokens: Vec::new(),
        trusted: Vec::new(),
        must_accept: false,
    };
    let mut accept_candidate = false;
    for _ in 0..count {
        let place = *u.choose(&PLACES)?;
        let token = match u.int_in_range(0..=5u8)? {
            0 => u.arbitrary::<&str>()?.to_owned(),
            1 | 2 => {
                let ed = u.arbitrary::<bool>()?;
                let (key, alg, own_kid) = if ed {
                    (&f.ed1, Algorithm::EdDSA, "ed1")
                } else {
                    (&f.ec1, Algorithm::ES256, "ec1")
                };
                let kid = match u.int_in_range(0..=3u8)? {
                    0 => Some(own_kid),
                    1 => None,
                    2 => Some(if ed { "ec1" } else { "ed1" }),
                    _ => Some("zz"),
                };
                let mut header = json!({"alg": if ed { "EdDSA" } else { "ES256" }, "typ": "JWT"});
                if let Some(kid) = kid {
                    header["kid"] = json!(kid);
                }
                let (payload, valid_for) = if u.int_in_range(0..=3u8)? == 0 {
                    (u.arbitrary::<&str>()?.to_owned(), None)
                } else {
                    let (claims, valid_for) = claims(u, now)?;
                    (Value::Object(claims).to_string(), valid_for)
                };
                // The claims as the verifier reads them (serde_json's float parsing may differ
                // from the value written in the last bit).
                let parsed = serde_json::from_str::<Map<String, Value>>(&payload).ok();
                let token = sign(key, alg, &header.to_string(), &payload);
                case.trusted.push(Signed {
                    payload_b64: URL_SAFE_NO_PAD.encode(&payload),
                    claims: parsed,
                });
                // Keys: the first rule has both (by kid), the second the Ed25519 key only.
                let key_ok = |issuer: &str| {
                    if issuer == ISSUER {
                        kid.is_none() || kid == Some(own_kid)
                    } else {
                        ed
                    }
                };
                accept_candidate = count == 1
                    && valid_for.is_some_and(|issuer| place.read_by(issuer) && key_ok(issuer));
                token
            }
            3 => {
                let (claims, _) = claims(u, now)?;
                let kid = if u.arbitrary()? {
                    r#","kid":"ec1""#
                } else {
                    ""
                };
                let header = format!(r#"{{"alg":"ES256"{kid}}}"#);
                sign(
                    &f.attacker,
                    Algorithm::ES256,
                    &header,
                    &Value::Object(claims).to_string(),
                )
            }
            4 => {
                let (claims, _) = claims(u, now)?;
                let secret = EncodingKey::from_secret(f.ec1_jwk.as_bytes());
                let header = r#"{"alg":"HS256","kid":"ec1"}"#;
                sign(
                    &secret,
                    Algorithm::HS256,
                    header,
                    &Value::Object(claims).to_string(),
                )
            }
            _ => splice(u, &case.tokens)?,
        };
        case.tokens.push((token, place));
    }
    case.must_accept = accept_candidate;
    Ok((now, case))
}

/// Recombines segments of earlier tokens and overwrites a few bytes.
fn splice(u: &mut Unstructured<'_>, earlier: &[(String, Place)]) -> Result<String> {
    let Some(first) = earlier.first() else {
        return Ok(u.arbitrary::<&str>()?.to_owned());
    };
    let pick =
        |u: &mut Unstructured<'_>| -> Result<&str> { Ok(&u.choose(earlier).unwrap_or(first).0) };
    let segment = |token: &str, i: usize| token.split('.').nth(i).unwrap_or("").to_owned();
    let (a, b, c) = (pick(u)?, pick(u)?, pick(u)?);
    let mut bytes = format!("{}.{}.{}", segment(a, 0), segment(b, 1), segment(c, 2)).into_bytes();
    for _ in 0..u.int_in_range(0..=3u8)? {
        if bytes.is_empty() {
            break;
        }
        let i = u.choose_index(bytes.len())?;
        bytes[i] = *u.choose(b"AZaz09-_.=+/ \x00")?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn check(f: &Fixture, now: i64, case: &Case) {
    let mut query: Vec<String> = Vec::new();
    let mut headers: Vec<(&str, String)> = Vec::new();
    for (token, place) in &case.tokens {
        match place {
            Place::Bearer => headers.push(("authorization", format!("Bearer {token}"))),
            Place::XJwt => headers.push(("x-jwt", token.clone())),
            Place::TokenParam => query.push(format!("token={token}")),
            Place::AccessTokenParam => query.push(format!("access_token={token}")),
            Place::Cookie => headers.push(("cookie", format!("session={token}"))),
        }
    }
    let mut uri = "/orders".to_owned();
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&query.join("&"));
    }
    let mut builder = Request::get(uri.as_str());
    for (name, value) in &headers {
        let Ok(value) = HeaderValue::from_str(value) else {
            return;
        };
        builder = builder.header(*name, value);
    }
    // A client's own copy of an output header must never survive as if verified.
    builder = builder.header("x-payload", "forged");
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let at = Timestamp::from_nanos(u64::try_from(now).expect("positive") * 1_000_000_000);
    let outcome = match f.authn.authenticate(&parts, at) {
        Ok(outcome) => outcome,
        Err(e) => {
            assert!(
                !case.must_accept,
                "a valid token was refused: {e} ({:?})",
                case.tokens
            );
            let _ = (
                e.to_string(),
                e.status(),
                e.www_authenticate(),
                e.public_message(),
            );
            return;
        }
    };
    let Some(auth) = &outcome.auth else {
        assert!(
            !case.must_accept,
            "a valid token was ignored: {:?}",
            case.tokens
        );
        let removes_forged = outcome
            .mutations
            .iter()
            .any(|m| matches!(m, RequestMutation::RemoveHeader(h) if h == "x-payload"));
        assert!(removes_forged, "a forged output header is kept");
        return;
    };
    let Value::Object(claims) = &auth.claims else {
        panic!("accepted claims are not an object: {:?}", auth.claims);
    };
    let signed: Vec<&Signed> = case
        .trusted
        .iter()
        .filter(|s| s.claims.as_ref() == Some(claims))
        .collect();
    assert!(
        !signed.is_empty(),
        "accepted claims no trusted key signed: {claims:?}"
    );
    let rule = outcome
        .verified_by
        .as_ref()
        .expect("a verified token names its rule");
    assert_eq!(
        claims.get("iss"),
        Some(&json!(rule.issuer)),
        "issuer of another rule"
    );
    let numeric = |name: &str| claims.get(name).and_then(Value::as_f64);
    #[allow(clippy::cast_precision_loss)]
    let now_f = now as f64;
    if let Some(exp) = numeric("exp") {
        assert!(
            now_f <= exp + SKEW as f64,
            "expired token accepted: exp {exp}, now {now}"
        );
    }
    if let Some(nbf) = numeric("nbf") {
        assert!(
            now_f + SKEW as f64 >= nbf,
            "early token accepted: nbf {nbf}, now {now}"
        );
    }
    if rule.issuer == ISSUER {
        let aud = claims.get("aud");
        let has_shop = aud == Some(&json!("shop"))
            || aud
                .and_then(Value::as_array)
                .is_some_and(|a| a.contains(&json!("shop")));
        assert!(has_shop, "audience not checked: {aud:?}");
        let payload = outcome.mutations.iter().find_map(|m| match m {
            RequestMutation::SetHeader(h, v) if h == "x-payload" => v.to_str().ok(),
            _ => None,
        });
        let payload = payload.expect("the first rule outputs the payload");
        assert!(
            signed.iter().any(|s| s.payload_b64 == payload),
            "the payload header is not a signed payload: {payload}"
        );
    }
}

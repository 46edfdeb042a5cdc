//! JSON Web Key Sets (RFC 7517): the public keys tokens are verified with.
//!
//! Supported keys: RSA (2048 to 8192 bits, for RS256/384/512 and PS256/384/512), EC P-256
//! (ES256) and P-384 (ES384), and OKP Ed25519 (EdDSA). A set may hold other keys too (P-521,
//! symmetric `oct` keys, encryption keys with `"use": "enc"`, keys with an `alg` we do not
//! verify): those are skipped and listed in [`Jwks::skipped`] rather than failing the whole
//! set, so an identity provider adding a new kind of key does not lock everyone out. A set
//! with no usable key at all is an error.
//!
//! Symmetric (`oct`/HS256) keys are never used: a shared secret published in a key set would
//! let anyone sign tokens, and accepting HMAC is the classic key-confusion hole.

use std::fmt;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use thiserror::Error;

use super::token::B64;

/// A parsed key set.
#[derive(Clone, Debug)]
pub struct Jwks {
    keys: Vec<JwksKey>,
    skipped: Vec<SkippedKey>,
}

impl PartialEq for Jwks {
    /// Two sets are equal when they hold the same keys (ids, kinds, algorithms, material).
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys && self.skipped == other.skipped
    }
}

/// One usable verification key.
#[derive(Clone, Debug)]
pub struct JwksKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    kind: KeyKind,
    /// The key's public material, as read (for equality and inspection).
    material: Vec<u8>,
    key: DecodingKey,
}

impl PartialEq for JwksKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid
            && self.alg == other.alg
            && self.kind == other.kind
            && self.material == other.material
    }
}

impl JwksKey {
    /// The key id (`kid`), if the set gave one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm the set restricts this key to (`alg`), if any.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// What kind of key it is.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Whether this key may verify a token signed with `alg` (and, when the token names a
    /// `kid`, whether it is that key). As in Envoy, a key without `kid` is a candidate for any
    /// token, and a token without `kid` is tried against every key of the right type.
    pub(crate) fn accepts(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        let kid_ok = match (kid, self.kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        kid_ok && self.alg.is_none_or(|a| a == alg) && self.kind.verifies(alg)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The key types this mesh verifies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    EcP256,
    /// `kty: EC`, `crv: P-384`.
    EcP384,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind verifies signatures made with `alg`.
    pub fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::EcP256 => alg == ES256,
            Self::EcP384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

/// A key of the set that is not used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// Its position in `keys`, from 0.
    pub index: usize,
    /// Its `kid`, if readable.
    pub kid: Option<String>,
    /// Why it is not used.
    pub reason: String,
}

impl fmt::Display for SkippedKey {
    /// `keys[2] (kid "k2"): <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keys[{}]", self.index)?;
        if let Some(kid) = &self.kid {
            write!(f, " (kid {kid:?})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why a key set was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Not JSON, or not an object with a `keys` array.
    #[error("not a JSON Web Key Set ({0}); expected an object such as {{\"keys\": [...]}}")]
    Shape(String),
    /// The set parsed, but none of its keys can verify anything.
    #[error("no usable key in the set{}", describe(.skipped))]
    NoUsableKeys {
        /// Every key, with the reason it was skipped.
        skipped: Vec<SkippedKey>,
    },
}

fn describe(skipped: &[SkippedKey]) -> String {
    if skipped.is_empty() {
        " (`keys` is empty)".to_owned()
    } else {
        let list: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        format!(": {}", list.join("; "))
    }
}

impl Jwks {
    /// Parses a key set from its JSON text.
    ///
    /// ```
    /// let jwks = mesh_policy::authn::jwt::Jwks::parse(r#"{"keys": [{"kty": "OKP",
    ///     "crv": "Ed25519", "kid": "k1",
    ///     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#)?;
    /// assert_eq!(jwks.keys()[0].kid(), Some("k1"));
    /// # Ok::<(), mesh_policy::authn::jwt::JwksError>(())
    /// ```
    pub fn parse(json: &str) -> Result<Self, JwksError> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| JwksError::Shape(e.to_string()))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::Shape("no `keys` array".to_owned()))?;
        let mut jwks = Self {
            keys: Vec::new(),
            skipped: Vec::new(),
        };
        for (index, key) in keys.iter().enumerate() {
            let kid = key.get("kid").and_then(Value::as_str).map(str::to_owned);
            match parse_key(key) {
                Ok(mut parsed) => {
                    parsed.kid.clone_from(&kid);
                    jwks.keys.push(parsed);
                }
                Err(reason) => jwks.skipped.push(SkippedKey { index, kid, reason }),
            }
        }
        if jwks.keys.is_empty() {
            return Err(JwksError::NoUsableKeys {
                skipped: jwks.skipped,
            });
        }
        Ok(jwks)
    }

    /// The usable keys, in set order.
    pub fn keys(&self) -> &[JwksKey] {
        &self.keys
    }

    /// The keys that were skipped, with reasons (for logs and `meshctl`).
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The keys that may verify a token with this `alg` and `kid`, in set order.
    pub(crate) fn candidates(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> impl Iterator<Item = &JwksKey> {
        self.keys.iter().filter(move |k| k.accepts(alg, kid))
    }
}

fn parse_key(key: &Value) -> Result<JwksKey, String> {
    if !key.is_object() {
        return Err("not a JSON object".to_owned());
    }
    let text = |name: &str| -> Result<Option<&str>, String> {
        match key.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("`{name}` is not a string")),
        }
    };
    let required = |name: &str| -> Result<Vec<u8>, String> {
        let value = text(name)?.ok_or_else(|| format!("`{name}` is missing"))?;
        B64.decode(value)
            .map_err(|_| format!("`{name}` is not base64url"))
    };
    text("kid")?;
    match text("use")? {
        Some(usage) if usage != "sig" => {
            return Err(format!(
                "\"use\": {usage:?}; only signature keys (\"sig\") verify tokens"
            ));
        }
        _ => {}
    }
    let alg = text("alg")?
        .map(|a| {
            parse_alg(a).ok_or_else(|| format!("\"alg\": {a:?} is not an algorithm verified here"))
        })
        .transpose()?;
    let kty = text("kty")?.ok_or("`kty` is missing")?;
    let (kind, material, key) = match kty {
        "RSA" => {
            let n = strip_leading_zeros(required("n")?);
            let e = strip_leading_zeros(required("e")?);
            let bits = bit_length(&n);
            if !(2048..=8192).contains(&bits) {
                return Err(format!(
                    "RSA key of {bits} bits; keys of 2048 to 8192 bits are supported"
                ));
            }
            if e.is_empty() {
                return Err("RSA exponent `e` is zero".to_owned());
            }
            let key = DecodingKey::from_rsa_raw_components(&n, &e);
            let mut material = e;
            material.push(b'|');
            material.extend_from_slice(&n);
            (KeyKind::Rsa, material, key)
        }
        "EC" => {
            let (kind, size) = match text("crv")? {
                Some("P-256") => (KeyKind::EcP256, 32),
                Some("P-384") => (KeyKind::EcP384, 48),
                Some(other) => {
                    return Err(format!(
                        "EC curve {other:?}; P-256 (ES256) and P-384 (ES384) are supported"
                    ));
                }
                None => return Err("`crv` is missing".to_owned()),
            };
            let (x, y) = (required("x")?, required("y")?);
            if x.len() != size || y.len() != size {
                return Err(format!("`x` and `y` must be {size} bytes for this curve"));
            }
            let key = DecodingKey::from_ec_components(&B64.encode(&x), &B64.encode(&y))
                .map_err(|e| format!("bad EC key: {e}"))?;
            let mut material = vec![4];
            material.extend_from_slice(&x);
            material.extend_from_slice(&y);
            (kind, material, key)
        }
        "OKP" => {
            match text("crv")? {
                Some("Ed25519") => {}
                Some(other) => {
                    return Err(format!("OKP curve {other:?}; only Ed25519 is supported"));
                }
                None => return Err("`crv` is missing".to_owned()),
            }
            let x = required("x")?;
            if x.len() != 32 {
                return Err("Ed25519 `x` must be 32 bytes".to_owned());
            }
            let key = DecodingKey::from_ed_components(&B64.encode(&x))
                .map_err(|e| format!("bad Ed25519 key: {e}"))?;
            (KeyKind::Ed25519, x, key)
        }
        "oct" => {
            return Err(
                "symmetric (oct) keys are not accepted: only public-key signatures \
                        are verified"
                    .to_owned(),
            );
        }
        other => {
            return Err(format!(
                "key type {other:?} is not supported (RSA, EC, OKP are)"
            ));
        }
    };
    match alg {
        Some(alg) if !kind.verifies(alg) => {
            return Err(format!("\"alg\": {alg:?} does not fit a {kind:?} key"));
        }
        _ => {}
    }
    Ok(JwksKey {
        kid: None,
        alg,
        kind,
        material,
        key,
    })
}

/// The JOSE `alg` names this mesh verifies.
pub(crate) fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(first) => (big_endian.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::{Jwks, JwksError, bit_length};

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
    }

    #[test]
    fn unusable_sets_say_why() {
        assert!(matches!(Jwks::parse("[]"), Err(JwksError::Shape(_))));
        assert!(matches!(Jwks::parse("{"), Err(JwksError::Shape(_))));
        let err = Jwks::parse(r#"{"keys": []}"#).unwrap_err();
        assert!(err.to_string().contains("`keys` is empty"), "{err}");
        let err =
            Jwks::parse(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}"#).unwrap_err();
        assert!(err.to_string().contains("kid \"h\""), "{err}");
        assert!(err.to_string().contains("symmetric"), "{err}");
    }
}

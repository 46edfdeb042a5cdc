//! Taking a compact JWS apart before anything is trusted: the three segments, the header's
//! `alg` and `kid`, and the claims. Nothing here verifies; it only decides whether the text is
//! a token at all, so every later step works on well-formed parts.

use base64::{
    Engine,
    alphabet::URL_SAFE,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::{RejectReason, jwks::parse_alg};

/// base64url, with or without padding (RFC 7515 omits it; some issuers' JWKS keep it).
pub(crate) const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A token split into its parts, not yet verified.
#[derive(Debug)]
pub(crate) struct Token<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    /// The payload segment as sent (base64url of the claims JSON).
    pub(crate) payload_b64: &'a str,
    /// The signature segment, without padding.
    pub(crate) signature_b64: &'a str,
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) claims: Map<String, Value>,
}

impl Token<'_> {
    /// The `iss` claim, when it is a string.
    pub(crate) fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

/// Splits and decodes `raw`, refusing anything that is not a signed JWT with an algorithm
/// verified here (`alg: none`, HMAC, unknown names).
pub(crate) fn parse(raw: &str) -> Result<Token<'_>, RejectReason> {
    let malformed = |what: &str| RejectReason::Malformed(what.to_owned());
    let mut parts = raw.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "not a JWT: expected three base64url segments separated by dots",
        ));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(malformed("not a JWT: empty header or payload segment"));
    }
    let header_json: Value = decode_json(header)
        .ok_or_else(|| malformed("the header segment is not base64url-encoded JSON"))?;
    let Value::Object(header_fields) = header_json else {
        return Err(malformed("the header is not a JSON object"));
    };
    let alg_name = match header_fields.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        Some(_) => return Err(malformed("the header's `alg` is not a string")),
        None => return Err(malformed("the header has no `alg`")),
    };
    let alg = parse_alg(alg_name)
        .ok_or_else(|| RejectReason::UnsupportedAlgorithm(alg_name.to_owned()))?;
    if header_fields.contains_key("crit") {
        // RFC 7515 4.1.11: extensions listed as critical must be understood; none are here.
        return Err(malformed(
            "the header lists critical extensions (`crit`), which are not supported",
        ));
    }
    let kid = match header_fields.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("the header's `kid` is not a string")),
    };
    let Some(Value::Object(claims)) = decode_json(payload) else {
        return Err(malformed(
            "the payload segment is not base64url-encoded JSON object",
        ));
    };
    let signature = signature.trim_end_matches('=');
    if signature.is_empty() {
        return Err(malformed(
            "the token is not signed (empty signature segment)",
        ));
    }
    if B64.decode(signature).is_err() {
        return Err(malformed("the signature segment is not base64url"));
    }
    Ok(Token {
        signing_input: &raw[..header.len() + 1 + payload.len()],
        payload_b64: payload,
        signature_b64: signature,
        alg,
        kid,
        claims,
    })
}

fn decode_json(segment: &str) -> Option<Value> {
    let bytes = B64.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::{B64, parse};
    use crate::authn::jwt::RejectReason;

    fn seg(json: &str) -> String {
        B64.encode(json)
    }

    #[test]
    fn refuses_what_is_not_a_signed_token() {
        let claims = seg(r#"{"iss":"i"}"#);
        for (token, expect_alg) in [
            (
                format!("{}.{claims}.", seg(r#"{"alg":"none"}"#)),
                Some("none"),
            ),
            (
                format!("{}.{claims}.c2ln", seg(r#"{"alg":"HS256"}"#)),
                Some("HS256"),
            ),
            (format!("{}.{claims}.c2ln", seg(r#"{"typ":"JWT"}"#)), None),
            (
                format!("{}.{claims}.c2ln", seg(r#"{"alg":"ES256","crit":["b64"]}"#)),
                None,
            ),
            (format!("{}.{claims}", seg(r#"{"alg":"RS256"}"#)), None),
            (format!("{}.{claims}.", seg(r#"{"alg":"RS256"}"#)), None),
            (
                format!("{}.{}.c2ln", seg(r#"{"alg":"RS256"}"#), seg("[1]")),
                None,
            ),
            ("a.b.c.d".to_owned(), None),
            ("%%%.b.c".to_owned(), None),
        ] {
            match (parse(&token), expect_alg) {
                (Err(RejectReason::UnsupportedAlgorithm(alg)), Some(want)) => {
                    assert_eq!(alg, want);
                }
                (Err(RejectReason::Malformed(_)), None) => {}
                (other, _) => panic!("{token}: {other:?}"),
            }
        }
    }

    #[test]
    fn splits_a_token() {
        let header = seg(r#"{"alg":"ES256","kid":"k1"}"#);
        let payload = seg(r#"{"iss":"https://i","sub":"s"}"#);
        let raw = format!("{header}.{payload}.c2ln");
        let token = parse(&raw).unwrap();
        assert_eq!(token.kid.as_deref(), Some("k1"));
        assert_eq!(token.issuer(), Some("https://i"));
        assert_eq!(token.signing_input, format!("{header}.{payload}"));
        assert_eq!(token.payload_b64, payload);
    }
}

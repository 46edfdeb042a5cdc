//! Finding tokens in a request: headers (with a prefix), query parameters, cookies.

use std::borrow::Cow;

use http::{HeaderMap, Uri, header::COOKIE};

use super::model::TokenLocation;

/// Every token found at `location`, in the order the request carries them.
///
/// - Header: each value of the header that starts with the prefix (ASCII case ignored, as
///   HTTP auth schemes are case-insensitive) gives the rest, trimmed; values without the
///   prefix (`Authorization: Basic ...`) hold no token. Values that are not visible ASCII are
///   ignored.
/// - Query parameter: each occurrence, percent-decoded (`+` is a space).
/// - Cookie: each `name=value` pair with that name in the `Cookie` headers (quotes removed).
pub(crate) fn tokens_at<'a>(
    location: &TokenLocation,
    headers: &'a HeaderMap,
    uri: &'a Uri,
) -> Vec<Cow<'a, str>> {
    match location {
        TokenLocation::Header { name, prefix } => headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| strip_prefix_ignore_case(v, prefix))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Cow::Borrowed)
            .collect(),
        TokenLocation::QueryParam(param) => query_pairs(uri.query().unwrap_or(""))
            .filter(|(name, _)| name == param)
            .map(|(_, value)| value)
            .filter(|t| !t.is_empty())
            .collect(),
        TokenLocation::Cookie(cookie) => headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie_pairs)
            .filter(|(name, _)| name == cookie)
            .map(|(_, value)| Cow::Borrowed(value))
            .filter(|t| !t.is_empty())
            .collect(),
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// `name=value` pairs of a query string, percent-decoded.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(name), percent_decode(value))
    })
}

/// The pairs of one `Cookie` header value (`a=1; b="2"`).
pub(crate) fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some((name.trim(), value))
    })
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as written. Bytes that do not form
/// UTF-8 are replaced (such a value is no token anyway).
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    std::str::from_utf8(h)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                });
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Uri};

    use super::{percent_decode, tokens_at};
    use crate::authn::jwt::TokenLocation;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb+c"), "a.b c");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("plain"), "plain");
    }

    #[test]
    fn default_locations() {
        let mut headers = HeaderMap::new();
        headers.append("authorization", HeaderValue::from_static("Basic abc"));
        headers.append("authorization", HeaderValue::from_static("bearer  t1 "));
        headers.append("cookie", HeaderValue::from_static("a=1; jwt=\"t3\""));
        let uri: Uri = "/p?x=1&access_token=t%2E2&access_token=".parse().unwrap();
        let [auth, param] = TokenLocation::istio_defaults().try_into().unwrap();
        assert_eq!(tokens_at(&auth, &headers, &uri), ["t1"]);
        assert_eq!(tokens_at(&param, &headers, &uri), ["t.2"]);
        let cookie = TokenLocation::Cookie("jwt".to_owned());
        assert_eq!(tokens_at(&cookie, &headers, &uri), ["t3"]);
        let none: Uri = "/p".parse().unwrap();
        assert!(tokens_at(&param, &headers, &none).is_empty());
    }
}

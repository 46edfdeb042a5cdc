//! The host and port a request calls, read from its URI once per request.

use super::RequestError;

/// The host a request calls (lowercased) and its port (the scheme's when the URI has none).
pub(super) fn called_host(uri: &http::Uri) -> Result<(String, u16), RequestError> {
    let authority = uri
        .authority()
        .ok_or_else(|| RequestError::Invalid(format!("URI {uri} has no host")))?;
    let (host, port) = split_authority(authority.as_str());
    let port = port.unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Ok((host.to_ascii_lowercase(), port))
}

/// An authority's host (an IPv6 literal keeps its brackets) and port, as `http`'s
/// `Authority::host` and `port_u16` give them, with byte scans: those split by `char`
/// patterns, which costs more than the rest of routing a request.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let bytes = authority.as_bytes();
    let start = bytes
        .iter()
        .rposition(|&b| b == b'@')
        .map_or(0, |at| at + 1);
    let rest = &authority[start..];
    let host_end = if rest.starts_with('[') {
        rest.bytes()
            .position(|b| b == b']')
            .map_or(rest.len(), |end| end + 1)
    } else {
        rest.bytes().rposition(|b| b == b':').unwrap_or(rest.len())
    };
    let (host, after) = rest.split_at(host_end);
    let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_as_http_splits_them() {
        for text in [
            "inventory.shop.svc:8080",
            "inventory.shop.svc",
            "user:pw@Inventory.Shop.svc:9090",
            "[::1]:443",
            "[fe80::1]",
            "10.0.0.1:80",
            "a@b@host:1",
        ] {
            let authority: http::uri::Authority = text.parse().expect(text);
            assert_eq!(
                split_authority(text),
                (authority.host(), authority.port_u16()),
                "{text}"
            );
        }
        let uri: http::Uri = "https://Inventory.Shop.svc/x".parse().expect("uri");
        assert_eq!(
            called_host(&uri).expect("host"),
            ("inventory.shop.svc".to_owned(), 443)
        );
        let relative: http::Uri = "/x".parse().expect("uri");
        assert!(called_host(&relative).is_err());
    }
}

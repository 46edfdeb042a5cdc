//! What route matching and consistent hashing read from a request.

use std::{borrow::Cow, net::IpAddr};

/// The parts of an HTTP request that routes match on and hash keys are taken from.
///
/// `mesh-client` implements it over `http::Request`; [`RequestAttributes`] is a plain owned
/// implementation for tools, tests and callers without an `http` request at hand. Header names
/// are given in lowercase; a header sent several times is one value joined with `,`, as Envoy
/// matches it.
pub trait RequestView {
    /// The method, such as `GET`.
    fn method(&self) -> &str;
    /// The path with its query string, as on the wire (`/api/items?id=7`).
    fn path(&self) -> &str;
    /// The authority (`:authority` or `Host`), such as `reviews:9080`.
    fn authority(&self) -> &str;
    /// The value of the header `name` (given in lowercase), if present.
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;
    /// The caller's IP address, for `useSourceIp` hashing, when known.
    fn source_ip(&self) -> Option<IpAddr> {
        None
    }

    /// The scheme (`http` or `https`); requests inside the mesh are `http` unless the caller
    /// says otherwise.
    fn scheme(&self) -> &str {
        "http"
    }

    /// The path without its query string.
    fn path_only(&self) -> &str {
        let path = self.path();
        path.split_once('?').map_or(path, |(p, _)| p)
    }

    /// The value of query parameter `name`: `Some("")` for `?flag` or `?flag=`, `None` when
    /// absent. Values are compared as sent (not percent-decoded), as Envoy does.
    fn query_param(&self, name: &str) -> Option<&str> {
        let (_, query) = self.path().split_once('?')?;
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// The value of cookie `name` from the `cookie` header, if present.
    fn cookie(&self, name: &str) -> Option<String> {
        let header = self.header("cookie")?;
        header.split([';', ',']).find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
        })
    }
}

/// An owned description of a request, implementing [`RequestView`].
///
/// ```
/// use mesh_core::traffic::{RequestAttributes, RequestView};
///
/// let request = RequestAttributes::new("GET", "/items?id=7")
///     .with_header("X-User", "alice")
///     .with_header("cookie", "session=abc; theme=dark");
/// assert_eq!(request.header("x-user").as_deref(), Some("alice"));
/// assert_eq!(request.query_param("id"), Some("7"));
/// assert_eq!(request.cookie("theme").as_deref(), Some("dark"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestAttributes {
    /// The method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The authority.
    pub authority: String,
    /// Headers, names in lowercase, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The caller's address.
    pub source_ip: Option<IpAddr>,
    /// The scheme; empty means `http`.
    pub scheme: String,
}

impl RequestAttributes {
    /// A request with `method` and `path` and nothing else.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            ..Self::default()
        }
    }

    /// Adds a header (the name is lowercased).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Sets the authority.
    pub fn with_authority(mut self, authority: &str) -> Self {
        self.authority = authority.to_owned();
        self
    }

    /// Sets the caller's address.
    pub fn with_source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }
}

impl RequestView for RequestAttributes {
    fn method(&self) -> &str {
        &self.method
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn authority(&self) -> &str {
        &self.authority
    }

    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        match values.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = format!("{first},{second}");
                for v in values {
                    joined.push(',');
                    joined.push_str(v);
                }
                Some(Cow::Owned(joined))
            }
        }
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }

    fn scheme(&self) -> &str {
        if self.scheme.is_empty() {
            "http"
        } else {
            &self.scheme
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_cookies() {
        let r = RequestAttributes::new("GET", "/a?x=1&flag&y=&z=a%20b#frag")
            .with_header("Cookie", "a=1; b=\"two\"")
            .with_header("cookie", "c=3");
        assert_eq!(r.path_only(), "/a");
        assert_eq!(r.query_param("x"), Some("1"));
        assert_eq!(r.query_param("flag"), Some(""));
        assert_eq!(r.query_param("y"), Some(""));
        assert_eq!(r.query_param("z"), Some("a%20b"));
        assert_eq!(r.query_param("w"), None);
        assert_eq!(r.cookie("b").as_deref(), Some("two"));
        assert_eq!(r.cookie("c").as_deref(), Some("3"));
        assert_eq!(r.cookie("d"), None);
        assert_eq!(r.header("cookie").as_deref(), Some("a=1; b=\"two\",c=3"));
    }
}

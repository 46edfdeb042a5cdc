//! Request matching for VirtualService routes (Istio `HTTPMatchRequest`).

use std::fmt;

use regex::Regex;

use super::RequestView;

/// A regular expression matched against a whole value (Envoy's `safe_regex` semantics: the
/// pattern must match the entire string, RE2 syntax).
#[derive(Clone)]
pub struct MatchRegex {
    source: String,
    regex: Regex,
}

impl MatchRegex {
    /// Compiles `pattern`, anchored at both ends.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        let regex = Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(Self {
            source: pattern.to_owned(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

impl PartialEq for MatchRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for MatchRegex {}

impl fmt::Debug for MatchRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MatchRegex({:?})", self.source)
    }
}

/// Istio `StringMatch`: exact, prefix or regex; for headers and query parameters an empty
/// match (`{}`) means "present".
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StringMatch {
    /// The value equals this.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The whole value matches this expression.
    Regex(MatchRegex),
    /// The value is present, whatever it is.
    Present,
}

impl StringMatch {
    /// Whether `value` matches; `ignore_case` applies to exact and prefix matches.
    pub fn matches(&self, value: &str, ignore_case: bool) -> bool {
        match self {
            Self::Exact(s) if ignore_case => value.eq_ignore_ascii_case(s),
            Self::Exact(s) => value == s,
            Self::Prefix(p) if ignore_case => value
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p)),
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Regex(r) => r.is_match(value),
            Self::Present => true,
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => write!(f, "exact {s:?}"),
            Self::Prefix(s) => write!(f, "prefix {s:?}"),
            Self::Regex(r) => write!(f, "regex {:?}", r.as_str()),
            Self::Present => f.write_str("present"),
        }
    }
}

/// One `match` block of a route: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteMatch {
    /// `name`, for logs.
    pub name: Option<String>,
    /// `uri`: the path (exact and regex ignore the query string, prefix sees it, as in Envoy).
    pub uri: Option<StringMatch>,
    /// `ignoreUriCase`: exact and prefix `uri` matches ignore ASCII case.
    pub ignore_uri_case: bool,
    /// `scheme`.
    pub scheme: Option<StringMatch>,
    /// `method`.
    pub method: Option<StringMatch>,
    /// `authority`.
    pub authority: Option<StringMatch>,
    /// `headers`: each must be present and match (names in lowercase).
    pub headers: Vec<(String, StringMatch)>,
    /// `withoutHeaders`: none may match (an absent header never matches).
    pub without_headers: Vec<(String, StringMatch)>,
    /// `queryParams`: each must be present and match.
    pub query_params: Vec<(String, StringMatch)>,
    /// `port`: the service port called.
    pub port: Option<u16>,
}

impl RouteMatch {
    /// Whether this match looks at nothing but the service port, so that whether it matches
    /// is the same for every request to a port.
    pub fn is_port_only(&self) -> bool {
        self.uri.is_none()
            && self.scheme.is_none()
            && self.method.is_none()
            && self.authority.is_none()
            && self.headers.is_empty()
            && self.without_headers.is_empty()
            && self.query_params.is_empty()
    }

    /// Whether `request`, sent to service port `port`, satisfies every condition.
    pub fn matches(&self, request: &(impl RequestView + ?Sized), port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        if let Some(uri) = &self.uri {
            let path = match uri {
                StringMatch::Prefix(_) => request.path(),
                _ => request.path_only(),
            };
            if !uri.matches(path, self.ignore_uri_case) {
                return false;
            }
        }
        let simple = [
            (&self.scheme, request.scheme()),
            (&self.method, request.method()),
            (&self.authority, request.authority()),
        ];
        if simple
            .iter()
            .any(|(m, value)| m.as_ref().is_some_and(|m| !m.matches(value, false)))
        {
            return false;
        }
        let header_matches = |(name, m): &(String, StringMatch)| {
            request.header(name).is_some_and(|v| m.matches(&v, false))
        };
        self.headers.iter().all(header_matches)
            && !self.without_headers.iter().any(header_matches)
            && self.query_params.iter().all(|(name, m)| {
                request
                    .query_param(name)
                    .is_some_and(|v| m.matches(v, false))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::RequestAttributes;

    fn exact(s: &str) -> StringMatch {
        StringMatch::Exact(s.to_owned())
    }

    #[test]
    fn string_matches() {
        let re = StringMatch::Regex(MatchRegex::new("/v[12]/.*").unwrap());
        assert!(re.matches("/v1/items", false) && !re.matches("/api/v1/items", false));
        assert!(!StringMatch::Regex(MatchRegex::new("a").unwrap()).matches("ab", false));
        assert!(StringMatch::Prefix("/API".into()).matches("/api/x", true));
        assert!(!StringMatch::Prefix("/API".into()).matches("/api/x", false));
        assert!(!StringMatch::Prefix("/long-prefix".into()).matches("/l", true));
        assert!(exact("/A").matches("/a", true) && !exact("/A").matches("/a", false));
        assert!(MatchRegex::new("(").is_err());
    }

    #[test]
    fn route_match_conditions() {
        let m = RouteMatch {
            uri: Some(StringMatch::Prefix("/api".into())),
            method: Some(exact("GET")),
            headers: vec![("x-user".into(), StringMatch::Present)],
            without_headers: vec![("x-canary".into(), exact("off"))],
            query_params: vec![("v".into(), exact("2"))],
            port: Some(8080),
            ..RouteMatch::default()
        };
        let ok = RequestAttributes::new("GET", "/api/items?v=2").with_header("x-user", "a");
        assert!(m.matches(&ok, 8080));
        assert!(!m.matches(&ok, 9090), "port");
        assert!(!m.matches(
            &RequestAttributes {
                method: "POST".into(),
                ..ok.clone()
            },
            8080
        ));
        assert!(!m.matches(&ok.clone().with_header("x-canary", "off"), 8080));
        assert!(m.matches(&ok.clone().with_header("x-canary", "on"), 8080));
        let no_user = RequestAttributes::new("GET", "/api/items?v=2");
        assert!(!m.matches(&no_user, 8080));
        let wrong_query = RequestAttributes::new("GET", "/api?v=3").with_header("x-user", "a");
        assert!(!m.matches(&wrong_query, 8080));
        assert!(RouteMatch::default().matches(&no_user, 1));
    }

    #[test]
    fn exact_uri_ignores_the_query() {
        let m = RouteMatch {
            uri: Some(exact("/login")),
            ..RouteMatch::default()
        };
        assert!(m.matches(&RequestAttributes::new("GET", "/login?next=/"), 80));
        assert!(!m.matches(&RequestAttributes::new("GET", "/login/x"), 80));
    }
}

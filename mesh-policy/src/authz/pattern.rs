//! Istio's string match forms: exact, `prefix*`, `*suffix` and presence `*`.

use std::fmt;

/// One value of a string field (`principals`, `hosts`, `paths`, a `when` value, ...), in the
/// form Istio gives it.
///
/// Istio decides the form from where the `*` is, and only there: `*` alone means "present",
/// a leading `*` a suffix match, a trailing `*` a prefix match, and anything else (including a
/// `*` in the middle) an exact match. Parsing copies that rule so a policy means here what it
/// means in Envoy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StringPattern {
    /// The value must equal this string.
    Exact(String),
    /// The value must start with this string (written `abc*`).
    Prefix(String),
    /// The value must end with this string (written `*abc`).
    Suffix(String),
    /// The attribute must be present and, except for headers, non-empty (written `*`).
    Presence,
}

impl StringPattern {
    /// Reads Istio's notation. Never fails: every string is some pattern (empty strings are
    /// rejected earlier, by the document validation, as Istio does).
    pub fn parse(value: &str) -> Self {
        if value == "*" {
            Self::Presence
        } else if let Some(suffix) = value.strip_prefix('*') {
            Self::Suffix(suffix.to_owned())
        } else if let Some(prefix) = value.strip_suffix('*') {
            Self::Prefix(prefix.to_owned())
        } else {
            Self::Exact(value.to_owned())
        }
    }

    /// Whether `value` matches. `ignore_case` compares ASCII letters case-insensitively (hosts).
    ///
    /// This is the reference semantics; the engine uses indexed sets built from the same rules
    /// (`compile::strings`), and the tests check the two agree.
    pub fn matches(&self, value: &str, ignore_case: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let (value, bytes) = (value, value.as_bytes());
        match self {
            Self::Exact(exact) => eq(bytes, exact.as_bytes()),
            Self::Prefix(prefix) => {
                bytes.len() >= prefix.len() && eq(&bytes[..prefix.len()], prefix.as_bytes())
            }
            Self::Suffix(suffix) => {
                bytes.len() >= suffix.len()
                    && eq(&bytes[bytes.len() - suffix.len()..], suffix.as_bytes())
            }
            Self::Presence => !value.is_empty(),
        }
    }
}

impl fmt::Display for StringPattern {
    /// Writes the pattern back in Istio's notation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => f.write_str(s),
            Self::Prefix(s) => write!(f, "{s}*"),
            Self::Suffix(s) => write!(f, "*{s}"),
            Self::Presence => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StringPattern::{self, *};

    #[test]
    fn parses_the_four_forms_by_star_position() {
        assert_eq!(StringPattern::parse("*"), Presence);
        assert_eq!(StringPattern::parse("*.com"), Suffix(".com".into()));
        assert_eq!(StringPattern::parse("/api/*"), Prefix("/api/".into()));
        assert_eq!(StringPattern::parse("/a*b"), Exact("/a*b".into()));
        assert_eq!(StringPattern::parse("GET"), Exact("GET".into()));
        // Istio checks the leading star first: `**` is a suffix match on "*".
        assert_eq!(StringPattern::parse("**"), Suffix("*".into()));
    }

    #[test]
    fn display_round_trips() {
        for s in ["*", "*.com", "/api/*", "exact", "a*b"] {
            assert_eq!(StringPattern::parse(s).to_string(), s);
        }
    }

    #[test]
    fn matching_forms() {
        assert!(Exact("GET".into()).matches("GET", false));
        assert!(!Exact("GET".into()).matches("get", false));
        assert!(Exact("Example.COM".into()).matches("example.com", true));
        assert!(Prefix("/api/".into()).matches("/api/v1", false));
        assert!(Prefix("/api/".into()).matches("/api/", false));
        assert!(!Prefix("/api/".into()).matches("/ap", false));
        assert!(Suffix(".com".into()).matches("a.com", false));
        assert!(!Suffix(".com".into()).matches("a.org", false));
        assert!(Suffix(".COM".into()).matches("a.com", true));
        assert!(Presence.matches("x", false));
        assert!(!Presence.matches("", false));
    }
}

//! The hosts traffic rules apply to: exact service names and `*.suffix` wildcards.

use std::fmt;

use thiserror::Error;

use crate::model::ServiceName;

/// Why a host was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{host:?} is not a valid host: {reason}")]
pub struct HostError {
    /// The host as written.
    pub host: String,
    /// What is wrong.
    pub reason: String,
}

/// The host a DestinationRule or VirtualService applies to: a service name
/// (`reviews.shop.svc.cluster.local`) or a wildcard covering many (`*.shop.svc.cluster.local`,
/// or `*` for every host).
///
/// Matching follows Istio: a wildcard matches any name ending in its suffix, at any depth, and
/// when several patterns match a name the exact one wins, then the longest suffix
/// ([`specificity`](Self::specificity)).
///
/// ```
/// use mesh_core::traffic::HostPattern;
///
/// let pattern = HostPattern::parse("*.shop.svc.cluster.local")?;
/// assert!(pattern.matches("reviews.shop.svc.cluster.local"));
/// assert!(!pattern.matches("reviews.other.svc.cluster.local"));
/// # Ok::<(), mesh_core::traffic::HostError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPattern(String);

impl HostPattern {
    /// Parses a host as Istio validates it: lowercase RFC 1123 labels, a `*` allowed only as the
    /// whole first label, a top-level label that is not all digits, at most 255 characters.
    pub fn parse(host: &str) -> Result<Self, HostError> {
        let fail = |reason: &str| HostError {
            host: host.to_owned(),
            reason: reason.to_owned(),
        };
        let name = host.strip_suffix('.').unwrap_or(host);
        if name.is_empty() {
            return Err(fail("empty host names are not allowed"));
        }
        if name.len() > 255 {
            return Err(fail("longer than 255 characters"));
        }
        if name == "*" {
            return Ok(Self("*".to_owned()));
        }
        let labels: Vec<&str> = name.split('.').collect();
        for (i, label) in labels.iter().enumerate() {
            if i == 0 && *label == "*" {
                continue;
            }
            if label.contains('*') {
                return Err(fail(
                    "a wildcard must be the whole first label, as in *.example.com",
                ));
            }
            if !is_dns_label(label) {
                return Err(fail(&format!(
                    "label {label:?} is not a lowercase DNS label (a-z, 0-9 and '-', 1 to 63 characters, no '-' at either end)"
                )));
            }
        }
        if labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(fail("the top-level label cannot be all digits"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The pattern matching exactly one service.
    pub fn exact(name: &ServiceName) -> Self {
        Self(name.as_str().to_owned())
    }

    /// Istio's expansion of a short name: a host without dots, such as `reviews`, means
    /// `reviews.<namespace>.svc.<domain_suffix>`; anything else is taken as written.
    pub fn expand_short_name(host: &str, namespace: &str, domain_suffix: &str) -> String {
        if host.contains('.') || host == "*" || host.is_empty() {
            host.to_owned()
        } else {
            format!("{host}.{namespace}.svc.{domain_suffix}")
        }
    }

    /// The pattern as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a wildcard pattern.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with('*')
    }

    /// Whether `host` (a lowercase service name, trailing dot allowed) is covered.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self.0.strip_prefix('*') {
            None => self.0 == host,
            Some("") => true,
            Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }

    /// How specific the pattern is, for choosing among several that match: exact names rank
    /// above every wildcard, longer suffixes above shorter ones.
    pub fn specificity(&self) -> (bool, usize) {
        (!self.is_wildcard(), self.0.len())
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 1123 label, lowercase (Kubernetes' `IsDNS1123Label`).
pub(crate) fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_istio() {
        for ok in [
            "reviews",
            "reviews.shop.svc.cluster.local",
            "*.shop",
            "*",
            "a-b.c1.",
        ] {
            assert!(HostPattern::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ".", "Reviews", "a.*.b", "*a.b", "a..b", "-a.b", "a.123", "a_b.c",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(HostPattern::parse("a.b.").unwrap().as_str(), "a.b");
    }

    #[test]
    fn matching_and_specificity() {
        let exact = HostPattern::parse("a.shop.svc").unwrap();
        let wild = HostPattern::parse("*.shop.svc").unwrap();
        let all = HostPattern::parse("*").unwrap();
        assert!(exact.matches("a.shop.svc") && exact.matches("a.shop.svc."));
        assert!(wild.matches("a.shop.svc") && wild.matches("x.a.shop.svc"));
        assert!(!wild.matches("shop.svc") && !wild.matches("ashop.svc"));
        assert!(all.matches("anything"));
        assert!(exact.specificity() > wild.specificity());
        assert!(wild.specificity() > all.specificity());
    }

    #[test]
    fn short_names_expand_in_their_namespace() {
        let e = |h| HostPattern::expand_short_name(h, "shop", "cluster.local");
        assert_eq!(e("reviews"), "reviews.shop.svc.cluster.local");
        assert_eq!(e("reviews.other"), "reviews.other");
        assert_eq!(e("*"), "*");
    }
}

use std::{fmt, str::FromStr, sync::Arc};

use super::{
    MAX_SPIFFE_ID_LEN, SpiffeIdError, TrustDomain, error::excerpt,
    trust_domain::validate_trust_domain,
};

const SCHEME: &str = "spiffe://";

/// A SPIFFE ID: `spiffe://<trust-domain>/<path>`, validated by the SPIFFE ID standard.
///
/// The mesh identifies every workload by one of these, taken from the URI SAN of its X.509 SVID.
/// Parsing is strict (lowercase scheme and trust domain, path segments of `[a-zA-Z0-9._-]`, no
/// empty, `.` or `..` segments, no trailing slash, port, user info, query or fragment, at most
/// 2048 bytes), so two IDs that compare equal name the same workload.
///
/// Istio names workloads `spiffe://<td>/ns/<namespace>/sa/<service-account>`; build such IDs with
/// [`SpiffeId::istio`] and read them back with [`SpiffeId::namespace`] and
/// [`SpiffeId::service_account`].
///
/// ```
/// use mesh_core::SpiffeId;
/// let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/orders".parse()?;
/// assert_eq!(id.trust_domain().as_str(), "cluster.local");
/// assert_eq!(id.namespace(), Some("shop"));
/// assert_eq!(id.service_account(), Some("orders"));
/// assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/orders");
/// # Ok::<(), mesh_core::SpiffeIdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// The whole ID, so `Display` and comparisons need no allocation.
    id: Arc<str>,
    /// Byte offset where the path starts (== id.len() when there is no path).
    path_start: usize,
}

impl SpiffeId {
    /// Builds an ID from a trust domain and a path such as `/ns/default/sa/web` (or `""`).
    pub fn from_parts(trust_domain: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        if !path.is_empty() && !path.starts_with('/') {
            return Err(SpiffeIdError::NoLeadingSlash {
                path: excerpt(path),
            });
        }
        format!("{SCHEME}{trust_domain}{path}").parse()
    }

    /// Builds Istio's form `spiffe://<td>/ns/<namespace>/sa/<service_account>`.
    pub fn istio(
        trust_domain: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        // Each part must be one segment, or the result would not read back as Istio's form.
        for part in [namespace, service_account] {
            if part.contains('/') {
                return Err(SpiffeIdError::BadPathChar {
                    segment: excerpt(part),
                    character: '/',
                });
            }
        }
        Self::from_parts(
            trust_domain,
            &format!("/ns/{namespace}/sa/{service_account}"),
        )
    }

    /// The trust domain name as a string slice, without allocating.
    pub fn trust_domain_str(&self) -> &str {
        &self.id[SCHEME.len()..self.path_start]
    }

    /// The trust domain this ID belongs to.
    pub fn trust_domain(&self) -> TrustDomain {
        // The slice was validated when this ID was parsed.
        TrustDomain::new(self.trust_domain_str()).unwrap_or_else(|_| unreachable_td())
    }

    /// The path, starting with `/`, or `""` for the ID of a trust domain itself.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// The whole ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The Kubernetes namespace when this ID has Istio's `/ns/<ns>/sa/<sa>` form.
    pub fn namespace(&self) -> Option<&str> {
        self.istio_parts().map(|(ns, _)| ns)
    }

    /// The Kubernetes service account when this ID has Istio's `/ns/<ns>/sa/<sa>` form.
    pub fn service_account(&self) -> Option<&str> {
        self.istio_parts().map(|(_, sa)| sa)
    }

    /// `(namespace, service account)` of `/ns/<ns>/sa/<sa>`. Authorization asks this for every
    /// request, so it scans bytes once instead of splitting into segments.
    fn istio_parts(&self) -> Option<(&str, &str)> {
        let rest = self.path().strip_prefix("/ns/")?;
        let slash = rest.bytes().position(|b| b == b'/')?;
        let (ns, after) = rest.split_at(slash);
        let sa = after.strip_prefix("/sa/")?;
        // Byte scans: these IDs are short, and `str`'s searchers cost more than the scan.
        (!sa.bytes().any(|b| b == b'/')).then_some((ns, sa))
    }
}

#[cold]
fn unreachable_td() -> TrustDomain {
    // Only reachable if the parser's invariants are broken; fall back to a recognisable value
    // rather than panicking inside a library.
    TrustDomain::new("invalid").unwrap_or_else(|_| unreachable_td())
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if input.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: input.len() });
        }
        let rest = match input.get(..SCHEME.len()) {
            Some(scheme) if scheme == SCHEME => &input[SCHEME.len()..],
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => {
                return Err(SpiffeIdError::SchemeNotLowercase {
                    scheme: scheme.trim_end_matches("://").to_owned(),
                });
            }
            _ => {
                return Err(SpiffeIdError::WrongScheme {
                    input: excerpt(input),
                });
            }
        };
        // Query and fragment are reported before anything else inside them is judged.
        if rest.contains('#') {
            return Err(SpiffeIdError::HasFragment);
        }
        if rest.contains('?') {
            return Err(SpiffeIdError::HasQuery);
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        validate_trust_domain(authority)?;
        validate_path(path)?;
        Ok(Self {
            id: Arc::from(input),
            path_start: SCHEME.len() + authority.len(),
        })
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        // "/" alone is both a trailing slash and an empty segment; the standard calls it the former.
        return Err(SpiffeIdError::TrailingSlash {
            path: excerpt(path),
        });
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment {
                path: excerpt(path),
            });
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment {
                path: excerpt(path),
            });
        }
        if let Some(character) = segment.chars().find(|c| !is_path_char(*c)) {
            return Err(SpiffeIdError::BadPathChar {
                segment: excerpt(segment),
                character,
            });
        }
    }
    Ok(())
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(s: &str) -> SpiffeIdError {
        s.parse::<SpiffeId>().unwrap_err()
    }

    #[test]
    fn parses_istio_ids() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
            .parse()
            .unwrap();
        assert_eq!(id.trust_domain_str(), "cluster.local");
        assert_eq!(id.path(), "/ns/default/sa/bookinfo-productpage");
        assert_eq!(id.namespace(), Some("default"));
        assert_eq!(id.service_account(), Some("bookinfo-productpage"));
        let built = SpiffeId::istio(&id.trust_domain(), "default", "bookinfo-productpage").unwrap();
        assert_eq!(built, id);
    }

    #[test]
    fn non_istio_paths_have_no_namespace() {
        for s in [
            "spiffe://example.org",
            "spiffe://example.org/ns/a",
            "spiffe://example.org/ns/a/sa/b/extra",
            "spiffe://example.org/x/a/sa/b",
            "spiffe://example.org/ns/a/sa",
            "spiffe://example.org/ns/a/sb/b",
            "spiffe://example.org/nsx/a/sa/b",
        ] {
            let id: SpiffeId = s.parse().unwrap();
            assert_eq!(id.namespace(), None, "{s}");
        }
    }

    #[test]
    fn trust_domain_only_id_is_valid() {
        let id: SpiffeId = "spiffe://example.org".parse().unwrap();
        assert_eq!(id.path(), "");
    }

    #[test]
    fn each_violation_has_its_own_error() {
        assert_eq!(err(""), SpiffeIdError::Empty);
        assert!(matches!(
            err("https://example.org/a"),
            SpiffeIdError::WrongScheme { .. }
        ));
        assert!(matches!(
            err("spiffe:/example.org/a"),
            SpiffeIdError::WrongScheme { .. }
        ));
        assert_eq!(
            err("SPIFFE://example.org/a"),
            SpiffeIdError::SchemeNotLowercase {
                scheme: "SPIFFE".into()
            }
        );
        assert_eq!(err("spiffe:///a"), SpiffeIdError::MissingTrustDomain);
        assert_eq!(err("spiffe://"), SpiffeIdError::MissingTrustDomain);
        assert!(matches!(
            err("spiffe://example.org:8080/a"),
            SpiffeIdError::HasPort { .. }
        ));
        assert!(matches!(
            err("spiffe://u@example.org/a"),
            SpiffeIdError::HasUserInfo { .. }
        ));
        assert!(matches!(
            err("spiffe://Example.org/a"),
            SpiffeIdError::BadTrustDomainChar { character: 'E', .. }
        ));
        assert_eq!(err("spiffe://example.org/a?x=1"), SpiffeIdError::HasQuery);
        assert_eq!(
            err("spiffe://example.org/a#frag"),
            SpiffeIdError::HasFragment
        );
        assert!(matches!(
            err("spiffe://example.org/a//b"),
            SpiffeIdError::EmptySegment { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a/./b"),
            SpiffeIdError::DotSegment { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a/.."),
            SpiffeIdError::DotSegment { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a/"),
            SpiffeIdError::TrailingSlash { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/"),
            SpiffeIdError::TrailingSlash { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a b"),
            SpiffeIdError::BadPathChar { character: ' ', .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/caf\u{e9}"),
            SpiffeIdError::BadPathChar {
                character: '\u{e9}',
                ..
            }
        ));
        let long = format!("spiffe://example.org/{}", "a".repeat(2048));
        assert!(matches!(err(&long), SpiffeIdError::TooLong { .. }));
    }

    #[test]
    fn length_limit_is_inclusive() {
        let prefix = "spiffe://example.org/";
        let ok = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
        assert_eq!(ok.len(), MAX_SPIFFE_ID_LEN);
        assert!(ok.parse::<SpiffeId>().is_ok());
    }

    #[test]
    fn from_parts_requires_leading_slash() {
        let td = TrustDomain::new("example.org").unwrap();
        assert!(matches!(
            SpiffeId::from_parts(&td, "ns/a"),
            Err(SpiffeIdError::NoLeadingSlash { .. })
        ));
        assert!(matches!(
            SpiffeId::istio(&td, "a/b", "c"),
            Err(SpiffeIdError::BadPathChar { character: '/', .. })
        ));
        assert!(matches!(
            SpiffeId::istio(&td, "", "c"),
            Err(SpiffeIdError::EmptySegment { .. })
        ));
    }

    #[test]
    fn error_messages_name_the_problem() {
        let msg = err("spiffe://example.org/a b").to_string();
        assert!(msg.contains("\"a b\"") && msg.contains("' '"), "{msg}");
        let msg = err("spiffe://EXAMPLE/a").to_string();
        assert!(msg.contains("EXAMPLE"), "{msg}");
    }

    fn trust_domain_strategy() -> impl Strategy<Value = String> {
        "[a-z0-9._-]{1,40}"
    }

    fn segment_strategy() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{1,20}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn display_round_trips(td in trust_domain_strategy(), segs in prop::collection::vec(segment_strategy(), 0..8)) {
            let mut s = format!("spiffe://{td}");
            for seg in &segs {
                s.push('/');
                s.push_str(seg);
            }
            let id: SpiffeId = s.parse().unwrap();
            prop_assert_eq!(id.to_string(), s.clone());
            let again: SpiffeId = id.to_string().parse().unwrap();
            prop_assert_eq!(&again, &id);
            prop_assert_eq!(id.trust_domain_str(), td.as_str());
        }

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            if let Ok(id) = s.parse::<SpiffeId>() {
                prop_assert_eq!(id.to_string(), s);
                let _ = (id.namespace(), id.service_account(), id.trust_domain());
            }
        }

        #[test]
        fn near_miss_strings_never_panic(s in "spiffe://[a-zA-Z0-9.:@/?#_-]{0,60}") {
            let _ = s.parse::<SpiffeId>().map(|id| id.trust_domain());
        }
    }
}

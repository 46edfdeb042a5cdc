use std::{fmt, str::FromStr, sync::Arc};

use super::{MAX_TRUST_DOMAIN_LEN, SpiffeIdError, error::excerpt};

/// A SPIFFE trust domain, such as `cluster.local` or `example.org`.
///
/// A trust domain is the root of trust for a set of workloads: certificates for IDs in it must
/// chain to that domain's trust bundle. Parse it from the bare name (`example.org`) or from
/// `spiffe://example.org`; both forms are accepted by [`FromStr`]. Cloning is a reference-count
/// increment, so trust domains can be used freely as map keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(Arc<str>);

impl TrustDomain {
    /// Parses a trust domain name (not a full SPIFFE ID).
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        validate_trust_domain(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// The trust domain name, such as `example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself (`spiffe://example.org`), as found in the URI SAN
    /// of many SPIFFE CA certificates.
    pub fn id_string(&self) -> String {
        format!("spiffe://{}", self.0)
    }
}

/// Checks a trust domain name against the standard's rules, reporting the first violation.
pub(crate) fn validate_trust_domain(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if name.contains('@') {
        return Err(SpiffeIdError::HasUserInfo {
            authority: excerpt(name),
        });
    }
    if name.contains(':') {
        return Err(SpiffeIdError::HasPort {
            authority: excerpt(name),
        });
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong { len: name.len() });
    }
    if let Some(character) = name.chars().find(|c| !is_trust_domain_char(*c)) {
        return Err(SpiffeIdError::BadTrustDomainChar {
            trust_domain: excerpt(name),
            character,
        });
    }
    Ok(())
}

fn is_trust_domain_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_')
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    /// Accepts `example.org` or `spiffe://example.org` (with no path).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains("://") {
            let id: super::SpiffeId = s.parse()?;
            if !id.path().is_empty() {
                return Err(SpiffeIdError::NotATrustDomain {
                    input: excerpt(s),
                    path: excerpt(id.path()),
                });
            }
            return Ok(id.trust_domain());
        }
        Self::new(s)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

/// Lets maps keyed by `TrustDomain` be searched with a `&str` (hashing agrees: both hash the text).
impl std::borrow::Borrow<str> for TrustDomain {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TrustDomain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_bare_and_uri_forms() {
        assert_eq!(
            "example.org".parse::<TrustDomain>().unwrap().as_str(),
            "example.org"
        );
        assert_eq!(
            "spiffe://cluster.local"
                .parse::<TrustDomain>()
                .unwrap()
                .as_str(),
            "cluster.local"
        );
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(TrustDomain::new(""), Err(SpiffeIdError::MissingTrustDomain));
        assert!(matches!(
            TrustDomain::new("Example.org"),
            Err(SpiffeIdError::BadTrustDomainChar { character: 'E', .. })
        ));
        assert!(matches!(
            TrustDomain::new("example.org:443"),
            Err(SpiffeIdError::HasPort { .. })
        ));
        assert!(matches!(
            TrustDomain::new(&"a".repeat(256)),
            Err(SpiffeIdError::TrustDomainTooLong { len: 256 })
        ));
        assert!(matches!(
            "spiffe://example.org/workload".parse::<TrustDomain>(),
            Err(SpiffeIdError::NotATrustDomain { .. })
        ));
    }
}

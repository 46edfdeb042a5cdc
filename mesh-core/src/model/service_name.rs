use std::{borrow::Borrow, fmt, str::FromStr, sync::Arc};

use super::ServiceNameError;
use crate::identity::excerpt;

const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A service's hostname, such as `reviews.shop.svc.cluster.local`, validated as a DNS name.
///
/// Names are normalised to lowercase and lose one trailing dot, because DNS compares names
/// without regard to case and `a.b.` is the fully-qualified form of `a.b`; two `ServiceName`s that
/// compare equal therefore name the same service. Wildcard hosts (`*.example.com`) are not
/// services and are rejected. Cheap to clone (an `Arc<str>` inside).
///
/// ```
/// use mesh_core::model::ServiceName;
/// let name: ServiceName = "Reviews.Shop.svc.cluster.local.".parse()?;
/// assert_eq!(name.as_str(), "reviews.shop.svc.cluster.local");
/// assert!("bad_name.example".parse::<ServiceName>().is_err());
/// # Ok::<(), mesh_core::model::ServiceNameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(Arc<str>);

impl ServiceName {
    /// Validates and normalises `name`.
    pub fn new(name: &str) -> Result<Self, ServiceNameError> {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        if trimmed.is_empty() {
            return Err(ServiceNameError::Empty);
        }
        if trimmed.len() > MAX_NAME_LEN {
            return Err(ServiceNameError::TooLong { len: trimmed.len() });
        }
        for label in trimmed.split('.') {
            validate_label(name, label)?;
        }
        Ok(Self(trimmed.to_ascii_lowercase().into()))
    }

    /// The normalised hostname.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate_label(name: &str, label: &str) -> Result<(), ServiceNameError> {
    if label.is_empty() {
        return Err(ServiceNameError::EmptyLabel {
            name: excerpt(name),
        });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(ServiceNameError::LabelTooLong {
            label: excerpt(label),
            len: label.len(),
        });
    }
    if let Some(character) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(ServiceNameError::BadChar {
            name: excerpt(name),
            character,
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(ServiceNameError::HyphenAtEdge {
            label: label.to_owned(),
        });
    }
    Ok(())
}

impl FromStr for ServiceName {
    type Err = ServiceNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceName({:?})", &*self.0)
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `ServiceName` be queried with an already-normalised `&str`.
impl Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn err(s: &str) -> ServiceNameError {
        ServiceName::new(s).unwrap_err()
    }

    #[test]
    fn accepts_and_normalises_hostnames() {
        for (input, expected) in [
            ("reviews", "reviews"),
            (
                "reviews.shop.svc.cluster.local",
                "reviews.shop.svc.cluster.local",
            ),
            ("API.Example.COM.", "api.example.com"),
            ("a-1.b2", "a-1.b2"),
            ("10-0-0-1.pods", "10-0-0-1.pods"),
        ] {
            assert_eq!(ServiceName::new(input).unwrap().as_str(), expected);
        }
        let a: ServiceName = "A.b".parse().unwrap();
        let b: ServiceName = "a.B.".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(format!("{a:?}"), "ServiceName(\"a.b\")");
    }

    #[test]
    fn rejects_invalid_hostnames() {
        assert_eq!(err(""), ServiceNameError::Empty);
        assert_eq!(err("."), ServiceNameError::Empty);
        assert!(matches!(err("a..b"), ServiceNameError::EmptyLabel { .. }));
        assert!(matches!(err(".a"), ServiceNameError::EmptyLabel { .. }));
        assert!(matches!(err("a.b.."), ServiceNameError::EmptyLabel { .. }));
        assert!(matches!(
            err("*.example.com"),
            ServiceNameError::BadChar { character: '*', .. }
        ));
        assert!(matches!(
            err("a_b"),
            ServiceNameError::BadChar { character: '_', .. }
        ));
        assert!(matches!(
            err("a:80"),
            ServiceNameError::BadChar { character: ':', .. }
        ));
        assert!(matches!(err("-a.b"), ServiceNameError::HyphenAtEdge { .. }));
        assert!(matches!(err("a-.b"), ServiceNameError::HyphenAtEdge { .. }));
        let long_label = "a".repeat(64);
        assert!(matches!(
            err(&long_label),
            ServiceNameError::LabelTooLong { len: 64, .. }
        ));
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(matches!(err(&long), ServiceNameError::TooLong { len: 255 }));
    }

    #[test]
    fn error_messages_name_the_problem() {
        let msg = err("shop_api.local").to_string();
        assert!(
            msg.contains("shop_api.local") && msg.contains("'_'"),
            "{msg}"
        );
    }

    #[test]
    fn borrow_allows_str_lookups() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(ServiceName::new("a.b").unwrap(), 1);
        assert_eq!(map.get("a.b"), Some(&1));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            if let Ok(name) = ServiceName::new(&s) {
                prop_assert_eq!(ServiceName::new(name.as_str()).unwrap(), name.clone());
                prop_assert!(name.as_str().len() <= MAX_NAME_LEN);
            }
        }

        #[test]
        fn valid_names_round_trip(labels in prop::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 1..6)) {
            let s = labels.join(".");
            let name = ServiceName::new(&s).unwrap();
            prop_assert_eq!(name.to_string(), s);
        }
    }
}

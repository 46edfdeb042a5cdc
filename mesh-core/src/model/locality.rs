use std::{fmt, str::FromStr};

use super::LocalityError;
use crate::identity::excerpt;

/// Where an endpoint runs: `region/zone/subzone`, as Istio and Kubernetes topology labels say.
///
/// Empty parts mean "unknown". A locality is used relative to the caller's own: the balancer
/// prefers endpoints whose locality [`matches`](Self::matches) more closely, so traffic stays in
/// the caller's zone while that zone is healthy.
///
/// ```
/// use mesh_core::model::{Locality, LocalityMatch};
/// let here: Locality = "us-east1/us-east1-b".parse()?;
/// let there = Locality::new("us-east1", "us-east1-c", "");
/// assert_eq!(here.matches(&there), LocalityMatch::Region);
/// assert_eq!(here.to_string(), "us-east1/us-east1-b");
/// # Ok::<(), mesh_core::model::LocalityError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locality {
    /// The region, such as `us-east1`; empty if unknown.
    pub region: String,
    /// The zone within the region, such as `us-east1-b`; empty if unknown.
    pub zone: String,
    /// The subzone within the zone (a rack, a node pool); empty if unknown.
    pub subzone: String,
}

/// How closely two localities agree, from closest to farthest.
///
/// The order is the balancer's priority order: `Subzone < Zone < Region < None`, and
/// [`priority`](Self::priority) gives the matching level number (0 is preferred).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocalityMatch {
    /// Same region, zone and subzone.
    Subzone,
    /// Same region and zone, different subzone.
    Zone,
    /// Same region, different zone.
    Region,
    /// Different (or unknown) region.
    None,
}

impl LocalityMatch {
    /// Number of distinct levels.
    pub const LEVELS: usize = 4;

    /// The priority level: 0 for [`Subzone`](Self::Subzone) through 3 for [`None`](Self::None).
    pub const fn priority(self) -> usize {
        match self {
            Self::Subzone => 0,
            Self::Zone => 1,
            Self::Region => 2,
            Self::None => 3,
        }
    }
}

impl Locality {
    /// A locality from its three parts.
    pub fn new(
        region: impl Into<String>,
        zone: impl Into<String>,
        subzone: impl Into<String>,
    ) -> Self {
        Self {
            region: region.into(),
            zone: zone.into(),
            subzone: subzone.into(),
        }
    }

    /// True if nothing is known (the region is empty).
    pub fn is_unknown(&self) -> bool {
        self.region.is_empty()
    }

    /// How closely `other` matches this locality. An unknown region never matches.
    pub fn matches(&self, other: &Self) -> LocalityMatch {
        if self.region.is_empty() || self.region != other.region {
            LocalityMatch::None
        } else if self.zone != other.zone {
            LocalityMatch::Region
        } else if self.subzone != other.subzone {
            LocalityMatch::Zone
        } else {
            LocalityMatch::Subzone
        }
    }
}

impl FromStr for Locality {
    type Err = LocalityError;

    /// Parses Istio's `region/zone/subzone` form; trailing parts may be omitted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/');
        let mut next = || parts.next().unwrap_or_default().to_owned();
        let locality = Self::new(next(), next(), next());
        if parts.next().is_some() {
            return Err(LocalityError::TooManyParts { input: excerpt(s) });
        }
        let missing_parent = (locality.region.is_empty() && !locality.zone.is_empty())
            || (locality.zone.is_empty() && !locality.subzone.is_empty());
        if missing_parent {
            return Err(LocalityError::MissingParent { input: excerpt(s) });
        }
        Ok(locality)
    }
}

impl fmt::Display for Locality {
    /// Writes `region/zone/subzone`, leaving out empty trailing parts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.region)?;
        if !self.zone.is_empty() || !self.subzone.is_empty() {
            write!(f, "/{}", self.zone)?;
        }
        if !self.subzone.is_empty() {
            write!(f, "/{}", self.subzone)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_levels() {
        let here = Locality::new("r1", "z1", "s1");
        assert_eq!(here.matches(&here.clone()), LocalityMatch::Subzone);
        assert_eq!(
            here.matches(&Locality::new("r1", "z1", "s2")),
            LocalityMatch::Zone
        );
        assert_eq!(
            here.matches(&Locality::new("r1", "z2", "s1")),
            LocalityMatch::Region
        );
        assert_eq!(
            here.matches(&Locality::new("r2", "z1", "s1")),
            LocalityMatch::None
        );
        // Unknown localities never count as local.
        let unknown = Locality::default();
        assert!(unknown.is_unknown());
        assert_eq!(unknown.matches(&unknown), LocalityMatch::None);
        assert!(LocalityMatch::Subzone < LocalityMatch::None);
        assert_eq!(LocalityMatch::Region.priority(), 2);
    }

    #[test]
    fn parse_and_display() {
        for s in ["", "r", "r/z", "r/z/s"] {
            let l: Locality = s.parse().unwrap();
            assert_eq!(l.to_string(), s);
        }
        let l: Locality = "r/z/s".parse().unwrap();
        assert_eq!(l, Locality::new("r", "z", "s"));
        assert_eq!(
            "r//".parse::<Locality>().unwrap(),
            Locality::new("r", "", "")
        );
        assert!(matches!(
            "a/b/c/d".parse::<Locality>(),
            Err(LocalityError::TooManyParts { .. })
        ));
        assert!(matches!(
            "/z".parse::<Locality>(),
            Err(LocalityError::MissingParent { .. })
        ));
        assert!(matches!(
            "r//s".parse::<Locality>(),
            Err(LocalityError::MissingParent { .. })
        ));
    }
}

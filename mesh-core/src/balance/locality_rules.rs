//! istiod's locality load-balancing rules (`localityLbSetting`): which priority level, and with
//! `distribute` which weighted locality group, each endpoint belongs to.
//!
//! The rules are described on [`LocalityRules`]. They are applied once per endpoint-set change
//! ([`plan`]); picks only read the result.

use std::{collections::BTreeMap, fmt, str::FromStr};

use thiserror::Error;

use crate::model::{Endpoint, Locality, LocalityMatch};

/// Most priority levels a balancer keeps; lower levels beyond it share the last one.
pub const MAX_LEVELS: usize = 16;
/// Most weighted locality groups `distribute` keeps; further localities share the last one.
pub const MAX_GROUPS: usize = 16;

/// Kubernetes' region topology label, derived from an endpoint's (or the caller's) locality.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// Kubernetes' zone topology label, derived from the locality.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Istio's subzone topology label, derived from the locality.
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";

/// A locality pattern of `distribute`: `region`, `region/zone`, `region/zone/subzone`, where the
/// last part may be `*` (any), as in `us-west/*` or `*`.
///
/// ```
/// use mesh_core::balance::LocalityPattern;
/// use mesh_core::model::Locality;
/// let p: LocalityPattern = "us-west/zone1/*".parse()?;
/// assert!(p.matches(&Locality::new("us-west", "zone1", "rack7")));
/// assert!(!p.matches(&Locality::new("us-west", "zone2", "")));
/// assert!(p.overlaps(&"us-west".parse()?));
/// # Ok::<(), mesh_core::balance::LocalityPatternError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalityPattern {
    /// The parts before any `*` (an empty list matches everything).
    parts: Vec<String>,
}

/// Why a locality pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LocalityPatternError {
    /// Empty, or an empty part (`us-west//a`).
    #[error("locality {0:?} must not contain empty region/zone/subzone parts")]
    EmptyPart(String),
    /// A `*` other than as the whole last part.
    #[error("locality {0:?}: '*' may appear once, as the whole last part (`us-west/*`, `*`)")]
    Wildcard(String),
    /// More than region, zone and subzone.
    #[error("locality {0:?} has more than 3 parts (region/zone/subzone)")]
    TooManyParts(String),
}

impl FromStr for LocalityPattern {
    type Err = LocalityPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let items: Vec<&str> = s.split('/').collect();
        if items.len() > 3 {
            return Err(LocalityPatternError::TooManyParts(s.to_owned()));
        }
        if items.iter().any(|i| i.is_empty()) {
            return Err(LocalityPatternError::EmptyPart(s.to_owned()));
        }
        let stars = s.matches('*').count();
        let last_is_star = items.last() == Some(&"*");
        if stars > 1 || (stars == 1 && !last_is_star) {
            return Err(LocalityPatternError::Wildcard(s.to_owned()));
        }
        let parts = items
            .iter()
            .take_while(|i| **i != "*")
            .map(|i| (*i).to_owned())
            .collect();
        Ok(Self { parts })
    }
}

impl fmt::Display for LocalityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("*");
        }
        f.write_str(&self.parts.join("/"))
    }
}

impl LocalityPattern {
    /// Whether `locality` is in this pattern (istiod's `LocalityMatch`: an absent or `*` part
    /// matches anything).
    pub fn matches(&self, locality: &Locality) -> bool {
        let actual = [&locality.region, &locality.zone, &locality.subzone];
        self.parts
            .iter()
            .zip(actual)
            .all(|(want, have)| want == have)
    }

    /// Whether some locality matches both patterns (one is a prefix of the other).
    pub fn overlaps(&self, other: &Self) -> bool {
        let n = self.parts.len().min(other.parts.len());
        self.parts.get(..n) == other.parts.get(..n)
    }
}

/// One `distribute` rule: callers in `from` send each `to` pattern its weight (percent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distribute {
    /// Callers this rule applies to.
    pub from: LocalityPattern,
    /// Destination localities and their weights; weights sum to 100 and patterns do not
    /// overlap (the loader checks both).
    pub to: Vec<(LocalityPattern, u32)>,
}

/// One `failover` rule: when the caller's region is `from`, region `to` is preferred over every
/// other remote region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionFailover {
    /// The caller's region.
    pub from: String,
    /// The region to fail over to first.
    pub to: String,
}

/// One `failoverPriority` entry: a label compared between caller and endpoint, or with
/// `label=value` a label every endpoint is compared against `value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityLabel {
    /// The label key.
    pub key: String,
    /// The value to prefer instead of the caller's own value of the label.
    pub value: Option<String>,
}

impl PriorityLabel {
    /// Parses `key` or `key=value` as istiod does.
    pub fn parse(text: &str) -> Self {
        match text.split_once('=') {
            Some((key, value)) => Self {
                key: key.to_owned(),
                value: Some(value.to_owned()),
            },
            None => Self {
                key: text.to_owned(),
                value: None,
            },
        }
    }
}

/// The locality rules of a DestinationRule as one balancer applies them, plus the caller's
/// labels `failoverPriority` compares with.
///
/// An empty value (the default) is istiod's default failover: subzone, zone, region, rest.
/// Otherwise:
///
/// - `failover` (`from` region → `to` region): for a caller in `from`, other regions are split
///   into `to` (level 3) and the rest (level 4), so `to` takes the traffic before any other.
/// - `failover_priority` (labels, in order): an endpoint's level is the number of labels left
///   when the first one differing from the caller's is found (all match: level 0). Region,
///   zone and subzone topology labels come from the localities. With `failover` as well, each
///   label level is subdivided by locality (istiod's `label_level * 5 + locality_level`), and
///   levels are renumbered without gaps; beyond [`MAX_LEVELS`] the lowest share the last.
/// - `distribute` (`from` → `to` patterns with weights): for a caller matching `from`, every
///   endpoint is in one level; each `to` locality forms a group weighted as istiod weights it
///   (the pattern's weight shared by endpoint weight among the localities it matches, rounded
///   up; beyond [`MAX_GROUPS`] localities the last group takes the rest). Endpoints in no `to`
///   locality get no traffic. A caller no rule matches gets no locality preference at all.
///
/// The
/// [`traffic`](crate::traffic) module builds it from `localityLbSetting` (only what istiod
/// would apply: `failover` and `failoverPriority` need outlier detection).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalityRules {
    /// `distribute`; when set, `failover` and `failoverPriority` are not used.
    pub distribute: Vec<Distribute>,
    /// `failover`.
    pub failover: Vec<RegionFailover>,
    /// `failoverPriority`.
    pub failover_priority: Vec<PriorityLabel>,
    /// The caller's own labels (its locality's topology labels are added to them).
    pub labels: BTreeMap<String, String>,
}

/// Where each endpoint goes: computed by [`plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Level per endpoint index; `None`: never picked (draining, or outside `distribute`).
    pub(crate) level_of: Vec<Option<u8>>,
    /// Number of levels (at least 1, at most [`MAX_LEVELS`]).
    pub(crate) levels: usize,
    /// With `distribute`: group per endpoint index and each group's weight.
    pub(crate) groups: Option<(Vec<u8>, Vec<u64>)>,
}

/// The value of a topology label derived from `locality`, if it is one and the part is known.
fn topology<'a>(locality: &'a Locality, key: &str) -> Option<&'a str> {
    let part = match key {
        REGION_LABEL => &locality.region,
        ZONE_LABEL => &locality.zone,
        SUBZONE_LABEL => &locality.subzone,
        _ => return None,
    };
    (!part.is_empty()).then_some(part.as_str())
}

fn label<'a>(labels: &'a BTreeMap<String, String>, locality: &'a Locality, key: &str) -> &'a str {
    topology(locality, key)
        .or_else(|| labels.get(key).map(String::as_str))
        .unwrap_or("")
}

/// Level by locality only: 0..=3, or 4 for remote regions other than a `failover` target.
fn locality_level(local: &Locality, endpoint: &Locality, failover: &[RegionFailover]) -> usize {
    if local.is_unknown() {
        return 0;
    }
    let level = local.matches(endpoint).priority();
    if level == LocalityMatch::None.priority()
        && let Some(rule) = failover.iter().find(|f| f.from == local.region)
        && endpoint.region != rule.to
    {
        return level + 1;
    }
    level
}

/// Assigns every endpoint its level (and group), as istiod would for a caller at `local`.
pub(crate) fn plan(rules: &LocalityRules, local: &Locality, endpoints: &[Endpoint]) -> Plan {
    if !rules.distribute.is_empty() {
        return distribute(rules, local, endpoints);
    }
    if rules.failover_priority.is_empty() {
        let levels = if rules.failover.is_empty() {
            LocalityMatch::LEVELS
        } else {
            LocalityMatch::LEVELS + 1
        };
        let level_of = endpoints
            .iter()
            .map(|e| Some(locality_level(local, &e.locality, &rules.failover) as u8))
            .collect();
        return Plan {
            level_of,
            levels,
            groups: None,
        };
    }
    // failoverPriority: labels first, then (only with `failover`) locality within each.
    let n = rules.failover_priority.len();
    let caller_known = !rules.labels.is_empty() || !local.is_unknown();
    let raw: Vec<usize> = endpoints
        .iter()
        .map(|e| {
            let mut level = 0;
            if caller_known {
                for (j, l) in rules.failover_priority.iter().enumerate() {
                    let want = match &l.value {
                        Some(v) => v.as_str(),
                        None => label(&rules.labels, local, &l.key),
                    };
                    if want != label(&e.labels, &e.locality, &l.key) {
                        level = n - j;
                        break;
                    }
                }
            }
            if rules.failover.is_empty() {
                level
            } else {
                level * 5 + locality_level(local, &e.locality, &rules.failover)
            }
        })
        .collect();
    // Renumber without gaps, as istiod does; levels past the last one we keep share it.
    let mut present: Vec<usize> = raw.clone();
    present.sort_unstable();
    present.dedup();
    let levels = present.len().clamp(1, MAX_LEVELS);
    let level_of = raw
        .iter()
        .map(|r| {
            let rank = present.binary_search(r).unwrap_or(0);
            Some(rank.min(MAX_LEVELS - 1) as u8)
        })
        .collect();
    Plan {
        level_of,
        levels,
        groups: None,
    }
}

fn distribute(rules: &LocalityRules, local: &Locality, endpoints: &[Endpoint]) -> Plan {
    let Some(rule) = rules.distribute.iter().find(|d| d.from.matches(local)) else {
        // No rule for this caller: istiod applies nothing, not even failover.
        return Plan {
            level_of: vec![Some(0); endpoints.len()],
            levels: 1,
            groups: None,
        };
    };
    // Groups: one per (to pattern, exact locality), in order of first appearance.
    let mut keys: Vec<(usize, &Locality)> = Vec::new();
    let mut sums: Vec<u64> = Vec::new();
    let mut group_of = vec![0u8; endpoints.len()];
    let mut level_of = vec![None; endpoints.len()];
    for (i, e) in endpoints.iter().enumerate() {
        let Some(t) = rule.to.iter().position(|(p, _)| p.matches(&e.locality)) else {
            continue;
        };
        let g = match keys.iter().position(|&(kt, l)| kt == t && *l == e.locality) {
            Some(g) => g,
            None => {
                keys.push((t, &e.locality));
                sums.push(0);
                keys.len() - 1
            }
        };
        if let Some(sum) = sums.get_mut(g) {
            *sum += u64::from(e.effective_weight());
        }
        let g = g.min(MAX_GROUPS - 1);
        if let (Some(slot), Some(level)) = (group_of.get_mut(i), level_of.get_mut(i)) {
            *slot = g as u8;
            *level = Some(0);
        }
    }
    // istiod: each locality gets ceil(its endpoint weight * pattern weight / pattern total).
    let mut weights = vec![0u64; keys.len().min(MAX_GROUPS)];
    for (g, &(t, _)) in keys.iter().enumerate() {
        let total: u64 = keys
            .iter()
            .zip(&sums)
            .filter(|((kt, _), _)| *kt == t)
            .map(|(_, s)| *s)
            .sum();
        let percent = rule.to.get(t).map_or(0, |(_, w)| u64::from(*w));
        let own = sums.get(g).copied().unwrap_or(0);
        let weight = (own * percent).div_ceil(total.max(1));
        if let Some(w) = weights.get_mut(g.min(MAX_GROUPS - 1)) {
            *w += weight;
        }
    }
    Plan {
        level_of,
        levels: 1,
        groups: Some((group_of, weights)),
    }
}

#[cfg(test)]
#[path = "locality_rules_tests.rs"]
mod tests;

//! The workload's own locality (`workload.locality`), which the load balancers compare with the
//! endpoints' localities: nearby endpoints first, and Istio's `localityLbSetting` rules
//! (`failover`, `failoverPriority`, `distribute`) are written relative to it.
//!
//! Istio learns a proxy's locality from its node's topology labels; here the workload says it,
//! either as a mapping or in Istio's string form:
//!
//! ```
//! use mesh_core::config::MeshConfig;
//! use mesh_core::model::Locality;
//!
//! let mapping = MeshConfig::from_yaml(
//!     "workload: { locality: { region: us-east1, zone: us-east1-b } }",
//! )?;
//! let string = MeshConfig::from_yaml("workload: { locality: us-east1/us-east1-b }")?;
//! assert_eq!(mapping, string);
//! let settings = mapping.workload_settings()?;
//! assert_eq!(settings.locality, Locality::new("us-east1", "us-east1-b", ""));
//!
//! // Without `locality`, the Kubernetes topology labels in `workload.labels` are read.
//! let labelled = MeshConfig::from_yaml(
//!     "workload: { labels: { topology.kubernetes.io/region: eu-west1 } }",
//! )?;
//! assert_eq!(labelled.workload_settings()?.locality.region, "eu-west1");
//! # Ok::<(), mesh_core::config::ConfigError>(())
//! ```

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, Visitor, value::MapAccessDeserializer},
};

use super::ConfigError;
use crate::{
    balance::{REGION_LABEL, SUBZONE_LABEL, ZONE_LABEL},
    model::Locality,
};

/// `workload.locality`: where this workload runs, as Istio's `region/zone/subzone`.
///
/// Written as a mapping (`{ region: us-east1, zone: us-east1-b, subzone: rack-7 }`, unknown
/// fields refused) or as the string `us-east1/us-east1-b/rack-7`; trailing parts may be left
/// out. A zone needs its region and a subzone its zone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalityConfig {
    /// The region, such as `us-east1` (Kubernetes' `topology.kubernetes.io/region`).
    pub region: Option<String>,
    /// The zone within the region, such as `us-east1-b` (`topology.kubernetes.io/zone`).
    pub zone: Option<String>,
    /// The subzone within the zone, such as a rack (Istio's `topology.istio.io/subzone`).
    pub subzone: Option<String>,
}

/// The mapping form, strict.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Parts {
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    subzone: Option<String>,
}

impl<'de> Deserialize<'de> for LocalityConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LocalityVisitor)
    }
}

struct LocalityVisitor;

impl<'de> Visitor<'de> for LocalityVisitor {
    type Value = LocalityConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("region/zone/subzone, or a mapping with region, zone and subzone")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > 3 {
            return Err(E::custom(format!(
                "{text:?} has more than three parts; write region/zone/subzone"
            )));
        }
        let part = |i: usize| {
            parts
                .get(i)
                .filter(|p| !p.is_empty())
                .map(|p| (*p).to_owned())
        };
        Ok(LocalityConfig {
            region: part(0),
            zone: part(1),
            subzone: part(2),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let parts = Parts::deserialize(MapAccessDeserializer::new(map))?;
        Ok(LocalityConfig {
            region: parts.region,
            zone: parts.zone,
            subzone: parts.subzone,
        })
    }
}

/// The workload's locality: `locality` when given, else the topology labels in `labels`
/// (`topology.kubernetes.io/region`, `topology.kubernetes.io/zone`,
/// `topology.istio.io/subzone`, as istiod reads them from the node), else unknown.
pub(super) fn resolve_locality(
    locality: Option<&LocalityConfig>,
    labels: &BTreeMap<String, String>,
) -> Result<Locality, ConfigError> {
    match locality {
        Some(config) => build(
            [
                ("workload.locality.region", config.region.as_deref()),
                ("workload.locality.zone", config.zone.as_deref()),
                ("workload.locality.subzone", config.subzone.as_deref()),
            ],
            "workload.locality",
        ),
        None => {
            let label = |key: &str| labels.get(key).map(String::as_str);
            build(
                [
                    (
                        "workload.labels.topology.kubernetes.io/region",
                        label(REGION_LABEL),
                    ),
                    (
                        "workload.labels.topology.kubernetes.io/zone",
                        label(ZONE_LABEL),
                    ),
                    (
                        "workload.labels.topology.istio.io/subzone",
                        label(SUBZONE_LABEL),
                    ),
                ],
                "workload.labels",
            )
        }
    }
}

/// Checks the three parts (path, value) and builds the locality; `what` names the section
/// in messages.
fn build(parts: [(&str, Option<&str>); 3], what: &str) -> Result<Locality, ConfigError> {
    let [region, zone, subzone] = parts.map(|(path, value)| (path, value.unwrap_or_default()));
    for (path, value) in [region, zone, subzone] {
        if value.contains('/') {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "{value:?} contains '/'; give each part on its own (region, zone, subzone)"
                ),
            ));
        }
        if value != value.trim() || value.chars().any(char::is_control) {
            return Err(ConfigError::invalid(
                path,
                format!("{value:?} has surrounding spaces or control characters"),
            ));
        }
    }
    let missing_parent = [(zone, region, "region"), (subzone, zone, "zone")];
    for ((path, value), (_, parent), parent_name) in missing_parent {
        if !value.is_empty() && parent.is_empty() {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "{value:?} is given without a {parent_name}; a locality is region/zone/subzone \
                     and each part needs the one before it (set the {parent_name} in {what})"
                ),
            ));
        }
    }
    Ok(Locality::new(region.1, zone.1, subzone.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MeshConfig;

    fn settings(yaml: &str) -> Result<Locality, ConfigError> {
        Ok(MeshConfig::from_yaml(yaml)?.workload_settings()?.locality)
    }

    fn error(yaml: &str) -> ConfigError {
        settings(yaml).expect_err(yaml)
    }

    #[test]
    fn both_forms_give_the_same_locality() {
        let full = Locality::new("us-east1", "us-east1-b", "rack-7");
        assert_eq!(
            settings("workload: { locality: us-east1/us-east1-b/rack-7 }").unwrap(),
            full
        );
        assert_eq!(
            settings(
                "workload:\n  locality:\n    region: us-east1\n    zone: us-east1-b\n    subzone: rack-7\n"
            )
            .unwrap(),
            full
        );
        assert_eq!(
            settings("workload: { locality: us-east1 }").unwrap(),
            Locality::new("us-east1", "", "")
        );
        assert_eq!(
            settings("workload: { locality: { region: r, zone: z } }").unwrap(),
            Locality::new("r", "z", "")
        );
        // Absent, empty or `{}`: unknown, so no locality preference.
        for yaml in [
            "workload: {}",
            "services: []",
            "workload: { locality: {} }",
            "workload: { locality: \"\" }",
        ] {
            assert!(settings(yaml).unwrap().is_unknown(), "{yaml}");
        }
    }

    #[test]
    fn topology_labels_are_the_fallback_and_lose_to_locality() {
        let labels = "labels: { topology.kubernetes.io/region: eu-west1, topology.kubernetes.io/zone: eu-west1-c, topology.istio.io/subzone: s1, app: web }";
        assert_eq!(
            settings(&format!("workload: {{ {labels} }}")).unwrap(),
            Locality::new("eu-west1", "eu-west1-c", "s1")
        );
        assert_eq!(
            settings(&format!("workload: {{ locality: us-east1, {labels} }}")).unwrap(),
            Locality::new("us-east1", "", "")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "workload: { locality: { zone: z } }",
                "workload.locality.zone",
                "without a region",
            ),
            (
                "workload: { locality: { region: r, subzone: s } }",
                "workload.locality.subzone",
                "without a zone",
            ),
            (
                "workload: { locality: /z }",
                "workload.locality.zone",
                "without a region",
            ),
            (
                "workload: { locality: r//s }",
                "workload.locality.subzone",
                "without a zone",
            ),
            (
                "workload: { locality: { region: r/z } }",
                "workload.locality.region",
                "contains '/'",
            ),
            (
                "workload: { locality: { region: \" r\" } }",
                "workload.locality.region",
                "spaces",
            ),
            (
                "workload: { labels: { topology.kubernetes.io/zone: z } }",
                "workload.labels.topology.kubernetes.io/zone",
                "without a region",
            ),
            (
                "workload: { labels: { topology.kubernetes.io/region: r, topology.istio.io/subzone: s } }",
                "workload.labels.topology.istio.io/subzone",
                "without a zone",
            ),
        ];
        for (yaml, path, reason) in cases {
            let e = error(yaml);
            assert!(matches!(e, ConfigError::Invalid { .. }), "{yaml}: {e:?}");
            assert_eq!(e.path(), path, "{yaml}: {e}");
            assert!(e.to_string().contains(reason), "{yaml}: {e}");
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        let cases = [
            (
                "workload: { locality: { region: r, zonee: z } }",
                "workload.locality.zonee",
                "unknown field `zonee`",
            ),
            (
                "workload: { locality: a/b/c/d }",
                "workload.locality",
                "more than three parts",
            ),
            (
                "workload: { locality: [r, z] }",
                "workload.locality",
                "region/zone/subzone",
            ),
            (
                "workload: { locality: { region: [r] } }",
                "workload.locality.region",
                "invalid type",
            ),
        ];
        for (yaml, path, reason) in cases {
            let e = MeshConfig::from_yaml(yaml).expect_err(yaml);
            assert!(matches!(e, ConfigError::Syntax { .. }), "{yaml}: {e:?}");
            assert_eq!(e.path(), path, "{yaml}: {e}");
            assert!(e.to_string().contains(reason), "{yaml}: {e}");
        }
    }
}

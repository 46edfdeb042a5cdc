//! The workload's traffic policy: the services' own `traffic_policy` sections plus Istio
//! DestinationRule/VirtualService files, checked against each other.

use mesh_core::{
    config::{MeshConfig, WorkloadSettings},
    traffic::{TrafficConfig, TrafficResource, parse_resources},
};

use super::MeshError;

/// Builds the traffic configuration. Every file must parse; references (subsets named by
/// routes, one rule per host) are checked across the config and all files together.
pub(crate) fn load(
    config: &MeshConfig,
    settings: &WorkloadSettings,
) -> Result<TrafficConfig, MeshError> {
    let sections = config
        .traffic_sections()
        .map_err(|mut errors| MeshError::Config(errors.swap_remove(0)))?;
    let mut resources = Vec::new();
    for section in sections {
        resources.push(TrafficResource::DestinationRule(Box::new(section.rule)));
        resources.extend(section.routes.map(TrafficResource::VirtualService));
    }
    for path in &settings.traffic_files {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| MeshError::Traffic {
            path: shown.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        resources.extend(parse_resources(&text).map_err(|e| MeshError::Traffic {
            path: shown.clone(),
            reason: e.to_string(),
        })?);
    }
    TrafficConfig::from_resources(resources).map_err(|errors| {
        let reasons: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{:?} {}/{}: {}: {}",
                    e.kind, e.namespace, e.name, e.path, e.reason
                )
            })
            .collect();
        MeshError::Traffic {
            path: "traffic policy".to_owned(),
            reason: reasons.join("; "),
        }
    })
}

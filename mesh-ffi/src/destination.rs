//! Why a destination could not be reached when the mesh found nothing to send to: the service
//! is unknown (`MESH_ERR_UNKNOWN_SERVICE`) or known without a reachable endpoint for the port
//! (`MESH_ERR_NO_ENDPOINT`).
//!
//! `mesh-client` reports both as "no endpoint"; the host's fix differs (declare the service vs.
//! look at its endpoints' health), so the ABI tells them apart by asking discovery and the
//! traffic configuration what they know about the name, after the call failed.

use mesh_client::mesh::Mesh;

use crate::{error::Error, status::mesh_status};

/// How many known service names an "unknown service" message lists.
const NAMES_SHOWN: usize = 5;

/// `Some(error)` with `MESH_ERR_UNKNOWN_SERVICE` when neither discovery nor a VirtualService
/// knows `host`; `None` when the name is known (the original failure stands).
pub(crate) fn unknown_service(mesh: &Mesh, host: &str, port: u16) -> Option<Error> {
    let snapshot = mesh.discovery().current();
    if snapshot.service(host).is_some() || mesh.routes().traffic().virtual_service(host).is_some() {
        return None;
    }
    let mut names: Vec<&str> = snapshot
        .iter()
        .map(|(service, _)| service.hostname.as_str())
        .collect();
    names.sort_unstable();
    let known = if names.is_empty() {
        "it knows no service at all".to_owned()
    } else {
        let more = names.len().saturating_sub(NAMES_SHOWN);
        let mut list = names
            .iter()
            .take(NAMES_SHOWN)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if more > 0 {
            list.push_str(&format!(" and {more} more"));
        }
        format!("it knows {list}")
    };
    Some(Error::new(
        mesh_status::MESH_ERR_UNKNOWN_SERVICE,
        format!(
            "the mesh does not know the service {host} (asked for port {port}): it is neither \
             in the configuration's `services:` nor in a discovery backend, and no \
             VirtualService names it ({known}); declare it under `services:` (endpoints, ports \
             and SPIFFE identity) or register it with discovery, or check the name"
        ),
    ))
}

/// Narrows a "no endpoint" failure for `host:port`: unknown services get their own status; a
/// known service whose port is not declared says which ports it has.
pub(crate) fn no_endpoint(mesh: &Mesh, host: &str, port: u16, error: Error) -> Error {
    if let Some(unknown) = unknown_service(mesh, host, port) {
        return unknown;
    }
    let snapshot = mesh.discovery().current();
    match snapshot.service(host) {
        Some(service) if service.port(port).is_none() && !service.ports.is_empty() => {
            let ports = service
                .ports
                .iter()
                .map(|p| p.number.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            Error::new(
                mesh_status::MESH_ERR_NO_ENDPOINT,
                format!(
                    "{}; {host} declares port(s) {ports}, not {port}: use one of them or add \
                     the port to the service",
                    error.message
                ),
            )
        }
        _ => error,
    }
}

//! The `discovery.dns` section, validated.

use std::net::SocketAddr;

use super::{ConfigError, ServiceConfig, snapshot::convert_service};
use crate::model::DEFAULT_HBONE_PORT;

/// Validates the `discovery.dns` section.
pub(super) fn resolve_dns(
    section: &super::workload::DnsDiscoverySection,
) -> Result<super::DnsSettings, ConfigError> {
    let servers = section
        .servers
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<SocketAddr>().map_err(|_| {
                ConfigError::invalid(
                    format!("discovery.dns.servers[{i}]"),
                    format!("{text:?} is not ip:port (such as 10.0.0.10:53)"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut services = Vec::new();
    for (i, dns) in section.services.iter().enumerate() {
        let path = format!("discovery.dns.services[{i}]");
        let as_service = ServiceConfig {
            host: dns.host.clone(),
            ports: dns.ports.clone(),
            identities: dns.identities.clone(),
            endpoints: Vec::new(),
            traffic_policy: None,
            health_check: None,
        };
        let (service, _) = convert_service(&as_service, &path)?;
        if service.expected_identities.is_empty() {
            return Err(ConfigError::invalid(
                format!("{path}.identities"),
                "empty; DNS cannot tell a workload's SPIFFE ID, so list the IDs its endpoints present",
            ));
        }
        let query = match (&dns.a, dns.port, &dns.srv) {
            (Some(name), Some(port), None) if port != 0 => super::DnsQuery::Address {
                name: name.clone(),
                port,
            },
            (Some(_), _, None) => {
                return Err(ConfigError::invalid(
                    format!("{path}.port"),
                    "missing or 0; with `a`, give the port the endpoints serve on",
                ));
            }
            (None, None, Some(name)) => super::DnsQuery::Srv { name: name.clone() },
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    "give either `a` (with `port`) or `srv`, not both and not neither",
                ));
            }
        };
        services.push(super::DnsServiceSettings {
            service,
            query,
            hbone_port: dns.hbone_port.unwrap_or(DEFAULT_HBONE_PORT),
        });
    }
    Ok(super::DnsSettings { servers, services })
}

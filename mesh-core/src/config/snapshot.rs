//! Validating a parsed document and turning it into the model.

use std::{collections::HashSet, net::SocketAddr};

use super::{ConfigError, EndpointConfig, HealthConfig, MeshConfig, ProtocolConfig, ServiceConfig};
use crate::{
    SpiffeId,
    model::{
        DEFAULT_HBONE_PORT, Endpoint, Health, Locality, Port, Protocol, Service, ServiceName,
        Snapshot,
    },
};

impl MeshConfig {
    /// Validates every value and builds the snapshot discovery publishes, at `version`.
    pub fn to_snapshot(&self, version: u64) -> Result<Snapshot, ConfigError> {
        let mut snapshot = Snapshot::new(version);
        let mut seen = HashSet::new();
        for (i, service) in self.services.iter().enumerate() {
            let path = format!("services[{i}]");
            let (svc, endpoints) = convert_service(service, &path)?;
            if !seen.insert(svc.hostname.as_str().to_owned()) {
                return Err(ConfigError::invalid(
                    format!("{path}.host"),
                    format!(
                        "service {} is defined twice; merge the two entries",
                        svc.hostname.as_str()
                    ),
                ));
            }
            snapshot.insert(svc, endpoints.into());
        }
        Ok(snapshot)
    }
}

pub(super) fn convert_service(
    config: &ServiceConfig,
    path: &str,
) -> Result<(Service, Vec<Endpoint>), ConfigError> {
    let hostname = ServiceName::new(&config.host)
        .map_err(|e| ConfigError::invalid(format!("{path}.host"), e.to_string()))?;
    let mut service = Service::new(hostname);
    let mut ports = HashSet::new();
    for (i, port) in config.ports.iter().enumerate() {
        let here = format!("{path}.ports[{i}]");
        if port.port == 0 {
            return Err(ConfigError::invalid(
                format!("{here}.port"),
                "port 0 is not a port; use 1-65535",
            ));
        }
        if !ports.insert(port.port) {
            return Err(ConfigError::invalid(
                format!("{here}.port"),
                format!("port {} is listed twice", port.port),
            ));
        }
        let protocol = match port.protocol {
            ProtocolConfig::Tcp => Protocol::Tcp,
            ProtocolConfig::Http => Protocol::Http,
            ProtocolConfig::Http2 => Protocol::Http2,
            ProtocolConfig::Grpc => Protocol::Grpc,
        };
        let mut p = Port::new(port.port, protocol);
        if let Some(name) = &port.name {
            p = p.with_name(name.clone());
        }
        service = service.with_port(p);
    }
    for (i, id) in config.identities.iter().enumerate() {
        service = service.with_expected_identity(parse_id(id, &format!("{path}.identities[{i}]"))?);
    }
    let endpoints = config
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| convert_endpoint(ep, &format!("{path}.endpoints[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut addresses = HashSet::new();
    for (i, ep) in endpoints.iter().enumerate() {
        if !addresses.insert(ep.address) {
            return Err(ConfigError::invalid(
                format!("{path}.endpoints[{i}].address"),
                format!("endpoint {} is listed twice", ep.address),
            ));
        }
    }
    Ok((service, endpoints))
}

fn parse_id(id: &str, path: &str) -> Result<SpiffeId, ConfigError> {
    id.parse()
        .map_err(|e: crate::SpiffeIdError| ConfigError::invalid(path, e.to_string()))
}

fn convert_endpoint(config: &EndpointConfig, path: &str) -> Result<Endpoint, ConfigError> {
    let address: SocketAddr = config.address.parse().map_err(|_| {
        ConfigError::invalid(
            format!("{path}.address"),
            format!(
                "{:?} is not ip:port (IPv6 as [addr]:port); host names belong in DNS discovery",
                config.address
            ),
        )
    })?;
    let mut ep =
        Endpoint::new(address).with_hbone_port(config.hbone_port.unwrap_or(DEFAULT_HBONE_PORT));
    if let Some(id) = &config.identity {
        ep = ep.with_identity(parse_id(id, &format!("{path}.identity"))?);
    }
    if let Some(weight) = config.weight {
        if weight == 0 {
            return Err(ConfigError::invalid(
                format!("{path}.weight"),
                "weight must be at least 1",
            ));
        }
        ep = ep.with_weight(weight);
    }
    if let Some(locality) = &config.locality {
        let locality: Locality = locality.parse().map_err(|e: crate::model::LocalityError| {
            ConfigError::invalid(format!("{path}.locality"), e.to_string())
        })?;
        ep = ep.with_locality(locality);
    }
    ep = ep.with_health(match config.health {
        HealthConfig::Healthy => Health::Healthy,
        HealthConfig::Unhealthy => Health::Unhealthy,
        HealthConfig::Draining => Health::Draining,
    });
    for (k, v) in &config.labels {
        ep = ep.with_label(k.clone(), v.clone());
    }
    Ok(ep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> ConfigError {
        MeshConfig::from_yaml(yaml)
            .and_then(|c| c.to_snapshot(1))
            .unwrap_err()
    }

    #[test]
    fn full_document_converts() {
        let yaml = r#"
services:
  - host: Inventory.Shop.svc.cluster.local
    ports:
      - { port: 8080, name: http, protocol: http }
      - { port: 9090, protocol: grpc }
    identities: [spiffe://cluster.local/ns/shop/sa/inventory]
    endpoints:
      - address: 10.0.0.7:8080
        weight: 3
        locality: us-east1/us-east1-b
        labels: { version: v1 }
      - address: "[fd00::8]:8080"
        hbone_port: 15009
        identity: spiffe://cluster.local/ns/shop/sa/inventory-canary
        health: draining
"#;
        let snapshot = MeshConfig::from_yaml(yaml).unwrap().to_snapshot(7).unwrap();
        assert_eq!(snapshot.version(), 7);
        let svc = snapshot
            .service("inventory.shop.svc.cluster.local")
            .unwrap();
        assert_eq!(svc.port(9090).unwrap().protocol, Protocol::Grpc);
        let eps = snapshot
            .endpoints("inventory.shop.svc.cluster.local")
            .unwrap();
        assert_eq!(eps[0].weight, 3);
        assert_eq!(eps[0].labels["version"], "v1");
        assert_eq!(
            eps[1].hbone_address(),
            Some("[fd00::8]:15009".parse().unwrap())
        );
        assert_eq!(eps[1].health, Health::Draining);
    }

    #[test]
    fn unknown_fields_name_their_path() {
        let e = err(
            "services:\n  - host: a.b\n    endpoints:\n      - address: 10.0.0.1:80\n        wieght: 2\n",
        );
        assert_eq!(e.path(), "services[0].endpoints[0].wieght");
        assert!(e.to_string().contains("unknown field `wieght`"), "{e}");
        let e = err("servics: []\n");
        assert!(e.to_string().contains("unknown field `servics`"), "{e}");
    }

    #[test]
    fn bad_values_name_their_path() {
        let cases = [
            (
                "services:\n  - host: a.b\n    endpoints: [{ address: nope }]\n",
                "services[0].endpoints[0].address",
            ),
            (
                "services:\n  - host: a.b\n    endpoints: [{ address: 10.0.0.1:80, weight: 0 }]\n",
                "services[0].endpoints[0].weight",
            ),
            (
                "services:\n  - host: a.b\n    identities: [spiffe://X/y]\n",
                "services[0].identities[0]",
            ),
            (
                "services:\n  - host: a.b\n    ports: [{ port: 80 }, { port: 80 }]\n",
                "services[0].ports[1].port",
            ),
            (
                "services:\n  - host: a.b\n  - host: A.B\n",
                "services[1].host",
            ),
            ("services:\n  - host: 'bad host'\n", "services[0].host"),
            (
                "services:\n  - host: a.b\n    ports: [{ port: 70000 }]\n",
                "services[0].ports[0].port",
            ),
            (
                "services:\n  - host: a.b\n    ports: [{ port: 80, protocol: udp }]\n",
                "services[0].ports[0].protocol",
            ),
            (
                "services:\n  - host: a.b\n    endpoints: [{ address: 10.0.0.1:80 }, { address: 10.0.0.1:80 }]\n",
                "services[0].endpoints[1].address",
            ),
        ];
        for (yaml, path) in cases {
            let e = err(yaml);
            assert_eq!(e.path(), path, "{yaml}: {e}");
        }
    }

    #[test]
    fn empty_and_json_documents() {
        assert_eq!(MeshConfig::from_yaml("{}").unwrap(), MeshConfig::default());
        let json = r#"{"services":[{"host":"a.b","endpoints":[{"address":"127.0.0.1:1"}]}]}"#;
        assert_eq!(
            MeshConfig::from_yaml(json)
                .unwrap()
                .to_snapshot(1)
                .unwrap()
                .len(),
            1
        );
    }
}

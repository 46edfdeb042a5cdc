//! The key layout and the JSON records stored under it, with their conversion to and from the
//! model.
//!
//! The records are our own serde structs rather than `mesh_core::config`'s schema types: those
//! only deserialize, and refuse unknown fields. Registry records are written by programs of
//! possibly newer versions during a rolling upgrade, so unknown fields are ignored here (an older
//! client must not drop every endpoint a newer registrar wrote). Values are validated exactly as
//! strictly as the config file's: a record that fails is skipped and reported, never half-used.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
};

use mesh_core::{
    SpiffeId,
    model::{DEFAULT_HBONE_PORT, Endpoint, Health, Locality, Port, Protocol, Service, ServiceName},
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::EtcdError;

/// Why one key/value under the prefix was skipped.
#[derive(Debug, Error)]
pub(crate) enum RecordError {
    /// The key does not follow the layout.
    #[error("key does not follow the layout: {reason}")]
    Key { reason: String },
    /// The value is not the expected JSON.
    #[error("value is not a valid {kind} record: {source}")]
    Json {
        kind: &'static str,
        source: serde_json::Error,
    },
    /// A field parsed but its value is not acceptable.
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

fn field(field: &'static str, reason: impl Into<String>) -> RecordError {
    RecordError::Field {
        field,
        reason: reason.into(),
    }
}

/// What a key names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// `<prefix>/services/<hostname>`.
    Service(ServiceName),
    /// `<prefix>/endpoints/<hostname>/<ip:port>`.
    Endpoint(ServiceName, SocketAddr),
}

/// Builds and parses keys under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// The prefix with exactly one trailing `/`: what the watch covers.
    root: String,
}

impl Keys {
    /// Keys under `prefix` (trailing slashes are ignored; `""` means the root).
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            root: format!("{}/", prefix.trim_end_matches('/')),
        }
    }

    /// The range discovery reads and watches (`<prefix>/`).
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    /// Where a service's record lives.
    pub(crate) fn service(&self, host: &ServiceName) -> String {
        format!("{}services/{host}", self.root)
    }

    /// Where one endpoint's record lives.
    pub(crate) fn endpoint(&self, host: &ServiceName, address: SocketAddr) -> String {
        format!("{}endpoints/{host}/{address}", self.root)
    }

    /// What `key` names.
    pub(crate) fn parse(&self, key: &str) -> Result<KeyKind, RecordError> {
        let bad = |reason: &str| RecordError::Key {
            reason: format!(
                "{reason}; expected {root}services/<hostname> or \
                 {root}endpoints/<hostname>/<ip:port>",
                root = self.root
            ),
        };
        let rest = key
            .strip_prefix(self.root.as_str())
            .ok_or_else(|| bad("outside the prefix"))?;
        let host = |name: &str| {
            ServiceName::new(name).map_err(|e| RecordError::Key {
                reason: e.to_string(),
            })
        };
        if let Some(name) = rest.strip_prefix("services/") {
            if name.contains('/') {
                return Err(bad("a service key has one segment after services/"));
            }
            return Ok(KeyKind::Service(host(name)?));
        }
        if let Some(rest) = rest.strip_prefix("endpoints/") {
            let (name, address) = rest
                .split_once('/')
                .ok_or_else(|| bad("an endpoint key has two segments after endpoints/"))?;
            let address: SocketAddr = address.parse().map_err(|_| RecordError::Key {
                reason: format!("{address:?} is not ip:port (IPv6 as [addr]:port)"),
            })?;
            return Ok(KeyKind::Endpoint(host(name)?, address));
        }
        Err(bad("unknown kind"))
    }
}

/// `<prefix>/services/<hostname>`: what the service offers and who may answer for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServiceRecord {
    /// Its ports.
    #[serde(default)]
    pub(crate) ports: Vec<PortRecord>,
    /// SPIFFE IDs any endpoint may present.
    #[serde(default)]
    pub(crate) identities: Vec<String>,
}

/// One service port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PortRecord {
    /// The number.
    pub(crate) port: u16,
    /// Its name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// What it speaks.
    #[serde(default)]
    pub(crate) protocol: ProtocolRecord,
}

/// Port protocols on the wire (as in the config file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProtocolRecord {
    /// Opaque TCP.
    #[default]
    Tcp,
    /// HTTP/1.1.
    Http,
    /// HTTP/2 with prior knowledge.
    Http2,
    /// gRPC.
    Grpc,
}

/// Endpoint health on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthRecord {
    /// Serving.
    #[default]
    Healthy,
    /// Not serving.
    Unhealthy,
    /// Shutting down.
    Draining,
}

fn default_hbone_port() -> u16 {
    DEFAULT_HBONE_PORT
}

const fn default_weight() -> u32 {
    1
}

/// `<prefix>/endpoints/<hostname>/<ip:port>`: one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndpointRecord {
    /// `ip:port`; must equal the key's last segment.
    pub(crate) address: String,
    /// HBONE port (0: outside the mesh).
    #[serde(default = "default_hbone_port")]
    pub(crate) hbone_port: u16,
    /// The SPIFFE ID it presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) identity: Option<String>,
    /// Relative weight, at least 1.
    #[serde(default = "default_weight")]
    pub(crate) weight: u32,
    /// `region/zone/subzone`, empty if unknown.
    #[serde(default)]
    pub(crate) locality: String,
    /// Reported health.
    #[serde(default)]
    pub(crate) health: HealthRecord,
    /// Workload labels.
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

fn parse_id(text: &str, name: &'static str) -> Result<SpiffeId, RecordError> {
    text.parse()
        .map_err(|e: mesh_core::SpiffeIdError| field(name, e.to_string()))
}

impl ServiceRecord {
    /// The record for `service`. Fails only for a protocol this version cannot write.
    pub(crate) fn from_service(service: &Service) -> Result<Self, EtcdError> {
        let ports = service
            .ports
            .iter()
            .map(|p| {
                let protocol = match p.protocol {
                    Protocol::Tcp => ProtocolRecord::Tcp,
                    Protocol::Http => ProtocolRecord::Http,
                    Protocol::Http2 => ProtocolRecord::Http2,
                    Protocol::Grpc => ProtocolRecord::Grpc,
                    other => {
                        return Err(EtcdError::UnsupportedProtocol {
                            protocol: format!("{other:?}"),
                        });
                    }
                };
                Ok(PortRecord {
                    port: p.number,
                    name: p.name.clone(),
                    protocol,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            ports,
            identities: service
                .expected_identities
                .iter()
                .map(|id| id.as_str().to_owned())
                .collect(),
        })
    }

    /// Parses a stored value.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        serde_json::from_slice(bytes).map_err(|source| RecordError::Json {
            kind: "service",
            source,
        })
    }

    /// Validates the record and builds the service named `hostname`.
    pub(crate) fn into_service(self, hostname: ServiceName) -> Result<Service, RecordError> {
        let mut service = Service::new(hostname);
        let mut seen = HashSet::new();
        for port in self.ports {
            if port.port == 0 {
                return Err(field("ports", "port 0 is not a port; use 1-65535"));
            }
            if !seen.insert(port.port) {
                return Err(field(
                    "ports",
                    format!("port {} is listed twice", port.port),
                ));
            }
            let protocol = match port.protocol {
                ProtocolRecord::Tcp => Protocol::Tcp,
                ProtocolRecord::Http => Protocol::Http,
                ProtocolRecord::Http2 => Protocol::Http2,
                ProtocolRecord::Grpc => Protocol::Grpc,
            };
            let mut p = Port::new(port.port, protocol);
            if let Some(name) = port.name {
                p = p.with_name(name);
            }
            service = service.with_port(p);
        }
        for id in &self.identities {
            service = service.with_expected_identity(parse_id(id, "identities")?);
        }
        Ok(service)
    }
}

impl EndpointRecord {
    /// The record for `endpoint` (weight 0 is written as 1, as balancers treat it).
    pub(crate) fn from_endpoint(endpoint: &Endpoint) -> Self {
        Self {
            address: endpoint.address.to_string(),
            hbone_port: endpoint.hbone_port,
            identity: endpoint.identity.as_ref().map(|id| id.as_str().to_owned()),
            weight: endpoint.effective_weight(),
            locality: endpoint.locality.to_string(),
            health: match endpoint.health {
                Health::Healthy => HealthRecord::Healthy,
                Health::Unhealthy => HealthRecord::Unhealthy,
                Health::Draining => HealthRecord::Draining,
            },
            labels: endpoint.labels.clone(),
        }
    }

    /// Parses a stored value.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        serde_json::from_slice(bytes).map_err(|source| RecordError::Json {
            kind: "endpoint",
            source,
        })
    }

    /// Validates the record stored under a key naming `key_address`, and builds the endpoint.
    pub(crate) fn into_endpoint(self, key_address: SocketAddr) -> Result<Endpoint, RecordError> {
        let address: SocketAddr = self.address.parse().map_err(|_| {
            field(
                "address",
                format!("{:?} is not ip:port (IPv6 as [addr]:port)", self.address),
            )
        })?;
        if address != key_address {
            return Err(field(
                "address",
                format!("{address} differs from the key's {key_address}"),
            ));
        }
        if self.weight == 0 {
            return Err(field("weight", "weight must be at least 1"));
        }
        let mut endpoint = Endpoint::new(address)
            .with_hbone_port(self.hbone_port)
            .with_weight(self.weight)
            .with_health(match self.health {
                HealthRecord::Healthy => Health::Healthy,
                HealthRecord::Unhealthy => Health::Unhealthy,
                HealthRecord::Draining => Health::Draining,
            });
        if let Some(id) = &self.identity {
            endpoint = endpoint.with_identity(parse_id(id, "identity")?);
        }
        if !self.locality.is_empty() {
            let locality: Locality = self
                .locality
                .parse()
                .map_err(|e: mesh_core::model::LocalityError| field("locality", e.to_string()))?;
            endpoint = endpoint.with_locality(locality);
        }
        endpoint.labels = self.labels;
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServiceName {
        ServiceName::new(s).unwrap()
    }

    #[test]
    fn keys_round_trip() {
        let keys = Keys::new("/mesh/");
        assert_eq!(keys.root(), "/mesh/");
        let host = name("Reviews.Shop");
        let addr: SocketAddr = "[fd00::1]:8080".parse().unwrap();
        assert_eq!(keys.service(&host), "/mesh/services/reviews.shop");
        assert_eq!(
            keys.endpoint(&host, addr),
            "/mesh/endpoints/reviews.shop/[fd00::1]:8080"
        );
        assert_eq!(
            keys.parse(&keys.service(&host)).unwrap(),
            KeyKind::Service(host.clone())
        );
        assert_eq!(
            keys.parse(&keys.endpoint(&host, addr)).unwrap(),
            KeyKind::Endpoint(host, addr)
        );
        for bad in [
            "/mesh/other/x",
            "/mesh/services/a/b",
            "/mesh/services/bad_name",
            "/mesh/endpoints/a.b",
            "/mesh/endpoints/a.b/nope",
            "/elsewhere/services/a",
        ] {
            assert!(
                matches!(keys.parse(bad), Err(RecordError::Key { .. })),
                "{bad}"
            );
        }
        assert_eq!(Keys::new("").root(), "/");
    }

    #[test]
    fn model_round_trips_through_json() {
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/reviews".parse().unwrap();
        let service = Service::new(name("reviews.shop"))
            .with_port(Port::new(9080, Protocol::Http).with_name("http"))
            .with_port(Port::new(9090, Protocol::Grpc))
            .with_expected_identity(id.clone());
        let json = serde_json::to_vec(&ServiceRecord::from_service(&service).unwrap()).unwrap();
        let back = ServiceRecord::decode(&json)
            .unwrap()
            .into_service(name("reviews.shop"))
            .unwrap();
        assert_eq!(back, service);

        let endpoint = Endpoint::new("10.0.0.7:8080".parse().unwrap())
            .with_hbone_port(15009)
            .with_identity(id)
            .with_weight(3)
            .with_locality(Locality::new("r", "z", ""))
            .with_health(Health::Draining)
            .with_label("version", "v2");
        let json = serde_json::to_vec(&EndpointRecord::from_endpoint(&endpoint)).unwrap();
        let back = EndpointRecord::decode(&json)
            .unwrap()
            .into_endpoint(endpoint.address)
            .unwrap();
        assert_eq!(back, endpoint);
    }

    #[test]
    fn minimal_records_get_defaults_and_unknown_fields_are_ignored() {
        let ep = EndpointRecord::decode(br#"{"address":"10.0.0.1:80","future":true}"#)
            .unwrap()
            .into_endpoint("10.0.0.1:80".parse().unwrap())
            .unwrap();
        assert_eq!(ep, Endpoint::new("10.0.0.1:80".parse().unwrap()));
        let svc = ServiceRecord::decode(b"{}")
            .unwrap()
            .into_service(name("a"))
            .unwrap();
        assert_eq!(svc, Service::new(name("a")));
    }

    #[test]
    fn invalid_values_are_rejected() {
        let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
        for (json, expected) in [
            (r#"{"address":"10.0.0.2:80"}"#, "differs from the key"),
            (r#"{"address":"x"}"#, "not ip:port"),
            (r#"{"address":"10.0.0.1:80","weight":0}"#, "weight"),
            (r#"{"address":"10.0.0.1:80","identity":"nope"}"#, "identity"),
            (
                r#"{"address":"10.0.0.1:80","locality":"a/b/c/d"}"#,
                "locality",
            ),
            (
                r#"{"address":"10.0.0.1:80","health":"sick"}"#,
                "endpoint record",
            ),
            ("not json", "endpoint record"),
        ] {
            let err = EndpointRecord::decode(json.as_bytes())
                .and_then(|r| r.into_endpoint(addr))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
        for (json, expected) in [
            (r#"{"ports":[{"port":0}]}"#, "port 0"),
            (r#"{"ports":[{"port":1},{"port":1}]}"#, "twice"),
            (r#"{"identities":["x"]}"#, "identities"),
            (
                r#"{"ports":[{"port":1,"protocol":"udp"}]}"#,
                "service record",
            ),
        ] {
            let err = ServiceRecord::decode(json.as_bytes())
                .and_then(|r| r.into_service(name("a")))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }
}

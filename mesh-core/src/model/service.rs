use super::ServiceName;
use crate::SpiffeId;

/// The protocol a service port speaks, which decides how the client layers treat it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// Opaque bytes: balanced per connection.
    #[default]
    Tcp,
    /// HTTP/1.1: balanced per request.
    Http,
    /// HTTP/2 (with prior knowledge): balanced per request.
    Http2,
    /// gRPC over HTTP/2: balanced per request; status comes from `grpc-status`.
    Grpc,
}

/// A port a service exposes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Port {
    /// The port number clients dial.
    pub number: u16,
    /// The port's name (`http-web`), if it has one.
    pub name: Option<String>,
    /// What it speaks.
    pub protocol: Protocol,
}

impl Port {
    /// An unnamed port.
    pub fn new(number: u16, protocol: Protocol) -> Self {
        Self {
            number,
            name: None,
            protocol,
        }
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Something a client can call by name: a hostname, its ports, and who may answer.
///
/// `expected_identities` is the server pin: the SPIFFE IDs any endpoint of this service may
/// present. `mesh-client` hands it to mesh-tls's expected-identity check; an empty list means
/// "use the endpoint's own identity, or the trust-domain policy" rather than "anyone".
///
/// ```
/// use mesh_core::model::{Port, Protocol, Service};
/// let svc = Service::new("reviews.shop.svc.cluster.local".parse()?)
///     .with_port(Port::new(9080, Protocol::Http).with_name("http"));
/// assert_eq!(svc.port(9080).map(|p| p.protocol), Some(Protocol::Http));
/// # Ok::<(), mesh_core::model::ServiceNameError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The service's hostname.
    pub hostname: ServiceName,
    /// The ports it exposes.
    pub ports: Vec<Port>,
    /// The SPIFFE IDs its endpoints may present.
    pub expected_identities: Vec<SpiffeId>,
}

impl Service {
    /// A service with no ports and no expected identities yet.
    pub fn new(hostname: ServiceName) -> Self {
        Self {
            hostname,
            ports: Vec::new(),
            expected_identities: Vec::new(),
        }
    }

    /// Adds a port.
    pub fn with_port(mut self, port: Port) -> Self {
        self.ports.push(port);
        self
    }

    /// Adds an identity its endpoints may present.
    pub fn with_expected_identity(mut self, identity: SpiffeId) -> Self {
        self.expected_identities.push(identity);
        self
    }

    /// The port with this number, if the service exposes it.
    pub fn port(&self, number: u16) -> Option<&Port> {
        self.ports.iter().find(|p| p.number == number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_lookup() {
        let id: SpiffeId = "spiffe://td/ns/shop/sa/reviews".parse().unwrap();
        let svc = Service::new(ServiceName::new("reviews").unwrap())
            .with_port(Port::new(80, Protocol::Http))
            .with_port(Port::new(9090, Protocol::Grpc).with_name("grpc"))
            .with_expected_identity(id.clone());
        assert_eq!(svc.port(9090).and_then(|p| p.name.as_deref()), Some("grpc"));
        assert!(svc.port(81).is_none());
        assert_eq!(svc.expected_identities, vec![id]);
    }
}

//! HBONE endpoints for the data-path benchmarks: an [`HboneServer`] that runs the benchmark
//! [`Service`]s inside tunnels, and the clients that reach it.
//!
//! The server delivers tunnels in-process ([`Delivery::Handler`]): the CONNECT target port picks
//! the service ([`Service::port`]) and the tunnel's [`H2Stream`](mesh_client::hbone::H2Stream)
//! is served directly, so a tunnel benchmark and its TCP/TLS baselines run the very same service
//! code. [`HboneBench::start_forwarding`] instead forwards each tunnel to a TCP listener, as
//! ztunnel does for its pods; that adds one loopback TCP hop and the forwarder's copy.
//!
//! Both ends use the default settings (ztunnel's windows, frame size and stream limits, see
//! `mesh_client::hbone::settings`) and the certificates of [`BenchPki`].

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use mesh_client::hbone::{
    Delivery, Destination, ForwardTo, HboneClient, HboneClientConfig, HboneServer,
    HboneServerConfig, InboundTunnel,
};
use mesh_tls::{ExpectedIdentities, MeshTls};

use crate::{
    BoxError,
    pki::{BenchPki, LOOPBACK},
    services::{Listener, Service, serve_tcp},
};

/// The [`Delivery`] that serves each tunnel's [`Service`] in-process, on a task of its own.
/// Tunnels to other ports are dropped (the client sees a reset).
pub fn service_handler() -> Delivery {
    Delivery::Handler(Arc::new(|tunnel: InboundTunnel| {
        if let Some(service) = Service::from_port(tunnel.target.port()) {
            tokio::spawn(service.serve(tunnel.stream));
        }
    }))
}

/// An HBONE server on `127.0.0.1` and a pooled client for it.
pub struct HboneBench {
    /// The server.
    pub server: HboneServer,
    /// A client sharing one pool (so its tunnels reuse one warm connection).
    pub client: HboneClient,
    /// The server's identity, pinned by every client.
    pub expected: ExpectedIdentities,
    /// The TCP services a forwarding server sends tunnels to (empty for the in-process handler).
    _targets: Vec<Listener>,
}

impl HboneBench {
    /// A server delivering tunnels to [`service_handler`]. Call inside a tokio runtime.
    pub async fn start(pki: &BenchPki) -> Result<Self, BoxError> {
        Self::with_delivery(pki, service_handler(), Vec::new()).await
    }

    /// A server forwarding each tunnel over loopback TCP to a listener running its service.
    pub async fn start_forwarding(pki: &BenchPki) -> Result<Self, BoxError> {
        let mut targets = Vec::new();
        let mut by_port = HashMap::new();
        for service in [Service::Echo, Service::Sink] {
            let listener = serve_tcp(service).await?;
            by_port.insert(service.port(), listener.addr());
            targets.push(listener);
        }
        Self::with_delivery(pki, Delivery::Forward(ForwardTo::ByPort(by_port)), targets).await
    }

    async fn with_delivery(
        pki: &BenchPki,
        delivery: Delivery,
        targets: Vec<Listener>,
    ) -> Result<Self, BoxError> {
        let mut config = HboneServerConfig::default();
        config.listen = SocketAddr::new(LOOPBACK, 0);
        let server = HboneServer::bind(pki.mesh_server()?, config, delivery).await?;
        Ok(Self {
            server,
            client: HboneClient::new(pki.mesh_client()?, HboneClientConfig::default()),
            expected: ExpectedIdentities::one(pki.server_id.clone()),
            _targets: targets,
        })
    }

    /// Where a tunnel to `service` goes.
    pub fn dest(&self, service: Service) -> Destination {
        Destination {
            hbone_addr: self.server.local_addr(),
            target_port: service.port(),
            expected: self.expected.clone(),
        }
    }

    /// A new client with a new [`MeshTls`] (same credentials and options, its client config for
    /// this server already built): an empty pool and an empty session cache, so its first tunnel
    /// costs a new connection with a full handshake. Call inside a tokio runtime.
    pub fn fresh_client(&self) -> Result<HboneClient, BoxError> {
        let tls = self.client.tls();
        let tls = MeshTls::new(tls.credentials().clone(), tls.options().clone())?;
        tls.client_config(&self.expected)?;
        Ok(HboneClient::new(tls, HboneClientConfig::default()))
    }

    /// A new client sharing this one's [`MeshTls`] (and so its session cache): an empty pool,
    /// so its first tunnel costs a new connection, with a resumed handshake once the shared
    /// cache holds a ticket for the server.
    pub fn client_sharing_tls(&self) -> HboneClient {
        HboneClient::new(self.client.tls().clone(), HboneClientConfig::default())
    }
}

//! Fixtures for HBONE tests: dev-CA identities, servers and TCP targets on loopback.
#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use mesh_client::hbone::{
    Delivery, Destination, ForwardTo, HboneClient, HboneClientConfig, HboneServer,
    HboneServerConfig,
};
use mesh_core::SpiffeId;
use mesh_tls::{DevCa, ExpectedIdentities, MeshTls, TlsOptions};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// Every network step is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);
pub const SERVER_ID: &str = "spiffe://example.org/ns/shop/sa/inventory";
pub const CLIENT_ID: &str = "spiffe://example.org/ns/shop/sa/orders";

pub fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

pub struct Mesh {
    pub ca: Arc<DevCa>,
}

impl Mesh {
    pub fn new() -> Self {
        Self {
            ca: Arc::new(DevCa::generate("example.org".parse().unwrap()).unwrap()),
        }
    }

    pub fn tls(&self, spiffe_id: &str) -> MeshTls {
        let creds = self
            .ca
            .credentials(&id(spiffe_id), Duration::from_secs(3600))
            .unwrap();
        MeshTls::new(creds, TlsOptions::default()).unwrap()
    }

    pub fn client(&self) -> HboneClient {
        HboneClient::new(self.tls(CLIENT_ID), HboneClientConfig::default())
    }

    pub fn client_with(&self, config: HboneClientConfig) -> HboneClient {
        HboneClient::new(self.tls(CLIENT_ID), config)
    }

    pub async fn server(&self, delivery: Delivery) -> HboneServer {
        self.server_with(HboneServerConfig::default(), delivery)
            .await
    }

    pub async fn server_with(
        &self,
        mut config: HboneServerConfig,
        delivery: Delivery,
    ) -> HboneServer {
        config.listen = "127.0.0.1:0".parse().unwrap();
        HboneServer::bind(self.tls(SERVER_ID), config, delivery)
            .await
            .unwrap()
    }

    /// A server forwarding every tunnel to `target`.
    pub async fn forwarding_to(&self, target: SocketAddr) -> HboneServer {
        self.server(Delivery::Forward(ForwardTo::Fixed(target)))
            .await
    }
}

/// The destination for a test server, expecting the server's identity.
pub fn dest(server: &HboneServer, target_port: u16) -> Destination {
    Destination {
        hbone_addr: server.local_addr(),
        target_port,
        expected: ExpectedIdentities::one(id(SERVER_ID)),
    }
}

/// A TCP echo server; it stops when dropped with the runtime.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Writes `data`, half-closes, reads everything back (bounded by STEP).
pub async fn round_trip<S>(stream: &mut S, data: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(STEP, async {
        let (mut r, mut w) = tokio::io::split(stream);
        let write = async {
            w.write_all(data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let read = async {
            let mut out = Vec::new();
            r.read_to_end(&mut out).await.unwrap();
            out
        };
        let ((), out) = tokio::join!(write, read);
        out
    })
    .await
    .expect("round trip timed out")
}

/// A cheap checksum for large transfers (FNV-1a 64).
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

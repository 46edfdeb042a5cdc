//! `new_connection`: a new HBONE connection + first byte vs a new plain TLS connection.

#[allow(clippy::wildcard_imports)]
use super::*;

// --- new_connection ----------------------------------------------------------------------------

/// A new HBONE client (built untimed), its first tunnel (a new connection), a one-byte echo.
struct NewHboneConnection<'a> {
    bench: &'a HboneBench,
    dest: Destination,
    /// Full handshakes (a new TLS endpoint per client) or resumed (the shared one).
    full: bool,
    next: Option<HboneClient>,
}

impl Op for NewHboneConnection<'_> {
    fn warm(&mut self) -> OpFuture<'_> {
        Box::pin(async {
            if !self.full {
                // Another benchmark's full handshakes may have evicted our tickets from the
                // server's session cache (256 entries): one untimed connection brings new ones.
                let client = self.bench.client_sharing_tls();
                one_byte(&mut check(client.connect(&self.dest).await, "tunnel")).await;
            }
        })
    }

    fn prepare(&mut self) {
        self.next = Some(if self.full {
            check(self.bench.fresh_client(), "fresh client")
        } else {
            self.bench.client_sharing_tls()
        });
    }

    fn run(&mut self) -> OpFuture<'_> {
        Box::pin(async {
            let client = self.next.take().expect("prepared");
            let mut tunnel = check(client.connect(&self.dest).await, "tunnel");
            one_byte(&mut tunnel).await;
        })
    }
}

/// A new plain rustls connection and a one-byte echo; a full handshake from a config with a new
/// session store (built untimed), or a resumed one from the shared config.
struct NewTlsConnection {
    config: Arc<ClientConfig>,
    addr: std::net::SocketAddr,
    full: bool,
    next: Option<Arc<ClientConfig>>,
}

impl Op for NewTlsConnection {
    fn warm(&mut self) -> OpFuture<'_> {
        Box::pin(async {
            if !self.full {
                // As for HBONE: fresh tickets the server still holds.
                let stream = tls_connect(self.config.clone(), self.addr).await;
                one_byte(&mut check(stream, "TLS connection")).await;
            }
        })
    }

    fn prepare(&mut self) {
        self.next = Some(if self.full {
            let mut config = ClientConfig::clone(&self.config);
            config.resumption = Resumption::default();
            Arc::new(config)
        } else {
            self.config.clone()
        });
    }

    fn run(&mut self) -> OpFuture<'_> {
        Box::pin(async {
            let config = self.next.take().expect("prepared");
            let mut stream = check(tls_connect(config, self.addr).await, "TLS connection");
            one_byte(&mut stream).await;
            let expected = if self.full {
                HandshakeKind::Full
            } else {
                HandshakeKind::Resumed
            };
            assert_eq!(stream.get_ref().1.handshake_kind(), Some(expected));
        })
    }
}

/// Before measuring: a new pool sharing the client's `MeshTls` resumes its TLS session with the
/// HBONE server. (The pool does not expose handshake kinds, so this dials with the same `MeshTls`
/// directly; the server then waits in vain for the HTTP/2 preface, which is harmless.)
async fn check_mesh_resumption(hbone: &HboneBench) {
    let dest = hbone.dest(Service::Echo);
    let client = hbone.client_sharing_tls();
    one_byte(&mut check(client.connect(&dest).await, "tunnel")).await;
    let tcp = check(tcp_connect(dest.hbone_addr).await, "TCP connect");
    let tls = hbone.client.tls();
    let (stream, _) = check(
        tls.connect(tcp, dest.hbone_addr.ip(), &hbone.expected)
            .await,
        "mesh TLS",
    );
    assert_eq!(
        stream.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Resumed),
        "a pool sharing the MeshTls must resume its session with the HBONE server"
    );
}

pub(crate) fn new_connection(c: &mut Criterion) {
    let rt = runtime();
    let pki = BenchPki::generate().expect("benchmark PKI");
    let tls_config = pki.plain_client_config().expect("TLS client config");
    let (hbone, tls_echo) = rt.block_on(async {
        let hbone = HboneBench::start(&pki).await.expect("HBONE server");
        let tls_acceptor = pki.plain_server_config().expect("TLS config").into();
        let tls_echo = serve_tls(tls_acceptor, Service::Echo)
            .await
            .expect("TLS echo");
        check_mesh_resumption(&hbone).await;
        (hbone, tls_echo)
    });
    let hbone_op = |full| NewHboneConnection {
        bench: &hbone,
        dest: hbone.dest(Service::Echo),
        full,
        next: None,
    };
    let tls_op = |full| NewTlsConnection {
        config: tls_config.clone(),
        addr: tls_echo.addr(),
        full,
        next: None,
    };
    let mut benches = vec![
        Bench::new("hbone_full", hbone_op(true)),
        Bench::new("tls_full", tls_op(true)),
        Bench::new("hbone_resumed", hbone_op(false)),
        Bench::new("tls_resumed", tls_op(false)),
    ];
    run_group(
        c,
        &rt,
        "new_connection",
        |group| {
            group.throughput(Throughput::Elements(1));
        },
        &mut benches,
        (rounds(100, 20), 10),
    );
    latency_table(
        "new_connection: connect + handshake (+ HTTP/2 + CONNECT) + one-byte echo",
        &mut benches,
        &["tls_full", "tls_resumed"],
    );
}

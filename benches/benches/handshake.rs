//! Mutual-TLS handshake cost: the mesh against plain rustls, full and resumed.
//!
//! All four benchmarks are in the group `handshake`, so their times read as ratios:
//!
//! - `mesh/full`, `mesh/resumed`: [`mesh_tls::MeshTls`] on both sides (SPIFFE verification,
//!   identity pinning, peer-ID extraction, handshake timeout).
//! - `plain_rustls/full`, `plain_rustls/resumed`: rustls with WebPKI verification, the same keys,
//!   certificates and crypto parameters.
//!
//! One iteration: TCP connect over loopback, handshake, one byte echoed. Client and server run on
//! one current-thread tokio runtime, so the time is the sum of both sides' work plus the loopback
//! round trips. See `benches/README.md`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh_benches::{
    handshake::{ClientTls, EchoServer},
    pki::{BenchPki, Stack},
};
use rustls::HandshakeKind;
use tokio::runtime::Runtime;

fn handshakes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pki = BenchPki::generate().expect("benchmark PKI");
    let stacks = [Stack::Mesh, Stack::PlainRustls];
    let endpoints: Vec<(Stack, EchoServer, ClientTls)> = stacks
        .into_iter()
        .map(|stack| {
            let server = rt
                .block_on(EchoServer::start(pki.server(stack).expect("server TLS")))
                .expect("echo server");
            let client = pki.client(stack).expect("client TLS");
            (stack, server, client)
        })
        .collect();

    let mut group = c.benchmark_group("handshake");
    // Comparable pairs run back to back, so drifting background load hits both alike.
    for (stack, server, client) in &endpoints {
        check_full(&rt, server, client, *stack);
        group.bench_function(BenchmarkId::new(stack.name(), "full"), |b| {
            b.iter_custom(|iters| rt.block_on(full(server, client, iters)))
        });
    }
    for (stack, server, client) in &endpoints {
        check_resumed(&rt, server, client, *stack);
        group.bench_function(BenchmarkId::new(stack.name(), "resumed"), |b| {
            b.iter_custom(|iters| rt.block_on(resumed(server, client, iters)))
        });
    }
    group.finish();

    for (stack, server, _) in &endpoints {
        assert_eq!(
            server.stats().failed(),
            0,
            "{}: the server saw failed connections",
            stack.name()
        );
    }
}

/// `iters` full handshakes, each from a client with an empty session cache (built untimed).
async fn full(server: &EchoServer, client: &ClientTls, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let fresh = client.fresh().expect("fresh client");
        let start = Instant::now();
        let kind = fresh.handshake(server.addr()).await.expect("handshake");
        total += start.elapsed();
        assert_eq!(kind, HandshakeKind::Full);
    }
    total
}

/// `iters` resumed handshakes from one client, each using a ticket from the one before.
async fn resumed(server: &EchoServer, client: &ClientTls, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let kind = client.handshake(server.addr()).await.expect("handshake");
        total += start.elapsed();
        assert_eq!(kind, HandshakeKind::Resumed, "resumption stopped working");
    }
    total
}

/// Before measuring: a fresh client's handshake is full on both sides.
fn check_full(rt: &Runtime, server: &EchoServer, client: &ClientTls, stack: Stack) {
    let fresh = client.fresh().expect("fresh client");
    let before = server.stats().full();
    let kind = rt
        .block_on(fresh.handshake(server.addr()))
        .expect("handshake");
    assert_eq!(kind, HandshakeKind::Full, "{}: client", stack.name());
    assert_eq!(
        server.stats().full(),
        before + 1,
        "{}: server",
        stack.name()
    );
}

/// Before measuring: after one handshake, the next one resumes, as both sides see it.
fn check_resumed(rt: &Runtime, server: &EchoServer, client: &ClientTls, stack: Stack) {
    rt.block_on(client.handshake(server.addr()))
        .expect("priming handshake");
    let before = server.stats().resumed();
    let kind = rt
        .block_on(client.handshake(server.addr()))
        .expect("handshake");
    assert_eq!(
        kind,
        HandshakeKind::Resumed,
        "{}: the client did not resume",
        stack.name()
    );
    assert_eq!(
        server.stats().resumed(),
        before + 1,
        "{}: the server did not resume",
        stack.name()
    );
}

criterion_group!(benches, handshakes);
criterion_main!(benches);

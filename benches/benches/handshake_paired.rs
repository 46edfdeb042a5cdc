//! Interleaved A/B comparison of the `handshake` benchmarks, for a ratio that holds up on a busy
//! machine.
//!
//! Criterion measures one benchmark after the other, so load that comes and goes (a parallel
//! build on a 2-core machine) lands on one side of a ratio and not the other. Here the mesh and
//! plain rustls alternate handshake by handshake (in alternating order), and each side reports
//! percentiles of the individual handshake times; preempted handshakes fall into the tail, and
//! the ratio of the medians compares like with like.
//!
//! `cargo bench --bench handshake_paired` (`HANDSHAKES=N` sets the handshakes per stack and mode,
//! default 2000). Without `--bench` (as under `cargo test --benches`) it runs a few handshakes as
//! a smoke test. Same setup as the `handshake` benchmark; see `benches/README.md`.

use std::time::{Duration, Instant};

use mesh_benches::{
    handshake::{ClientTls, EchoServer},
    pki::{BenchPki, Stack},
};
use rustls::HandshakeKind;

/// The goal: mesh time at most this multiple of plain-rustls time (mesh >= 0.9x the rate).
const GOAL: f64 = 1.11;

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = match std::env::var("HANDSHAKES") {
        Ok(v) => v.parse().expect("HANDSHAKES must be a number"),
        Err(_) if benching => 2000,
        Err(_) => 3,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pki = BenchPki::generate().expect("benchmark PKI");
    let stacks = [Stack::Mesh, Stack::PlainRustls];
    let endpoints: Vec<(EchoServer, ClientTls)> = stacks
        .iter()
        .map(|&stack| {
            let server = rt
                .block_on(EchoServer::start(pki.server(stack).expect("server TLS")))
                .expect("echo server");
            (server, pki.client(stack).expect("client TLS"))
        })
        .collect();

    println!("{n} handshakes per stack and mode, interleaved; microseconds per handshake");
    println!(
        "{:<8} {:<13} {:>8} {:>8} {:>8}",
        "mode", "stack", "p10", "median", "p90"
    );
    for kind in [HandshakeKind::Full, HandshakeKind::Resumed] {
        let mut times: [Vec<Duration>; 2] = [Vec::with_capacity(n), Vec::with_capacity(n)];
        if kind == HandshakeKind::Resumed {
            for (server, client) in &endpoints {
                rt.block_on(client.handshake(server.addr()))
                    .expect("priming handshake");
            }
        }
        for i in 0..n {
            // Alternate which stack goes first, so neither always follows the other.
            for j in 0..2 {
                let side = (i + j) % 2;
                let (server, client) = &endpoints[side];
                let fresh;
                let client = if kind == HandshakeKind::Full {
                    fresh = client.fresh().expect("fresh client");
                    &fresh
                } else {
                    client
                };
                let start = Instant::now();
                let got = rt
                    .block_on(client.handshake(server.addr()))
                    .expect("handshake");
                times[side].push(start.elapsed());
                assert_eq!(
                    got,
                    kind,
                    "{}: unexpected handshake kind",
                    stacks[side].name()
                );
            }
        }
        let mode = if kind == HandshakeKind::Full {
            "full"
        } else {
            "resumed"
        };
        let mut medians = [0.0; 2];
        for (side, stack) in stacks.iter().enumerate() {
            times[side].sort_unstable();
            let p = |q: f64| {
                let t = times[side][((times[side].len() - 1) as f64 * q).round() as usize];
                t.as_secs_f64() * 1e6
            };
            medians[side] = p(0.5);
            println!(
                "{mode:<8} {:<13} {:>8.1} {:>8.1} {:>8.1}",
                stack.name(),
                p(0.1),
                p(0.5),
                p(0.9)
            );
        }
        let ratio = medians[0] / medians[1];
        let verdict = if !benching {
            "smoke test, not a measurement"
        } else if ratio <= GOAL {
            "ok"
        } else {
            "OVER GOAL"
        };
        println!(
            "{mode:<8} mesh / plain_rustls (medians): {ratio:.3}  ({verdict}; goal <= {GOAL})"
        );
    }
    for (stack, (server, _)) in stacks.iter().zip(&endpoints) {
        assert_eq!(
            server.stats().failed(),
            0,
            "{}: the server saw failed connections",
            stack.name()
        );
    }
}

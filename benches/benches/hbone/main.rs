//! The HBONE data path against its baselines: bulk throughput, echo latency, opening tunnels and
//! opening connections.
//!
//! Four groups; each holds the HBONE benchmarks *and* their baselines, so results read as ratios:
//!
//! - `throughput`: 64 MiB one way through one warm tunnel (`hbone`), through a tunnel whose
//!   server forwards to a loopback TCP target (`hbone_forward`), over plain rustls (`tls`) and
//!   over plain TCP (`tcp`), each timed until the receiver acknowledges the last byte.
//! - `echo_rtt`: a 64-byte echo on a warm tunnel, plain TCP, plain rustls, an open cleartext
//!   `h2` stream (`h2c_stream`, the like-for-like baseline) and a hyper h2c POST (`h2c_hyper`).
//! - `new_stream`: a new tunnel on a warm pooled connection plus a one-byte echo, against a new
//!   h2c stream on a warm connection and a new TCP connection.
//! - `new_connection`: a new HBONE connection (fresh client; full or resumed TLS handshake) plus
//!   a one-byte echo, against a new plain rustls connection plus a one-byte echo.
//!
//! After Criterion has measured a group, the same operations run again interleaved (short blocks
//! of each in turn, see `mesh_benches::ops`), and a table prints percentiles of those individual
//! times and the ratios (or, for latency, the added microseconds) against the baselines. See
//! `benches/README.md`. Client and server share one current-thread tokio runtime
//! (`HBONE_BENCH_WORKERS=N` runs them on a multi-thread runtime of N workers instead).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mesh_benches::{
    h2c::{H2cConnection, H2cStream, HyperH2cClient, serve_hyper_echo, serve_stream_echo},
    hbone::HboneBench,
    ops::{Bench, BoxIo, Op, OpFuture, check, interleave, rounds},
    pki::BenchPki,
    services::{Service, echo_once, serve_tcp, serve_tls, tcp_connect, tls_connect, transfer},
    stats::{Samples, micros},
};
use mesh_client::hbone::{Destination, HboneClient};
use rustls::{ClientConfig, HandshakeKind, client::Resumption};
use tokio::runtime::Runtime;

/// Bytes per `throughput` iteration (1 MiB in a smoke test without `--bench`).
fn transfer_size() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        64 * 1024 * 1024
    } else {
        1024 * 1024
    }
}
/// Default size of each write of the sender (`HBONE_BENCH_WRITE=<bytes>` changes it).
const DEFAULT_WRITE: usize = 64 * 1024;
/// Bytes per `echo_rtt` round trip.
const ECHO_SIZE: usize = 64;
/// The byte the connection and stream benchmarks echo.
const PING: u8 = 0x2a;

/// The throughput goal: tunnel at least this fraction of raw TLS.
const THROUGHPUT_GOAL: f64 = 0.85;
/// The latency goal: the tunnel adds at most this many microseconds (p50) over h2c.
const ECHO_GOAL_US: f64 = 10.0;

fn runtime() -> Runtime {
    let workers: usize = std::env::var("HBONE_BENCH_WORKERS")
        .ok()
        .map(|v| v.parse().expect("HBONE_BENCH_WORKERS must be a number"))
        .unwrap_or(0);
    let mut builder = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().build().expect("tokio runtime")
}

fn write_size() -> usize {
    std::env::var("HBONE_BENCH_WRITE")
        .ok()
        .map(|v| {
            v.parse()
                .expect("HBONE_BENCH_WRITE must be a number of bytes")
        })
        .unwrap_or(DEFAULT_WRITE)
}

/// Benchmarks every [`Bench`] of `benches` under Criterion in group `name`, then runs those
/// that ran interleaved: `rounds` rounds of `block` runs of each.
fn run_group(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    configure: impl FnOnce(&mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>),
    benches: &mut [Bench<'_>],
    (rounds, block): (usize, usize),
) {
    let mut group = c.benchmark_group(name);
    configure(&mut group);
    for bench in benches.iter_mut() {
        group.bench_function(bench.name, |b| {
            b.iter_custom(|iters| rt.block_on(bench.time(iters)))
        });
    }
    group.finish();
    rt.block_on(interleave(benches, rounds, block));
}

fn find<'b>(benches: &'b mut [Bench<'_>], name: &str) -> Option<&'b mut Samples> {
    benches
        .iter_mut()
        .find(|b| b.name == name && !b.samples.is_empty())
        .map(|b| &mut b.samples)
}

fn p50_us(benches: &mut [Bench<'_>], name: &str) -> Option<f64> {
    find(benches, name)?.percentile(50.0).map(micros)
}

/// Prints p10/p50/p90/p99 of every benchmark with interleaved samples, and each one's p50 minus
/// (and divided by) the p50 of each baseline in `bases`.
fn latency_table(title: &str, benches: &mut [Bench<'_>], bases: &[&str]) {
    let base_p50: Vec<(&str, f64)> = bases
        .iter()
        .filter_map(|&b| Some((b, p50_us(benches, b)?)))
        .collect();
    if benches.iter().all(|b| b.samples.is_empty()) {
        return;
    }
    println!("\n{title}; interleaved runs, microseconds per operation");
    print!(
        "{:<16} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "benchmark", "n", "p10", "p50", "p90", "p99"
    );
    for (b, _) in &base_p50 {
        print!("  {:>20}", format!("p50 vs {b}"));
    }
    println!();
    for bench in benches.iter_mut().filter(|b| !b.samples.is_empty()) {
        let s = &mut bench.samples;
        let mut p = |q| micros(s.percentile(q).expect("samples"));
        let (p10, p50, p90, p99) = (p(10.0), p(50.0), p(90.0), p(99.0));
        print!(
            "{:<16} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            bench.name,
            bench.samples.len(),
            p10,
            p50,
            p90,
            p99
        );
        for (_, base) in &base_p50 {
            print!(
                "  {:>20}",
                format!("{:+.1} us {:.2}x", p50 - base, p50 / base)
            );
        }
        println!();
    }
}

// --- throughput --------------------------------------------------------------------------------

/// Sends `size` bytes to the sink in writes of `chunk.len()` and waits for its ack.
struct Transfer {
    stream: BoxIo,
    chunk: Arc<[u8]>,
    size: u64,
}

impl Op for Transfer {
    fn run(&mut self) -> OpFuture<'_> {
        Box::pin(async {
            check(
                transfer(&mut self.stream, &self.chunk, self.size).await,
                "transfer",
            )
        })
    }
}

fn throughput(c: &mut Criterion) {
    let rt = runtime();
    let pki = BenchPki::generate().expect("benchmark PKI");
    let chunk: Arc<[u8]> = vec![0x5a_u8; write_size()].into();
    let size = transfer_size();
    let tls_config = pki.plain_client_config().expect("TLS client config");
    // The servers must outlive the benchmarks.
    let (_hbone, _hbone_fwd, _tcp_sink, _tls_sink, mut benches) = rt.block_on(async {
        let hbone = HboneBench::start(&pki).await.expect("HBONE server");
        let hbone_fwd = HboneBench::start_forwarding(&pki)
            .await
            .expect("forwarding HBONE server");
        let tcp_sink = serve_tcp(Service::Sink).await.expect("TCP sink");
        let tls_acceptor = pki.plain_server_config().expect("TLS config").into();
        let tls_sink = serve_tls(tls_acceptor, Service::Sink)
            .await
            .expect("TLS sink");
        // One tunnel (or connection) per benchmark, opened and warmed up once: every iteration
        // runs with the windows as wide as they get.
        let tunnel = hbone.client.connect(&hbone.dest(Service::Sink)).await;
        let fwd_tunnel = hbone_fwd
            .client
            .connect(&hbone_fwd.dest(Service::Sink))
            .await;
        let tls = tls_connect(tls_config, tls_sink.addr())
            .await
            .expect("TLS connection");
        assert_eq!(
            tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
            "the TLS baseline must use the mesh's cipher suite"
        );
        let tcp = tcp_connect(tcp_sink.addr()).await.expect("TCP connection");
        let streams: [(&'static str, BoxIo); 4] = [
            ("hbone", Box::new(tunnel.expect("tunnel"))),
            ("hbone_forward", Box::new(fwd_tunnel.expect("tunnel"))),
            ("tls", Box::new(tls)),
            ("tcp", Box::new(tcp)),
        ];
        let mut benches = Vec::new();
        for (name, stream) in streams {
            let mut op = Transfer {
                stream,
                chunk: chunk.clone(),
                size,
            };
            op.run().await; // warm-up
            benches.push(Bench::new(name, op));
        }
        (hbone, hbone_fwd, tcp_sink, tls_sink, benches)
    });
    run_group(
        c,
        &rt,
        "throughput",
        |group| {
            group.throughput(Throughput::Bytes(size));
            // One iteration moves 64 MiB (tens of milliseconds): ten samples are plenty.
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(8));
        },
        &mut benches,
        (rounds(20, 8), 1),
    );
    if benches.iter().all(|b| b.samples.is_empty()) {
        return;
    }

    println!(
        "\nthroughput: {} MiB per transfer in {} KiB writes; interleaved transfers, median",
        size >> 20,
        chunk.len() / 1024
    );
    println!(
        "{:<14} {:>4} {:>10} {:>10} {:>8} {:>8}",
        "benchmark", "n", "median ms", "MiB/s", "/ tls", "/ tcp"
    );
    let mut rate = |name| {
        let median = find(&mut benches, name)?.percentile(50.0)?;
        Some(size as f64 / 1048576.0 / median.as_secs_f64())
    };
    let (tls_rate, tcp_rate, tunnel_rate) = (rate("tls"), rate("tcp"), rate("hbone"));
    for bench in benches.iter_mut().filter(|b| !b.samples.is_empty()) {
        let median = bench.samples.percentile(50.0).expect("samples");
        let mibs = size as f64 / 1048576.0 / median.as_secs_f64();
        let ratio = |base: Option<f64>| base.map_or("-".to_owned(), |b| format!("{:.3}", mibs / b));
        println!(
            "{:<14} {:>4} {:>10.2} {:>10.0} {:>8} {:>8}",
            bench.name,
            bench.samples.len(),
            median.as_secs_f64() * 1e3,
            mibs,
            ratio(tls_rate),
            ratio(tcp_rate)
        );
    }
    if let (Some(tunnel), Some(tls)) = (tunnel_rate, tls_rate) {
        let ratio = tunnel / tls;
        println!(
            "goal: hbone >= {THROUGHPUT_GOAL}x tls throughput: {ratio:.3}x {}",
            if ratio >= THROUGHPUT_GOAL {
                "(met)"
            } else {
                "(MISSED)"
            }
        );
    }
}

// --- echo_rtt ----------------------------------------------------------------------------------

/// An open channel to an echo service, and the message and reply buffers.
struct Echo {
    channel: Channel,
    message: Bytes,
    reply: Vec<u8>,
}

enum Channel {
    /// A byte stream to [`Service::Echo`].
    Stream(BoxIo),
    /// An open h2c stream.
    H2c(H2cStream),
    /// A hyper client; each echo is a POST.
    Hyper(HyperH2cClient),
}

impl Echo {
    fn new(channel: Channel) -> Self {
        let message: Bytes = (0..ECHO_SIZE as u8).collect();
        Self {
            channel,
            reply: vec![0; message.len()],
            message,
        }
    }
}

impl Op for Echo {
    fn run(&mut self) -> OpFuture<'_> {
        Box::pin(async {
            let Self {
                channel,
                message,
                reply,
            } = self;
            match channel {
                Channel::Stream(s) => check(echo_once(s, message, reply).await, "echo"),
                Channel::H2c(s) => check(s.echo(message, reply).await, "h2c echo"),
                Channel::Hyper(client) => check(client.echo(message).await, "hyper echo"),
            }
        })
    }
}

fn echo_rtt(c: &mut Criterion) {
    let rt = runtime();
    let pki = BenchPki::generate().expect("benchmark PKI");
    let tls_config = pki.plain_client_config().expect("TLS client config");
    let (_servers, mut benches) = rt.block_on(async {
        let hbone = HboneBench::start(&pki).await.expect("HBONE server");
        let hbone_fwd = HboneBench::start_forwarding(&pki)
            .await
            .expect("forwarding HBONE server");
        let tcp_echo = serve_tcp(Service::Echo).await.expect("TCP echo");
        let tls_acceptor = pki.plain_server_config().expect("TLS config").into();
        let tls_echo = serve_tls(tls_acceptor, Service::Echo)
            .await
            .expect("TLS echo");
        let h2c_echo = serve_stream_echo().await.expect("h2c echo");
        let hyper_echo = serve_hyper_echo().await.expect("hyper echo");
        let connect = "connecting";
        let tunnel = hbone.client.connect(&hbone.dest(Service::Echo)).await;
        let fwd_tunnel = hbone_fwd
            .client
            .connect(&hbone_fwd.dest(Service::Echo))
            .await;
        let h2c = async { H2cConnection::connect(h2c_echo.addr()).await?.open().await };
        let channels = [
            ("hbone", Channel::Stream(Box::new(tunnel.expect(connect)))),
            (
                "hbone_forward",
                Channel::Stream(Box::new(fwd_tunnel.expect(connect))),
            ),
            ("h2c_stream", Channel::H2c(h2c.await.expect(connect))),
            (
                "h2c_hyper",
                Channel::Hyper(
                    HyperH2cClient::connect(hyper_echo.addr())
                        .await
                        .expect(connect),
                ),
            ),
            (
                "tls",
                Channel::Stream(Box::new(
                    tls_connect(tls_config, tls_echo.addr())
                        .await
                        .expect(connect),
                )),
            ),
            (
                "tcp",
                Channel::Stream(Box::new(tcp_connect(tcp_echo.addr()).await.expect(connect))),
            ),
        ];
        let mut benches = Vec::new();
        for (name, channel) in channels {
            let mut op = Echo::new(channel);
            for _ in 0..100 {
                op.run().await; // warm-up
            }
            benches.push(Bench::new(name, op));
        }
        let servers = (hbone, hbone_fwd, tcp_echo, tls_echo, h2c_echo, hyper_echo);
        (servers, benches)
    });
    run_group(
        c,
        &rt,
        "echo_rtt",
        |group| {
            group.throughput(Throughput::Elements(1));
        },
        &mut benches,
        (rounds(200, 50), 100),
    );
    latency_table(
        &format!("echo_rtt: {ECHO_SIZE}-byte echo on a warm channel"),
        &mut benches,
        &["h2c_stream", "h2c_hyper", "tls", "tcp"],
    );
    for base in ["h2c_stream", "h2c_hyper"] {
        if let (Some(tunnel), Some(base_p50)) =
            (p50_us(&mut benches, "hbone"), p50_us(&mut benches, base))
        {
            let added = tunnel - base_p50;
            println!(
                "goal: hbone adds <= {ECHO_GOAL_US} us p50 over {base}: {added:+.1} us {}",
                if added <= ECHO_GOAL_US {
                    "(met)"
                } else {
                    "(MISSED)"
                }
            );
        }
    }
}

// --- new_stream --------------------------------------------------------------------------------

/// Sends one byte and reads it back.
async fn one_byte(stream: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin)) {
    check(echo_once(stream, &[PING], &mut [0]).await, "one-byte echo");
}

/// A new tunnel from a (pooled) client, plus a one-byte echo.
struct NewTunnel {
    client: HboneClient,
    dest: Destination,
}

impl Op for NewTunnel {
    fn run(&mut self) -> OpFuture<'_> {
        Box::pin(async {
            let mut tunnel = check(self.client.connect(&self.dest).await, "tunnel");
            one_byte(&mut tunnel).await;
        })
    }
}

/// A new stream on a warm h2c connection, plus a one-byte echo.
struct NewH2cStream(H2cConnection);

impl Op for NewH2cStream {
    fn run(&mut self) -> OpFuture<'_> {
        Box::pin(async {
            let mut stream = check(self.0.open().await, "h2c stream");
            check(stream.echo(&[PING], &mut [0]).await, "h2c echo");
        })
    }
}

/// A new TCP connection, plus a one-byte echo.
struct NewTcp(std::net::SocketAddr);

impl Op for NewTcp {
    fn run(&mut self) -> OpFuture<'_> {
        Box::pin(async {
            let mut tcp = check(tcp_connect(self.0).await, "TCP connect");
            one_byte(&mut tcp).await;
        })
    }
}

fn new_stream(c: &mut Criterion) {
    let rt = runtime();
    let pki = BenchPki::generate().expect("benchmark PKI");
    let (hbone, _tcp_echo, _h2c_echo, mut benches) = rt.block_on(async {
        let hbone = HboneBench::start(&pki).await.expect("HBONE server");
        let tcp_echo = serve_tcp(Service::Echo).await.expect("TCP echo");
        let h2c_echo = serve_stream_echo().await.expect("h2c echo");
        let h2c = H2cConnection::connect(h2c_echo.addr())
            .await
            .expect("h2c connection");
        let mut tunnels = NewTunnel {
            client: hbone.client.clone(),
            dest: hbone.dest(Service::Echo),
        };
        tunnels.run().await; // opens the pooled connection
        let benches = vec![
            Bench::new("hbone_pooled", tunnels),
            Bench::new("h2c_stream", NewH2cStream(h2c)),
            Bench::new("tcp_connect", NewTcp(tcp_echo.addr())),
        ];
        (hbone, tcp_echo, h2c_echo, benches)
    });
    run_group(
        c,
        &rt,
        "new_stream",
        |group| {
            group.throughput(Throughput::Elements(1));
        },
        &mut benches,
        (rounds(100, 20), 50),
    );
    assert_eq!(
        hbone.client.stats().connections_opened,
        1,
        "every tunnel must reuse the pooled connection"
    );
    latency_table(
        "new_stream: open + one-byte echo",
        &mut benches,
        &["h2c_stream", "tcp_connect"],
    );
}

mod new_connection;
use new_connection::new_connection;

criterion_group!(benches, throughput, echo_rtt, new_stream, new_connection);
criterion_main!(benches);

//! One HTTP/1.1 request through `Mesh::http_client()` (routing, balancing, retry budget,
//! breaker, outlier bookkeeping, per-endpoint keep-alive) against plain hyper sending the same
//! request over an already open mTLS HBONE tunnel to the same server: the cost of the client
//! layer itself. Goal: <= 1.1x.
//!
//! `cargo bench --bench mesh_http -- --quick`; after the Criterion rows an interleaved run
//! (`PAIRED_REQUESTS`, default 3000 rounds) prints the medians and ratios that hold up on a
//! shared machine.

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mesh_client::{
    hbone::Destination,
    http::HttpService,
    mesh::{InboundApp, Mesh},
};
use mesh_tls::ExpectedIdentities;

const SERVER_ID: &str = "spiffe://cluster.local/ns/bench/sa/server";
const HOST: &str = "server.bench.svc.cluster.local";

fn bench(c: &mut Criterion) {
    let rt = bench_runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    let (_server_mesh, server, client, quiet) = rt.block_on(async {
        let server_mesh = Mesh::from_yaml(&format!(
            "identity: {{ spiffe_id: {SERVER_ID}, dev_ca: {{ dir: {} }} }}\ninbound: {{ listen: 127.0.0.1:0 }}",
            ca.display()
        ))
        .await
        .expect("server mesh");
        let app = HttpService::new(tower::service_fn(|_request: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }));
        let server = server_mesh
            .serve(InboundApp::Http(app))
            .await
            .expect("serve");
        let client = client_mesh(&ca, server.local_addr().port(), "").await;
        let quiet = client_mesh(&ca, server.local_addr().port(), "telemetry: { metrics: false }").await;
        (server_mesh, server, client, quiet)
    });

    // Baseline: hyper's HTTP/1.1 connection over one tunnel from the same pool.
    let dest = Destination {
        hbone_addr: server.local_addr(),
        target_port: 8080,
        expected: ExpectedIdentities::one(SERVER_ID.parse().expect("id")),
    };
    let mut sender = rt.block_on(async {
        let stream = client.hbone().connect(&dest).await.expect("tunnel");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        sender
    });

    let baseline = |sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>| {
        let request = Request::get("/")
            .header("host", HOST)
            .body(Empty::<Bytes>::new())
            .expect("request");
        rt.block_on(async {
            // The previous response was read to the end, so the connection is free.
            sender.ready().await.expect("connection");
            let response = sender.send_request(request).await.expect("response");
            response.into_body().collect().await.expect("body")
        })
    };
    let through = |mesh: &Mesh| {
        let request = Request::get(format!("http://{HOST}:8080/"))
            .body(Bytes::new())
            .expect("request");
        rt.block_on(async {
            let response = mesh.http_client().request(request).await.expect("response");
            response.into_body().collect().await.expect("body")
        })
    };

    let mut group = c.benchmark_group("http_request");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("baseline/hyper_over_tunnel", |b| {
        b.iter(|| baseline(&mut sender));
    });
    group.bench_function("mesh_http_client", |b| b.iter(|| through(&client)));
    // The same client without recording Istio's metrics: what the client layer costs by itself.
    group.bench_function("mesh_http_client/no_telemetry", |b| {
        b.iter(|| through(&quiet))
    });
    group.finish();

    // Interleaved: the three alternate request by request (rotating who goes first), so load
    // that comes and goes on a shared machine lands on all of them; medians of single requests.
    let rounds: usize = std::env::var("PAIRED_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    // `PAIRED_ONLY=0|1|2` runs one of them alone (for `perf stat` and the like).
    let only: Option<usize> = std::env::var("PAIRED_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut times: [Vec<Duration>; 3] = Default::default();
    for round in 0..rounds {
        for k in 0..3 {
            let which = only.unwrap_or((round + k) % 3);
            let started = Instant::now();
            match which {
                0 => drop(baseline(&mut sender)),
                1 => drop(through(&client)),
                _ => drop(through(&quiet)),
            }
            times[which].push(started.elapsed());
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let [base, mesh, quiet_times] = &mut times;
    let (base, mesh, no_telemetry) = (median(base), median(mesh), median(quiet_times));
    println!(
        "http_request/paired ({rounds} rounds): median baseline {base:?}, mesh {mesh:?} ({:.3}x), \
         mesh without telemetry {no_telemetry:?} ({:.3}x); goal <= 1.1x",
        mesh.as_secs_f64() / base.as_secs_f64(),
        no_telemetry.as_secs_f64() / base.as_secs_f64(),
    );
}

/// The runtime client and server share: by default one current thread, as the `hbone` and
/// `handshake` benches, so that a time is the CPU work of both ends and the loopback round trip;
/// `MESH_HTTP_WORKERS=N` uses a multi-thread runtime of N workers instead, which adds the
/// cross-thread wake-ups (on a virtual machine whose idle vCPUs halt, each costs tens of
/// microseconds and dominates the time).
fn bench_runtime() -> tokio::runtime::Runtime {
    match std::env::var("MESH_HTTP_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(workers) if workers > 0 => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("runtime"),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    }
}

/// A client mesh knowing the server as `HOST`, with `extra` appended to its config.
async fn client_mesh(ca: &std::path::Path, port: u16, extra: &str) -> Mesh {
    Mesh::from_yaml(&format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/bench/sa/client, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}]
    identities: [{SERVER_ID}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {port} }}]
{extra}
"#,
        ca = ca.display(),
    ))
    .await
    .expect("client mesh")
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The per-request cost of observability: one HTTP/1.1 request through `Mesh::http_client()`
//! to a workload serving HTTP in-process, with metrics and access logs **off** (`telemetry: {
//! metrics: false }`) and **on** (Istio's metrics on both sides, an access log line per
//! request on both sides, rendered as JSON by a subscriber writing to a sink), in the same run.
//! Each request is recorded twice when on: by the caller (`reporter="source"`, outbound
//! probe, trace context) and by the callee (`reporter="destination"`, inbound probe, response
//! body wrapper). Goal: on/off <= 1.05x.
//!
//! Rows: `off`, `off_again` (a second, identical pair: the A/A control showing what two equal
//! setups differ by), `metrics` (metrics only) and `on` (metrics and access logs). After
//! Criterion, they run interleaved in short blocks and the p50 ratios are printed (the numbers
//! to trust on a shared machine).
//!
//! `cargo bench --bench observe -- --quick`

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mesh_benches::{
    ops::{Bench, Op, OpFuture, check, interleave, rounds},
    stats::micros,
};
use mesh_client::{
    http::HttpService,
    mesh::{InboundApp, InboundServer, Mesh},
    observe::ACCESS_LOG_TARGET,
};
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};

const SERVER_ID: &str = "spiffe://cluster.local/ns/bench/sa/server";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/bench/sa/client";
const HOST: &str = "server.bench.svc.cluster.local";

/// A client mesh and the server it calls, both with `telemetry`.
struct Pair {
    client: Mesh,
    _server_mesh: Mesh,
    _server: InboundServer,
}

async fn pair(ca: &std::path::Path, telemetry: &str) -> Pair {
    let server_mesh = check(
        Mesh::from_yaml(&format!(
            "workload: {{ name: server, namespace: bench, labels: {{ app: server }} }}\n\
             identity: {{ spiffe_id: {SERVER_ID}, dev_ca: {{ dir: {} }} }}\n\
             inbound: {{ listen: 127.0.0.1:0 }}\n{telemetry}",
            ca.display()
        ))
        .await,
        "server mesh",
    );
    let app = HttpService::new(tower::service_fn(|_request: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    let server = check(server_mesh.serve(InboundApp::Http(app)).await, "serve");
    let client = check(
        Mesh::from_yaml(&format!(
            r#"
workload: {{ name: client, namespace: bench, labels: {{ app: client }} }}
identity: {{ spiffe_id: {CLIENT_ID}, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}]
    identities: [{SERVER_ID}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {port} }}]
{telemetry}
"#,
            ca = ca.display(),
            port = server.local_addr().port(),
        ))
        .await,
        "client mesh",
    );
    Pair {
        client,
        _server_mesh: server_mesh,
        _server: server,
    }
}

/// One GET through the client mesh, body read.
struct Get<'a>(&'a Mesh);

impl Op for Get<'_> {
    fn run(&mut self) -> OpFuture<'_> {
        Box::pin(async move {
            let request = check(
                Request::get(format!("http://{HOST}:8080/items")).body(Bytes::new()),
                "request",
            );
            let response = check(self.0.http_client().request(request).await, "request");
            assert_eq!(response.status(), 200);
            check(response.into_body().collect().await, "body");
        })
    }
}

fn bench(c: &mut Criterion) {
    // Access log lines are rendered (as an operator's subscriber would) and thrown away.
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_ansi(false),
        )
        .with(Targets::new().with_target(ACCESS_LOG_TARGET, tracing::Level::INFO))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    let (off, off2, metrics, on) = rt.block_on(async {
        let off = pair(&ca, "telemetry: { metrics: false }").await;
        let off2 = pair(&ca, "telemetry: { metrics: false }").await;
        let metrics = pair(&ca, "telemetry: { metrics: true }").await;
        let on = pair(
            &ca,
            "telemetry: { metrics: true, access_log: { sampling_percent: 100 } }",
        )
        .await;
        (off, off2, metrics, on)
    });
    let mut benches = [
        Bench::new("off", Get(&off.client)),
        Bench::new("off_again", Get(&off2.client)),
        Bench::new("metrics", Get(&metrics.client)),
        Bench::new("on", Get(&on.client)),
    ];
    let mut group = c.benchmark_group("observe");
    group.measurement_time(Duration::from_secs(5));
    for bench in benches.iter_mut() {
        group.bench_function(bench.name, |b| {
            b.iter_custom(|iters| rt.block_on(bench.time(iters)))
        });
    }
    group.finish();
    rt.block_on(interleave(&mut benches, rounds(200, 50), 20));
    let [off_bench, off2_bench, metrics_bench, on_bench] = &mut benches;
    if let (Some(a), Some(b)) = (
        off_bench.samples.percentile(50.0),
        off2_bench.samples.percentile(50.0),
    ) {
        println!(
            "\nA/A control: off {:.1} us, off again {:.1} us ({:.3}x)",
            micros(a),
            micros(b),
            micros(b) / micros(a)
        );
    }
    if let (Some(off_p50), Some(metrics_p50), Some(on_p50)) = (
        off_bench.samples.percentile(50.0),
        metrics_bench.samples.percentile(50.0),
        on_bench.samples.percentile(50.0),
    ) {
        let (off, metrics, on) = (micros(off_p50), micros(metrics_p50), micros(on_p50));
        println!(
            "\nobserve: interleaved p50 per request: off {off:.1} us, metrics {metrics:.1} us \
             ({:.3}x), metrics + access logs {on:.1} us ({:.3}x; goal <= 1.05x)",
            metrics / off,
            on / off
        );
    }
    // The "on" pair really recorded: its metrics show the requests on both sides.
    let text = on.client.telemetry().encode();
    assert!(
        text.contains("istio_requests_total{reporter=\"source\""),
        "the on pair recorded nothing"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

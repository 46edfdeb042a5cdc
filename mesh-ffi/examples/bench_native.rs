//! The native-Rust baselines for the C ABI benchmarks (`scripts/bench.sh`), through the Rust API
//! directly, over loopback, with a development CA in DIR:
//!
//! - `bench_native DIR tunnel MIB PINGS`: the workloads of `benches/c/tunnel.c` (both sides in
//!   this process); prints `native throughput_mib_s=.. echo64_p50_us=.. echo64_p99_us=..`.
//! - `bench_native DIR http N`: serves HTTP (`GET /` answers 64 bytes) as workload
//!   `bench-http`, times N requests from an in-process native client (prints
//!   `native request_p50_us=..`), then prints `port=P` and keeps serving the Go and Python
//!   request benchmarks until its standard input closes.

use std::{convert::Infallible, error::Error, sync::Arc, time::Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mesh_client::{
    hbone::InboundTunnel,
    http::HttpService,
    mesh::{InboundApp, Mesh},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, dir, mode, mib, pings] if mode == "tunnel" => {
            tunnels(dir, mib.parse()?, pings.parse()?).await
        }
        [_, dir, mode, n] if mode == "http" => http(dir, n.parse()?).await,
        _ => Err("usage: bench_native DIR tunnel MIB PINGS | bench_native DIR http N".into()),
    }
}

async fn tunnels(dir: &str, mib: usize, pings: usize) -> Result<(), Box<dyn Error>> {
    let server = Mesh::from_yaml(&format!(
        "identity: {{ spiffe_id: spiffe://cluster.local/ns/bench/sa/server, dev_ca: {{ dir: {dir}/ca }} }}\n\
         inbound: {{ listen: \"127.0.0.1:0\" }}\n"
    ))
    .await?;
    let handler = Arc::new(|tunnel: InboundTunnel| {
        tokio::spawn(serve(tunnel));
    });
    let inbound = server.serve(InboundApp::Tunnels(handler)).await?;
    let client = Mesh::from_yaml(&format!(
        "identity: {{ spiffe_id: spiffe://cluster.local/ns/bench/sa/client, dev_ca: {{ dir: {dir}/ca }} }}\n\
         services:\n  - host: bench.svc\n    ports: [{{ port: 9000 }}, {{ port: 9001 }}]\n\
         \x20   identities: [spiffe://cluster.local/ns/bench/sa/server]\n\
         \x20   endpoints: [{{ address: \"127.0.0.1:9000\", hbone_port: {} }}]\n",
        inbound.local_addr().port()
    ))
    .await?;

    // Throughput: MIB MiB one way into a sink that answers with the byte count.
    let mut sink = client.connect("bench.svc:9001").await?;
    let chunk = vec![7u8; CHUNK];
    let started = Instant::now();
    for _ in 0..mib * 1024 * 1024 / CHUNK {
        sink.write_all(&chunk).await?;
    }
    sink.shutdown().await?;
    let mut count = [0u8; 8];
    sink.read_exact(&mut count).await?;
    let seconds = started.elapsed().as_secs_f64();
    if u64::from_le_bytes(count) != (mib * 1024 * 1024) as u64 {
        return Err("the sink counted another size".into());
    }

    // Latency: 64-byte ping-pong.
    let mut echo = client.connect("bench.svc:9000").await?;
    let mut samples = Vec::with_capacity(pings);
    let ping = [1u8; 64];
    let mut pong = [0u8; 64];
    for i in 0..pings + pings / 10 {
        let t = Instant::now();
        echo.write_all(&ping).await?;
        echo.read_exact(&mut pong).await?;
        if i >= pings / 10 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "native throughput_mib_s={:.1} echo64_p50_us={:.1} echo64_p99_us={:.1}",
        mib as f64 / seconds,
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100]
    );
    drop((sink, echo));
    inbound.shutdown().await;
    Ok(())
}

/// Port 9000 echoes; port 9001 counts bytes until EOF and answers with the count.
async fn serve(tunnel: InboundTunnel) {
    let mut stream = tunnel.stream;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n as u64;
        if tunnel.target.port() == 9000 && stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    if tunnel.target.port() == 9001 {
        let _ = stream.write_all(&total.to_le_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

async fn http(dir: &str, n: usize) -> Result<(), Box<dyn Error>> {
    let server = Mesh::from_yaml(&format!(
        "identity: {{ spiffe_id: spiffe://cluster.local/ns/bench/sa/bench-http, dev_ca: {{ dir: {dir}/ca }} }}\n\
         inbound: {{ listen: \"127.0.0.1:0\" }}\n"
    ))
    .await?;
    let app = HttpService::new(tower::service_fn(|_request| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
            &[b'x'; 64],
        ))))
    }));
    let inbound = server.serve(InboundApp::Http(app)).await?;
    let port = inbound.local_addr().port();
    let client = Mesh::from_yaml(&format!(
        "identity: {{ spiffe_id: spiffe://cluster.local/ns/bench/sa/client, dev_ca: {{ dir: {dir}/ca }} }}\n\
         services:\n  - host: bench-http.svc\n    ports: [{{ port: 8080, protocol: http }}]\n\
         \x20   identities: [spiffe://cluster.local/ns/bench/sa/bench-http]\n\
         \x20   endpoints: [{{ address: \"127.0.0.1:8080\", hbone_port: {port} }}]\n"
    ))
    .await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let request = http::Request::get("http://bench-http.svc:8080/").body(Bytes::new())?;
        let response = client.http_client().request(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        if body.len() != 64 {
            return Err("short response".into());
        }
        if i >= n / 10 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(f64::total_cmp);
    println!("native request_p50_us={:.1}", samples[samples.len() / 2]);
    println!("port={port}");
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    inbound.shutdown().await;
    Ok(())
}

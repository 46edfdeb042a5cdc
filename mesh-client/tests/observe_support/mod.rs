//! Two meshed workloads with admin endpoints, and readers for what those endpoints say.
//!
//! `inventory` serves HTTP in-process (answering with the caller's identity and the trace
//! context it saw) and forwards port 9000 to a TCP echo server; `orders` calls it. Both come
//! from the mesh's own YAML with `admin: { listen: 127.0.0.1:0 }`, sharing a development CA.

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::BTreeMap, convert::Infallible, net::SocketAddr, path::Path, time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mesh_client::{
    http::{HttpService, PeerIdentity},
    mesh::{InboundApp, InboundServer, Mesh},
    observe::TraceContext,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound for every network step.
pub const STEP: Duration = Duration::from_secs(20);
pub const INVENTORY: &str = "spiffe://cluster.local/ns/shop/sa/inventory";
pub const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
pub const HOST: &str = "inventory.shop.svc.cluster.local";

const POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: orders-only, namespace: shop }
spec:
  selector: { matchLabels: { app: inventory } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/orders"] } }]
    to: [{ operation: { notPaths: ["/admin*"] } }]
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/orders"] } }]
    to: [{ operation: { ports: ["9000"] } }]
"#;

/// Answers `<caller> <trace id> <parent span id>`; `/status/N` answers status N.
fn app() -> HttpService {
    HttpService::new(tower::service_fn(|request: Request<Incoming>| async move {
        let peer = request.extensions().get::<PeerIdentity>().cloned();
        let trace = request.extensions().get::<TraceContext>().cloned();
        let status = request
            .uri()
            .path()
            .strip_prefix("/status/")
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        let text = format!(
            "{} {} {}",
            peer.map_or("anonymous".to_owned(), |p| p.id.to_string()),
            trace
                .as_ref()
                .map_or("-".to_owned(), TraceContext::trace_id),
            trace
                .and_then(|t| t.parent_span_id())
                .unwrap_or_else(|| "-".to_owned()),
        );
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    }))
}

/// The inventory workload (HTTP app, port 9000 forwarded to `echo`), with an admin endpoint
/// and `extra` YAML appended (e.g. a telemetry section).
pub async fn inventory(dir: &Path, echo: SocketAddr, extra: &str) -> (Mesh, InboundServer) {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let yaml = format!(
        r#"
workload: {{ name: inventory, namespace: shop, labels: {{ app: inventory, version: v2 }} }}
identity:
  spiffe_id: {INVENTORY}
  dev_ca: {{ dir: {ca} }}
inbound:
  listen: 127.0.0.1:0
  forward: {{ 9000: "{echo}" }}
policies: [{policy}]
admin: {{ listen: "127.0.0.1:0" }}
{extra}
"#,
        ca = dir.join("ca").display(),
        policy = policy.display(),
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let server = mesh.serve(InboundApp::Http(app())).await.unwrap();
    (mesh, server)
}

/// A caller with `spiffe_id` (workload `name`) that knows the inventory behind `server`.
pub async fn caller(
    dir: &Path,
    name: &str,
    spiffe_id: &str,
    server: &InboundServer,
    extra: &str,
) -> Mesh {
    let yaml = format!(
        r#"
workload: {{ name: {name}, namespace: shop, labels: {{ app: {name}, version: v1 }} }}
identity:
  spiffe_id: {spiffe_id}
  dev_ca: {{ dir: {ca} }}
admin: {{ listen: "127.0.0.1:0" }}
services:
  - host: {HOST}
    ports: [{{ port: 8080, protocol: http }}, {{ port: 9000 }}]
    identities: [{INVENTORY}]
    endpoints: [{{ address: "127.0.0.1:8080", hbone_port: {hbone} }}]
{extra}
"#,
        ca = dir.join("ca").display(),
        hbone = server.local_addr().port(),
    );
    Mesh::from_yaml(&yaml).await.unwrap()
}

/// GETs `path` from the caller through the mesh; `traceparent` is sent when given.
pub async fn get(mesh: &Mesh, path: &str, traceparent: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get(format!("http://{HOST}:8080{path}"));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let response = tokio::time::timeout(
        STEP,
        mesh.http_client()
            .request(request.body(Bytes::new()).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A plain HTTP/1.1 exchange with an admin endpoint: status, headers (lowercase names), body.
pub async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> (u16, BTreeMap<String, String>, String) {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accept = accept.map_or(String::new(), |a| format!("accept: {a}\r\n"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{accept}connection: close\r\ncontent-length: 0\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(STEP, exchange)
        .await
        .expect("admin request timed out");
    let text = String::from_utf8(raw).expect("admin answers text");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// One sample of the exposition text.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the sample lines of Prometheus text (either format).
pub fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while let Some((key, after)) = rest.split_once("=\"") {
            // Label values here never contain escaped quotes.
            let (value, tail) = after.split_once('"').expect("closing quote");
            map.insert(key.trim_start_matches(',').to_owned(), value.to_owned());
            rest = tail;
        }
        out.push(Sample {
            name: name.to_owned(),
            labels: map,
            value: value.parse().expect("a number"),
        });
    }
    out
}

/// The sum of `name`'s samples carrying every label in `want`.
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Scrapes `mesh`'s admin endpoint (classic text format).
pub async fn scrape(mesh: &Mesh) -> Vec<Sample> {
    let (status, _, body) = admin(mesh.admin_addr().unwrap(), "GET", "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    samples(&body)
}

/// A TCP server echoing every connection's bytes.
pub async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

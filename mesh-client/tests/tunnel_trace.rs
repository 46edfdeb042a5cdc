//! W3C trace context on raw tunnels: `Mesh::connect` sends `traceparent`, `tracestate` and
//! `baggage` on the CONNECT (from an explicit parent, from `TraceContext::scope`, or a new
//! trace), and the destination continues it: the handler's `InboundTunnel::trace`, the
//! `TCP server` span and both access log lines carry the same trace ID. Two workloads over real
//! HBONE on loopback.

mod observe_support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{HeaderMap, HeaderValue};
use mesh_client::{
    hbone::InboundTunnel,
    mesh::{InboundApp, InboundServer, Mesh},
    observe::{ACCESS_LOG_TARGET, TraceContext},
};
use observe_support::{HOST, INVENTORY, ORDERS, STEP, caller};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Everything the test's subscriber writes, line by line.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn all(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Access log records (JSON lines) of raw tunnels.
    fn tunnels(&self) -> Vec<serde_json::Value> {
        self.all()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["method"] == "CONNECT")
            .collect()
    }
}

/// Answers each tunnel, once the client half-closed, with what its server span saw:
/// `trace_id parent_span_id tracestate baggage`.
fn report(tunnel: InboundTunnel) {
    tokio::spawn(async move {
        let InboundTunnel {
            mut stream, trace, ..
        } = tunnel;
        let mut ignored = Vec::new();
        if stream.read_to_end(&mut ignored).await.is_err() {
            return;
        }
        let text = |v: Option<&HeaderValue>| {
            v.and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .replace(' ', "")
        };
        let answer = format!(
            "{} {} {} {}",
            trace.trace_id(),
            trace.parent_span_id().unwrap_or_default(),
            text(trace.tracestate()),
            text(trace.baggage()),
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    });
}

/// The inventory workload serving raw tunnels with [`report`], logging every tunnel.
async fn inventory(dir: &std::path::Path) -> (Mesh, InboundServer) {
    let yaml = format!(
        r#"
workload: {{ name: inventory, namespace: shop, labels: {{ app: inventory, version: v2 }} }}
identity:
  spiffe_id: {INVENTORY}
  dev_ca: {{ dir: {ca} }}
inbound: {{ listen: 127.0.0.1:0 }}
telemetry: {{ access_log: {{ sampling_percent: 100 }} }}
"#,
        ca = dir.join("ca").display(),
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let server = mesh
        .serve(InboundApp::Tunnels(Arc::new(report)))
        .await
        .unwrap();
    (mesh, server)
}

/// Opens a tunnel with `open`, half-closes it and returns the server's answer as fields.
async fn exchange(
    open: impl Future<Output = Result<mesh_client::hbone::H2Stream, mesh_client::mesh::MeshError>>,
) -> Vec<String> {
    tokio::time::timeout(STEP, async {
        let mut tunnel = open.await.expect("tunnel opened");
        tunnel.shutdown().await.unwrap();
        let mut answer = String::new();
        tunnel.read_to_string(&mut answer).await.unwrap();
        answer.split(' ').map(str::to_owned).collect()
    })
    .await
    .expect("tunnel answered in time")
}

// One thread: the access log writer runs where the test's subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn raw_tunnels_carry_trace_context_to_the_destination() {
    use tracing_subscriber::{filter::Targets, layer::SubscriberExt};
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || sink.clone())
                .without_time()
                .with_level(false)
                .with_target(false)
                .with_ansi(false),
        )
        .with(
            Targets::new()
                .with_target(ACCESS_LOG_TARGET, tracing::Level::INFO)
                .with_target("mesh::tcp", tracing::Level::DEBUG),
        );
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let (_inventory, server) = inventory(dir.path()).await;
    let orders = caller(
        dir.path(),
        "orders",
        ORDERS,
        &server,
        "telemetry: { access_log: { sampling_percent: 100 } }",
    )
    .await;
    let target = format!("{HOST}:9000");

    // An explicit parent with vendor state and application baggage.
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_static(PARENT));
    headers.insert("tracestate", HeaderValue::from_static("vendor=opaque"));
    headers.insert("baggage", HeaderValue::from_static("user=alice"));
    let parent = TraceContext::from_headers(&headers).unwrap();
    let seen = exchange(orders.connect_with_trace(&target, &parent)).await;
    assert_eq!(seen[0], parent.trace_id(), "{seen:?}");
    // The server span's parent is the client span, itself a child of `parent`.
    let client_span = seen[1].clone();
    assert_eq!(client_span.len(), 16, "{seen:?}");
    assert_ne!(client_span, "00f067aa0ba902b7");
    assert_eq!(seen[2], "vendor=opaque");
    // The workload's peer metadata first (what the destination's labels read), then the
    // application's entries.
    assert!(
        seen[3].starts_with("k8s.namespace.name=shop,") && seen[3].ends_with(",user=alice"),
        "{seen:?}"
    );

    // The context in scope, without naming it.
    let scoped =
        TraceContext::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .unwrap();
    let seen = exchange(scoped.clone().scope(orders.connect(&target))).await;
    assert_eq!(seen[0], "0af7651916cd43dd8448eb211c80319c", "{seen:?}");
    assert_eq!(seen[2], "-", "no tracestate was in scope: {seen:?}");

    // Nothing in scope: a new trace, still continued by the destination.
    let fresh = exchange(orders.connect(&target)).await;
    assert_eq!(fresh[0].len(), 32, "{fresh:?}");
    assert_ne!(fresh[0], seen[0]);

    // Both sides' access log lines and the destination's span name the same traces.
    let deadline = tokio::time::Instant::now() + STEP;
    let records = loop {
        let records = lines.tunnels();
        let inbound = records
            .iter()
            .filter(|r| r["direction"] == "inbound")
            .count();
        let outbound = records
            .iter()
            .filter(|r| r["direction"] == "outbound")
            .count();
        if inbound >= 3 && outbound >= 3 {
            break records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "access log lines missing: {:?}",
            lines.all()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for trace_id in [parent.trace_id(), scoped.trace_id(), fresh[0].clone()] {
        for direction in ["inbound", "outbound"] {
            assert!(
                records
                    .iter()
                    .any(|r| r["direction"] == direction && r["trace_id"] == trace_id.as_str()),
                "no {direction} tunnel line with trace {trace_id}: {records:?}"
            );
        }
    }
    let all = lines.all();
    let server_span = all
        .iter()
        .find(|l| l.contains("TCP server{") && l.contains(&parent.trace_id()))
        .unwrap_or_else(|| panic!("no TCP server span with the parent's trace: {all:#?}"));
    assert!(
        server_span.contains(&format!("parent_span_id=\"{client_span}\""))
            || server_span.contains(&format!("parent_span_id={client_span}")),
        "{server_span}"
    );
    assert!(
        server_span.contains(&format!("peer.principal=\"{ORDERS}\""))
            || server_span.contains(&format!("peer.principal={ORDERS}")),
        "{server_span}"
    );
    assert!(
        all.iter()
            .any(|l| l.contains("TCP client{") && l.contains(&format!("span_id={client_span}"))),
        "the client span names the span the server continued: {all:#?}"
    );
    assert_eq!(server.shutdown().await, 0);
}

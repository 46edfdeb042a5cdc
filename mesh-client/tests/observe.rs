//! Observability end to end: two workloads built from YAML talk HTTP and raw TCP over real
//! HBONE on loopback, and their admin endpoints are read over real sockets: Istio's standard
//! metrics from both reporters with Istio's labels, the mesh's own metrics, `/config_dump`,
//! readiness, `/logging`, access log lines and W3C trace context.

mod observe_support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mesh_client::observe::{
    AdminServer, AdminState, DURATION_BUCKETS_MS, LogControl, Telemetry, WorkloadLabels,
};
use observe_support::{
    HOST, INVENTORY, ORDERS, STEP, Sample, admin, caller, echo_server, get, inventory, samples,
    scrape, sum,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Scrapes until `done` holds (metrics of a finished request may land a moment after the
/// caller has its answer), failing after [`STEP`].
async fn scrape_until(
    mesh: &mesh_client::mesh::Mesh,
    what: &str,
    done: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let now = scrape(mesh).await;
        if done(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const DEST_HTTP: [(&str, &str); 15] = [
    ("reporter", "destination"),
    ("source_workload", "orders"),
    ("source_workload_namespace", "shop"),
    ("source_principal", ORDERS),
    ("source_canonical_service", "orders"),
    ("source_canonical_revision", "v1"),
    ("source_app", "orders"),
    ("destination_workload", "inventory"),
    ("destination_workload_namespace", "shop"),
    ("destination_principal", INVENTORY),
    ("destination_canonical_service", "inventory"),
    ("destination_canonical_revision", "v2"),
    ("destination_service", HOST),
    ("destination_service_name", "inventory"),
    ("connection_security_policy", "mutual_tls"),
];

const SOURCE_HTTP: [(&str, &str); 11] = [
    ("reporter", "source"),
    ("source_workload", "orders"),
    ("source_principal", ORDERS),
    ("source_canonical_service", "orders"),
    ("destination_workload", "inventory"),
    ("destination_workload_namespace", "shop"),
    ("destination_principal", INVENTORY),
    ("destination_canonical_service", "inventory"),
    ("destination_version", "v2"),
    ("destination_service", HOST),
    ("connection_security_policy", "unknown"),
];

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

#[tokio::test]
async fn istio_metrics_from_both_sides_with_istio_labels() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let (inventory, server) = inventory(dir.path(), echo, "").await;
    let orders = caller(dir.path(), "orders", ORDERS, &server, "").await;

    for _ in 0..5 {
        assert_eq!(get(&orders, "/items", None).await.0, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&orders, "/status/404", None).await.0, 404);
    }
    assert_eq!(get(&orders, "/admin", None).await.0, 403);

    // The HTTP requests rode tunnels too (attributed to the same service); measure the raw
    // tunnel's bytes as the change it makes.
    let tcp_dest = [
        ("reporter", "destination"),
        ("request_protocol", "tcp"),
        ("source_workload", "orders"),
        ("destination_service", HOST),
        ("destination_workload", "inventory"),
    ];
    let tcp_src = [
        ("reporter", "source"),
        ("request_protocol", "tcp"),
        ("destination_service", HOST),
        ("destination_workload", "inventory"),
        ("destination_principal", INVENTORY),
    ];
    let ok = with(
        &DEST_HTTP,
        &[("response_code", "200"), ("response_flags", "-")],
    );
    let before_dest = scrape_until(&inventory, "the HTTP requests", |m| {
        sum(m, "istio_requests_total", &ok) == 5.0
    })
    .await;
    let before_src = scrape(&orders).await;
    let delta = |now: &[Sample], before: &[Sample], name: &str, labels: &[(&str, &str)]| {
        sum(now, name, labels) - sum(before, name, labels)
    };

    let mut tunnel = tokio::time::timeout(STEP, orders.connect(&format!("{HOST}:9000")))
        .await
        .unwrap()
        .unwrap();
    tunnel.write_all(b"ping").await.unwrap();
    tunnel.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    tokio::time::timeout(STEP, tunnel.read_to_end(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"ping");
    drop(tunnel);

    // The destination's view.
    let m = scrape_until(&inventory, "the tunnel's close", |m| {
        delta(
            m,
            &before_dest,
            "istio_tcp_connections_closed_total",
            &tcp_dest,
        ) >= 1.0
    })
    .await;
    assert_eq!(
        sum(
            &m,
            "istio_requests_total",
            &with(&DEST_HTTP, &[("response_code", "404")])
        ),
        2.0
    );
    assert_eq!(
        sum(
            &m,
            "istio_requests_total",
            &with(&DEST_HTTP, &[("response_code", "403")])
        ),
        1.0
    );
    assert_eq!(
        sum(&m, "istio_request_duration_milliseconds_count", &ok),
        5.0
    );
    assert_eq!(sum(&m, "istio_request_bytes_count", &ok), 5.0);
    assert!(sum(&m, "istio_response_bytes_sum", &ok) >= 5.0 * ORDERS.len() as f64);
    // Istio's duration buckets, and nothing else.
    let mut bounds: Vec<f64> = m
        .iter()
        .filter(|s| s.name == "istio_request_duration_milliseconds_bucket")
        .filter_map(|s| s.labels.get("le"))
        .filter(|le| *le != "+Inf")
        .map(|le| le.parse().unwrap())
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    assert_eq!(bounds, DURATION_BUCKETS_MS.to_vec());
    // No per-path or per-endpoint labels.
    assert!(m.iter().all(|s| !s.labels.contains_key("path")
        && !s.labels.contains_key("request_path")
        && !s.labels.values().any(|v| v.contains("/items"))));
    // The raw tunnel: four bytes each way, opened and closed, attributed to the service.
    let d = |name: &str| delta(&m, &before_dest, name, &tcp_dest);
    assert_eq!(d("istio_tcp_connections_opened_total"), 1.0);
    assert_eq!(d("istio_tcp_received_bytes_total"), 4.0);
    assert_eq!(d("istio_tcp_sent_bytes_total"), 4.0);
    // The mesh's own.
    let deny = [("layer", "http"), ("action", "deny")];
    assert_eq!(sum(&m, "mesh_authz_decisions_total", &deny), 1.0);
    assert_eq!(
        sum(
            &m,
            "mesh_authz_decisions_total",
            &[("action", "allow"), ("layer", "http")]
        ),
        7.0
    );
    assert!(
        sum(
            &m,
            "mesh_tls_handshakes_total",
            &[("direction", "inbound"), ("result", "success")]
        ) >= 1.0
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let expiry = sum(
        &m,
        "mesh_certificate_expiry_timestamp_seconds",
        &[("spiffe_id", INVENTORY)],
    );
    assert!(expiry > now && expiry < now + 2.0 * 86_400.0, "{expiry}");

    // The source's view.
    let ok = with(
        &SOURCE_HTTP,
        &[("response_code", "200"), ("response_flags", "-")],
    );
    let m = scrape_until(&orders, "the source's metrics", |m| {
        delta(
            m,
            &before_src,
            "istio_tcp_connections_closed_total",
            &tcp_src,
        ) >= 1.0
    })
    .await;
    assert_eq!(sum(&m, "istio_requests_total", &ok), 5.0);
    assert_eq!(
        sum(
            &m,
            "istio_requests_total",
            &with(&SOURCE_HTTP, &[("response_code", "403")])
        ),
        1.0
    );
    let d = |name: &str| delta(&m, &before_src, name, &tcp_src);
    assert_eq!(d("istio_tcp_sent_bytes_total"), 4.0);
    assert_eq!(d("istio_tcp_received_bytes_total"), 4.0);
    assert!(sum(&m, "mesh_pool_connections_opened_total", &[]) >= 1.0);
    assert!(
        sum(
            &m,
            "mesh_tls_handshakes_total",
            &[("direction", "outbound"), ("result", "success")]
        ) >= 1.0
    );
    assert_eq!(sum(&m, "mesh_discovery_healthy", &[]), 1.0);
    assert_eq!(server.shutdown().await, 0);
}

#[tokio::test]
async fn failures_carry_envoy_response_flags() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let (_inventory, server) = inventory(dir.path(), echo, "").await;
    // A service whose only endpoint refuses connections.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let extra = format!(
        "  - host: dead.shop.svc.cluster.local\n    ports: [{{ port: 8080, protocol: http }}]\n    identities: [{INVENTORY}]\n    endpoints: [{{ address: \"127.0.0.1:8080\", hbone_port: {dead_port} }}]\n"
    );
    let orders = caller(dir.path(), "orders", ORDERS, &server, &extra).await;
    let request = http::Request::get("http://dead.shop.svc.cluster.local:8080/")
        .body(bytes::Bytes::new())
        .unwrap();
    let failed = tokio::time::timeout(STEP, orders.http_client().request(request))
        .await
        .unwrap();
    assert!(failed.is_err());
    let dead_flow = [
        ("reporter", "source"),
        ("destination_service", "dead.shop.svc.cluster.local"),
        ("response_code", "503"),
    ];
    let m = scrape_until(&orders, "the failed request", |m| {
        sum(m, "istio_requests_total", &dead_flow) == 1.0
    })
    .await;
    let flags: Vec<&str> = m
        .iter()
        .filter(|s| s.name == "istio_requests_total")
        .filter(|s| s.labels["destination_service"] == "dead.shop.svc.cluster.local")
        .map(|s| s.labels["response_flags"].as_str())
        .collect();
    // Connect failures, retried (Istio's default two retries) until the limit.
    assert_eq!(flags, ["UF,URX"]);
    assert_eq!(
        sum(
            &m,
            "mesh_retries_total",
            &[("destination_service", "dead.shop.svc.cluster.local")]
        ),
        2.0
    );
    assert!(
        sum(
            &m,
            "mesh_tls_handshakes_total",
            &[
                ("direction", "outbound"),
                ("result", "failure"),
                ("reason", "connect")
            ]
        ) >= 1.0
    );
    assert_eq!(server.shutdown().await, 0);
}

#[tokio::test]
async fn admin_endpoint_pages() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let (inventory, server) = inventory(dir.path(), echo, "").await;
    let orders = caller(dir.path(), "orders", ORDERS, &server, "").await;
    assert_eq!(get(&orders, "/items", None).await.0, 200);
    let addr = orders.admin_addr().unwrap();
    assert!(addr.ip().is_loopback());

    let (status, _, body) = admin(addr, "GET", "/healthz/ready", None).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    let (status, headers, body) = admin(addr, "GET", "/config_dump", None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let dump: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dump["workload"]["name"], "orders");
    assert_eq!(dump["certificates"][0]["spiffe_id"], ORDERS);
    assert!(dump["certificates"][0]["seconds_left"].as_u64().unwrap() > 3600);
    assert!(
        dump["certificates"][0]["not_after"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let service = &dump["discovery"]["services"][0];
    assert_eq!(service["host"], HOST);
    assert_eq!(service["identities"][0], INVENTORY);
    let endpoint = &service["endpoints"][0];
    assert_eq!(endpoint["address"], "127.0.0.1:8080");
    assert_eq!(endpoint["health"], "healthy");
    assert_eq!(endpoint["ejected"], false);
    assert!(
        dump["pools"]["outbound"]["connections_opened"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let balancer = &dump["outlier_detection"][0];
    assert_eq!(balancer["host"], HOST);
    assert_eq!(balancer["ejections"], 0);
    assert_eq!(dump["admin"]["listen"], "127.0.0.1:0");

    let (_, _, body) = admin(inventory.admin_addr().unwrap(), "GET", "/config_dump", None).await;
    let dump: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dump["policies"]["authorization"][0], "shop/orders-only");
    assert!(
        dump["inbound"]["listen"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // Prometheus asks for OpenMetrics and gets it; others get the classic format.
    let (status, headers, body) = admin(
        addr,
        "GET",
        "/stats/prometheus",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("application/openmetrics-text"));
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE istio_requests counter"));
    let (_, headers, body) = admin(addr, "GET", "/metrics", None).await;
    assert!(headers["content-type"].starts_with("text/plain; version=0.0.4"));
    assert!(body.contains("# TYPE istio_requests_total counter"));
    assert!(!body.contains("# EOF"));
    assert!(!samples(&body).is_empty());

    assert_eq!(admin(addr, "POST", "/metrics", None).await.0, 405);
    assert_eq!(admin(addr, "GET", "/nothing-here", None).await.0, 404);
    // No LogControl in this process: /logging says how to get one.
    let (status, _, body) = admin(addr, "GET", "/logging", None).await;
    assert_eq!(status, 503);
    assert!(body.contains("init_logging"), "{body}");
    assert_eq!(server.shutdown().await, 0);
}

/// A workload that is never ready, for the admin endpoint alone.
struct NotReady;

impl AdminState for NotReady {
    fn ready(&self) -> Result<(), String> {
        Err("identity not loaded yet".to_owned())
    }
    fn config_dump(&self) -> serde_json::Value {
        serde_json::json!({ "hello": "world" })
    }
}

#[tokio::test]
async fn logging_levels_change_at_runtime() {
    use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt, reload};
    let (layer, handle) = reload::Layer::<EnvFilter, Registry>::new(EnvFilter::new("info"));
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let control = LogControl::from_reload(handle, "info");
    let telemetry = Telemetry::new(WorkloadLabels::unknown(), &Default::default());
    let server = AdminServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        telemetry,
        Arc::new(NotReady),
        Some(control.clone()),
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    let (status, _, body) = admin(addr, "GET", "/healthz/ready", None).await;
    assert_eq!(status, 503);
    assert!(body.contains("identity not loaded yet"), "{body}");
    assert_eq!(
        admin(addr, "GET", "/logging", None).await.2,
        "filter: info\n"
    );
    assert!(!tracing::enabled!(tracing::Level::DEBUG));

    let (status, _, body) = admin(addr, "POST", "/logging?level=debug", None).await;
    assert_eq!((status, body.as_str()), (200, "filter: debug\n"));
    assert!(tracing::enabled!(tracing::Level::DEBUG));
    let (status, _, _) = admin(
        addr,
        "POST",
        "/logging?filter=warn%2Cmesh_client%3Dtrace",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(control.current(), "warn,mesh_client=trace");

    let (status, _, body) = admin(addr, "POST", "/logging?level=loud", None).await;
    assert_eq!(status, 400);
    assert!(body.contains("loud"), "{body}");
    assert_eq!(admin(addr, "POST", "/logging", None).await.0, 400);
    assert_eq!(control.current(), "warn,mesh_client=trace");
    server.shutdown();
}

#[tokio::test]
async fn trace_context_crosses_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let (_inventory, server) = inventory(dir.path(), echo, "").await;
    let orders = caller(dir.path(), "orders", ORDERS, &server, "").await;

    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, body) = get(&orders, "/items", Some(parent)).await;
    assert_eq!(status, 200);
    let fields: Vec<&str> = body.split(' ').collect();
    assert_eq!(fields[0], ORDERS);
    // Same trace; the server span's parent is the client span, a child of ours.
    assert_eq!(fields[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(fields[2].len(), 16);
    assert_ne!(fields[2], "00f067aa0ba902b7");

    // No context sent: the client starts a trace, and the server continues it.
    let (_, body) = get(&orders, "/items", None).await;
    let fields: Vec<&str> = body.split(' ').collect();
    assert_eq!(fields[1].len(), 32);
    assert_ne!(fields[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(fields[2].len(), 16);
    assert_eq!(server.shutdown().await, 0);
}

/// Collects the access log lines written through `tracing`.
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
    fn records(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

// One thread: the access log writer task runs where the test's subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn access_logs_are_json_lines_with_sampling_and_errors() {
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
        .with(Targets::new().with_target(
            mesh_client::observe::ACCESS_LOG_TARGET,
            tracing::Level::INFO,
        ));
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let errors_only = "telemetry: { access_log: { errors_only: true } }";
    let (_inventory, server) = inventory(dir.path(), echo, errors_only).await;
    let orders = caller(
        dir.path(),
        "orders",
        ORDERS,
        &server,
        "telemetry: { access_log: { sampling_percent: 100 } }",
    )
    .await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(get(&orders, "/items?x=1", Some(parent)).await.0, 200);
    assert_eq!(get(&orders, "/status/404", None).await.0, 404);

    let deadline = tokio::time::Instant::now() + STEP;
    let http = |records: &[serde_json::Value], direction: &str| -> Vec<serde_json::Value> {
        records
            .iter()
            .filter(|r| r["direction"] == direction && r["method"] == "GET")
            .cloned()
            .collect()
    };
    let (inbound, outbound) = loop {
        let records = lines.records();
        let (inbound, outbound) = (http(&records, "inbound"), http(&records, "outbound"));
        if !inbound.is_empty() && outbound.len() >= 2 {
            break (inbound, outbound);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no access log lines: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The caller logs both requests, sampled at 100%.
    let first = &outbound[0];
    assert_eq!(first["path"], "/items?x=1");
    assert_eq!(first["response_code"], 200);
    assert_eq!(first["response_flags"], "-");
    assert_eq!(first["upstream_cluster"], HOST);
    assert_eq!(first["upstream_peer_principal"], INVENTORY);
    assert_eq!(first["upstream_host"], "127.0.0.1:8080");
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(first["start_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(outbound[1]["response_code"], 404);
    // The callee logs errors only: the 404, not the 200.
    assert_eq!(inbound.len(), 1, "{inbound:?}");
    let line = &inbound[0];
    assert_eq!(line["path"], "/status/404");
    assert_eq!(line["response_code"], 404);
    assert_eq!(line["downstream_peer_principal"], ORDERS);
    assert_eq!(line["authority"], HOST);
    assert_eq!(line["trace_id"], outbound[1]["trace_id"]);
    assert!(line["bytes_sent"].as_u64().unwrap() > 0);
    assert_eq!(server.shutdown().await, 0);
}

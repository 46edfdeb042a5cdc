//! OTLP span export (feature `otlp`): two workloads export to a real OTLP/gRPC receiver (the
//! `opentelemetry-proto` TraceService served with tonic on loopback) while an HTTP request and
//! a raw tunnel cross real HBONE; the receiver sees client and server spans of both with the
//! caller's trace ID, parent links across the two processes' spans, OpenTelemetry attributes
//! and each workload's `service.name`. Without the feature, `telemetry.otlp` is refused.

mod observe_support;

#[cfg(feature = "otlp")]
mod export {
    use mesh_client::observe::TraceContext;
    use opentelemetry_proto::tonic::{
        collector::trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
        common::v1::{AnyValue, any_value::Value},
        trace::v1::{Span, span::SpanKind, status::StatusCode},
    };
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        sync::mpsc,
    };

    use super::observe_support::{HOST, ORDERS, STEP, caller, echo_server, get, inventory};

    /// The receiver: every export request goes to the test.
    struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let _ = self.0.send(request.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// A span with the `service.name` of the resource it came in.
    #[derive(Debug, Clone)]
    struct Exported {
        service: String,
        span: Span,
    }

    impl Exported {
        fn attr(&self, key: &str) -> Option<&Value> {
            self.span
                .attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v: &AnyValue| v.value.as_ref())
        }

        fn text(&self, key: &str) -> Option<&str> {
            match self.attr(key) {
                Some(Value::StringValue(s)) => Some(s),
                _ => None,
            }
        }

        fn int(&self, key: &str) -> Option<i64> {
            match self.attr(key) {
                Some(Value::IntValue(i)) => Some(*i),
                _ => None,
            }
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn flatten(request: ExportTraceServiceRequest) -> Vec<Exported> {
        let mut out = Vec::new();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    out.push(Exported {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        out
    }

    /// Collects exported spans until `done` holds, failing after [`STEP`].
    async fn collect(
        rx: &mut mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
        spans: &mut Vec<Exported>,
        what: &str,
        done: impl Fn(&[Exported]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + STEP;
        while !done(spans) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(request)) => spans.extend(flatten(request)),
                Ok(None) => panic!("the receiver stopped"),
                Err(_) => panic!("timed out waiting for {what}; got {spans:#?}"),
            }
        }
    }

    fn find<'a>(
        spans: &'a [Exported],
        trace_id: &str,
        name: &str,
        kind: SpanKind,
    ) -> Option<&'a Exported> {
        spans.iter().find(|s| {
            hex(&s.span.trace_id) == trace_id && s.span.name == name && s.span.kind == kind as i32
        })
    }

    #[tokio::test]
    async fn spans_of_requests_and_tunnels_reach_an_otlp_receiver() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let receiver_task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Collector(tx)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );

        let dir = tempfile::tempdir().unwrap();
        let echo = echo_server().await;
        let telemetry = format!("telemetry: {{ otlp: {{ endpoint: \"http://{receiver}\" }} }}");
        let (_inventory, hbone) = inventory(dir.path(), echo, &telemetry).await;
        let orders = caller(dir.path(), "orders", ORDERS, &hbone, &telemetry).await;

        // An HTTP request continuing the caller's trace.
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(get(&orders, "/items", Some(parent)).await.0, 200);

        // A raw tunnel (forwarded to the echo server) continuing another.
        let tunnel_parent = TraceContext::parse_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .unwrap();
        let tunnel_trace = tunnel_parent.trace_id();
        tokio::time::timeout(STEP, async {
            let mut tunnel = orders
                .connect_with_trace(&format!("{HOST}:9000"), &tunnel_parent)
                .await
                .unwrap();
            tunnel.write_all(b"ping").await.unwrap();
            tunnel.shutdown().await.unwrap();
            let mut echoed = Vec::new();
            tunnel.read_to_end(&mut echoed).await.unwrap();
            assert_eq!(echoed, b"ping");
        })
        .await
        .expect("tunnel in time");

        let mut spans = Vec::new();
        collect(&mut rx, &mut spans, "the four spans", |s| {
            find(s, trace, "GET", SpanKind::Client).is_some()
                && find(s, trace, "GET", SpanKind::Server).is_some()
                && find(s, &tunnel_trace, "CONNECT", SpanKind::Client).is_some()
                && find(s, &tunnel_trace, "CONNECT", SpanKind::Server).is_some()
        })
        .await;

        // HTTP: the caller's client span continues the incoming parent; the callee's server
        // span is its child, in the other workload.
        let client = find(&spans, trace, "GET", SpanKind::Client).unwrap();
        let server = find(&spans, trace, "GET", SpanKind::Server).unwrap();
        assert_eq!(client.service, "orders");
        assert_eq!(server.service, "inventory");
        assert_eq!(hex(&client.span.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(server.span.parent_span_id, client.span.span_id);
        assert_eq!(client.text("http.request.method"), Some("GET"));
        assert_eq!(client.text("url.path"), Some("/items"));
        assert_eq!(client.text("server.address"), Some(HOST));
        assert_eq!(client.int("http.response.status_code"), Some(200));
        assert_eq!(
            client.text("mesh.peer.principal"),
            Some(super::observe_support::INVENTORY)
        );
        assert_eq!(server.int("http.response.status_code"), Some(200));
        assert_eq!(server.text("mesh.peer.principal"), Some(ORDERS));
        assert_eq!(server.text("url.path"), Some("/items"));
        for s in [client, server] {
            assert!(s.span.end_time_unix_nano >= s.span.start_time_unix_nano);
            assert!(s.span.start_time_unix_nano > 0);
            let status = s.span.status.clone().unwrap_or_default();
            assert_eq!(status.code, StatusCode::Unset as i32, "{s:?}");
        }

        // The raw tunnel: CONNECT client span (child of the given parent) and the
        // destination's server span (child of the client span), with the bytes carried.
        let client = find(&spans, &tunnel_trace, "CONNECT", SpanKind::Client).unwrap();
        let server = find(&spans, &tunnel_trace, "CONNECT", SpanKind::Server).unwrap();
        assert_eq!(hex(&client.span.parent_span_id), "b7ad6b7169203331");
        assert_eq!(server.span.parent_span_id, client.span.span_id);
        assert_eq!(client.service, "orders");
        assert_eq!(server.service, "inventory");
        assert_eq!(client.text("server.address"), Some(HOST));
        assert_eq!(server.int("server.port"), Some(9000));
        assert_eq!(server.text("mesh.peer.principal"), Some(ORDERS));
        assert_eq!(server.int("mesh.bytes_received"), Some(4));
        assert_eq!(client.int("mesh.bytes_sent"), Some(4));

        // A collector that cannot be reached: the spans are counted as dropped.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let lost = caller(
            dir.path(),
            "reports",
            "spiffe://cluster.local/ns/shop/sa/reports",
            &hbone,
            &format!("telemetry: {{ otlp: {{ endpoint: \"http://{dead}\" }} }}"),
        )
        .await;
        let _ = get(&lost, "/items", Some(parent)).await;
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let text = lost.telemetry().encode_classic();
            let dropped = text
                .lines()
                .find_map(|l| l.strip_prefix("mesh_spans_dropped_total "))
                .map_or(0.0, |v| v.parse::<f64>().unwrap());
            if dropped >= 1.0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no dropped span counted:\n{text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        drop(orders);
        receiver_task.abort();
    }
}

#[cfg(not(feature = "otlp"))]
#[tokio::test]
async fn otlp_without_the_feature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "identity: {{ spiffe_id: {}, dev_ca: {{ dir: {} }} }}\ntelemetry: {{ otlp: {{ endpoint: \"http://127.0.0.1:4317\" }} }}\n",
        observe_support::ORDERS,
        dir.path().join("ca").display()
    );
    let error = mesh_client::mesh::Mesh::from_yaml(&yaml).await.unwrap_err();
    assert!(
        error.to_string().contains("`otlp` cargo feature"),
        "{error}"
    );
}

//! OTLP/gRPC span export (feature `otlp`): finished spans are queued without blocking and a
//! background task sends them to the collector in batches.
//!
//! The exporter builds OTLP messages itself (from `opentelemetry-proto`) rather than going
//! through an OpenTelemetry SDK tracer: the mesh already holds each span's exact W3C IDs (the
//! ones it put on the wire), which an SDK tracer would generate on its own.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, trace_service_client::TraceServiceClient},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status},
};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::spans::{AttrValue, SpanKind, SpanRecord, SpanSink};

/// Spans queued before new ones are dropped (the collector is slow or down).
const QUEUE: usize = 4096;
/// Most spans per export request.
const BATCH: usize = 512;
/// How long spans wait for a batch to fill.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Bound on one export call.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A span exporter to one collector. Dropping every handle flushes what is queued and stops.
pub(crate) struct OtlpExporter {
    tx: mpsc::Sender<SpanRecord>,
    dropped: Counter,
}

/// The exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp.endpoint {endpoint:?}: {reason}")]
pub(crate) struct OtlpError {
    endpoint: String,
    reason: String,
}

impl OtlpExporter {
    /// Starts exporting to `endpoint` (`http://host:port`) with `resource` attributes
    /// (`service.name`, ...). Connects lazily: a collector that is down delays nothing.
    /// Must be called inside a tokio runtime.
    /// Spans that cannot be exported are counted in `dropped`.
    pub(crate) fn start(
        endpoint: &str,
        resource: Vec<(&'static str, String)>,
        dropped: Counter,
    ) -> Result<Arc<Self>, OtlpError> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| OtlpError {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?
            .connect_timeout(EXPORT_TIMEOUT)
            .timeout(EXPORT_TIMEOUT)
            .connect_lazy();
        let (tx, rx) = mpsc::channel(QUEUE);
        let resource = Resource {
            attributes: resource
                .into_iter()
                .map(|(k, v)| key_value(k, &AttrValue::Str(v)))
                .collect(),
            ..Resource::default()
        };
        tokio::spawn(run(
            TraceServiceClient::new(channel),
            rx,
            resource,
            endpoint.to_owned(),
            dropped.clone(),
        ));
        Ok(Arc::new(Self { tx, dropped }))
    }
}

impl SpanSink for OtlpExporter {
    fn export(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }
}

async fn run(
    mut client: TraceServiceClient<tonic::transport::Channel>,
    mut rx: mpsc::Receiver<SpanRecord>,
    resource: Resource,
    endpoint: String,
    dropped: Counter,
) {
    let mut failing = false;
    loop {
        // Wait for a first span, then give the batch a moment to fill.
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        let mut closed = false;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "mesh-client".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    spans: batch.iter().map(to_proto).collect(),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        match client.export(request).await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!(%endpoint, "OTLP export works again");
            }
            Ok(_) => {}
            Err(status) => {
                dropped.inc_by(batch.len() as u64);
                if !failing {
                    tracing::warn!(%endpoint, error = %status, spans = batch.len(), "OTLP export failed; spans dropped");
                }
                failing = true;
            }
        }
        if closed {
            return;
        }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn key_value(key: &str, value: &AttrValue) -> KeyValue {
    let value = match value {
        AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn to_proto(record: &SpanRecord) -> Span {
    let span_start = &record.span;
    let (trace_id, span_id, parent, flags) = span_start.context.raw();
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        trace_state: span_start
            .context
            .tracestate()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        flags: u32::from(flags),
        name: span_start.name.clone(),
        kind: match span_start.kind {
            SpanKind::Client => span::SpanKind::Client,
            SpanKind::Server => span::SpanKind::Server,
        } as i32,
        start_time_unix_nano: unix_nanos(span_start.start),
        end_time_unix_nano: unix_nanos(record.end),
        attributes: span_start
            .attributes
            .iter()
            .map(|(k, v)| key_value(k, v))
            .collect(),
        status: Some(Status {
            code: if record.error {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
            ..Status::default()
        }),
        ..Span::default()
    }
}

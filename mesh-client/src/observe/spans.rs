//! Finished spans of requests and tunnels, handed to an exporter (OTLP, feature `otlp`).
//!
//! The data path keeps `tracing` spans for logs; what an exporter needs (exact W3C IDs, start
//! and end times, OpenTelemetry attributes, the outcome) is collected here instead, only when
//! an exporter is installed and the trace is sampled, and recorded when the request's response
//! ends or the tunnel closes.

// Without an exporter compiled in (feature `otlp`) nothing installs a sink and nothing reads a
// finished span.
#![cfg_attr(not(feature = "otlp"), allow(dead_code))]

use std::{sync::Arc, time::SystemTime};

use super::{Telemetry, TraceContext};

/// Whether a span is the calling or the called side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpanKind {
    Client,
    Server,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AttrValue {
    Str(String),
    Int(i64),
}

impl From<&str> for AttrValue {
    fn from(value: &str) -> Self {
        Self::Str(value.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(value: String) -> Self {
        Self::Str(value)
    }
}

impl From<i64> for AttrValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

/// A span being recorded.
#[derive(Debug)]
pub(crate) struct SpanStart {
    pub(crate) name: String,
    pub(crate) kind: SpanKind,
    pub(crate) context: TraceContext,
    pub(crate) start: SystemTime,
    pub(crate) attributes: Vec<(&'static str, AttrValue)>,
}

impl SpanStart {
    /// Adds an attribute.
    pub(crate) fn attr(&mut self, key: &'static str, value: impl Into<AttrValue>) {
        self.attributes.push((key, value.into()));
    }

    /// Ends the span now; `error` marks it failed (status ERROR).
    pub(crate) fn end(self, error: bool) -> SpanRecord {
        SpanRecord {
            end: SystemTime::now(),
            error,
            span: self,
        }
    }
}

/// A finished span.
#[derive(Debug)]
pub(crate) struct SpanRecord {
    pub(crate) span: SpanStart,
    pub(crate) end: SystemTime,
    pub(crate) error: bool,
}

/// Where finished spans go.
pub(crate) trait SpanSink: Send + Sync + 'static {
    /// Takes a finished span; must not block (queue it).
    fn export(&self, span: SpanRecord);
}

impl Telemetry {
    /// Installs the exporter spans are sent to (once; later calls are ignored).
    pub(crate) fn set_span_sink(&self, sink: Arc<dyn SpanSink>) {
        let _ = self.inner.spans.set(sink);
    }

    /// Starts a span of `context` when an exporter is installed and the trace is sampled.
    pub(crate) fn start_span(
        &self,
        name: impl Into<String>,
        kind: SpanKind,
        context: &TraceContext,
    ) -> Option<Box<SpanStart>> {
        (self.inner.spans.get().is_some() && context.is_sampled()).then(|| {
            Box::new(SpanStart {
                name: name.into(),
                kind,
                context: context.clone(),
                start: SystemTime::now(),
                attributes: Vec::with_capacity(8),
            })
        })
    }

    /// Counts spans that could not be exported (`mesh_spans_dropped_total`).
    pub(crate) fn spans_dropped(&self) -> prometheus_client::metrics::counter::Counter {
        self.inner.mesh.spans_dropped.clone()
    }

    /// Hands a finished span to the exporter.
    pub(crate) fn finish_span(&self, span: SpanRecord) {
        if let Some(sink) = self.inner.spans.get() {
            sink.export(span);
        }
    }
}

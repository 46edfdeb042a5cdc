//! Cheap recording on the data path: label sets resolved once per flow, metric handles cached
//! per outcome.
//!
//! A *flow* is everything about traffic except its outcome: reporter, protocol, the peer (its
//! SPIFFE ID and baggage) and the service. [`FlowCache`] interns flows by a hash of those
//! inputs, so finding a flow allocates nothing once it exists; [`FlowRecorder`] keeps the
//! counter and histogram handles of each outcome (status, gRPC status, flags) it has seen, so a
//! request costs a short read-locked scan plus the atomic updates themselves. The number of
//! flows is bounded: past [`MAX_FLOWS`] new flows are recorded under `unknown` labels and
//! counted in `mesh_metrics_label_overflow_total`.

use mesh_core::fast_hash::FastMap;
use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        Arc, OnceLock, PoisonError, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};

use super::{
    Telemetry,
    access_log::{AccessRecord, flags_text},
    families::IstioFamilies,
    flags::ResponseFlags,
    labels::{FlowLabels, Reporter, RequestLabels, RequestProtocol, TcpLabels},
    spans::{SpanKind, SpanStart},
    trace::TraceContext,
};

/// Most distinct flows kept per [`Telemetry`]; bounds the number of series.
pub const MAX_FLOWS: usize = 4096;

/// What identifies a flow, borrowed from the request (nothing is allocated to look one up).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowQuery<'a> {
    pub(crate) reporter: Reporter,
    pub(crate) protocol: RequestProtocol,
    pub(crate) service: &'a str,
    pub(crate) peer: Option<&'a str>,
    pub(crate) baggage: Option<&'a [u8]>,
}

impl FlowQuery<'_> {
    fn hash(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.reporter.hash(&mut hasher);
        self.protocol.hash(&mut hasher);
        self.service.hash(&mut hasher);
        self.peer.hash(&mut hasher);
        self.baggage.hash(&mut hasher);
        hasher.finish()
    }
}

/// The owned form of a [`FlowQuery`], kept to confirm hash matches.
#[derive(Debug)]
struct FlowKey {
    reporter: Reporter,
    protocol: RequestProtocol,
    service: Box<str>,
    peer: Option<Box<str>>,
    baggage: Option<Box<[u8]>>,
}

impl FlowKey {
    fn matches(&self, q: &FlowQuery<'_>) -> bool {
        self.reporter == q.reporter
            && self.protocol == q.protocol
            && &*self.service == q.service
            && self.peer.as_deref() == q.peer
            && self.baggage.as_deref() == q.baggage
    }
}

/// Flows whose inputs hash alike.
type Bucket = Vec<(FlowKey, Arc<FlowRecorder>)>;

/// Interned flows, bounded.
#[derive(Debug, Default)]
pub(crate) struct FlowCache {
    map: RwLock<FastMap<u64, Bucket>>,
    count: AtomicUsize,
    /// The catch-all flows per reporter and protocol once the limit is reached.
    overflow: [OnceLock<Arc<FlowRecorder>>; 6],
}

impl FlowCache {
    /// The flow for `query`, built by `make` (given whether the limit forced `unknown` labels)
    /// the first time.
    pub(crate) fn get(
        &self,
        query: &FlowQuery<'_>,
        make: impl FnOnce(bool) -> Arc<FlowRecorder>,
        overflowed: &Counter,
    ) -> Arc<FlowRecorder> {
        let hash = query.hash();
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = map
                .get(&hash)
                .and_then(|bucket| bucket.iter().find(|(k, _)| k.matches(query)))
            {
                return found.1.clone();
            }
        }
        if self.count.load(Ordering::Relaxed) >= MAX_FLOWS {
            overflowed.inc();
            let slot = match (query.reporter, query.protocol) {
                (Reporter::Source, RequestProtocol::Http) => 0,
                (Reporter::Source, RequestProtocol::Grpc) => 1,
                (Reporter::Source, RequestProtocol::Tcp) => 2,
                (Reporter::Destination, RequestProtocol::Http) => 3,
                (Reporter::Destination, RequestProtocol::Grpc) => 4,
                (Reporter::Destination, RequestProtocol::Tcp) => 5,
            };
            return self.overflow[slot].get_or_init(|| make(true)).clone();
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let bucket = map.entry(hash).or_default();
        if let Some(found) = bucket.iter().find(|(k, _)| k.matches(query)) {
            return found.1.clone();
        }
        let flow = make(false);
        bucket.push((
            FlowKey {
                reporter: query.reporter,
                protocol: query.protocol,
                service: query.service.into(),
                peer: query.peer.map(Into::into),
                baggage: query.baggage.map(Into::into),
            },
            flow.clone(),
        ));
        self.count.fetch_add(1, Ordering::Relaxed);
        flow
    }

    /// Flows interned so far.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// How one request ended, as the labels see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) code: u16,
    pub(crate) grpc: Option<u8>,
    pub(crate) flags: ResponseFlags,
}

#[derive(Debug)]
struct RequestHandles {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

#[derive(Debug)]
struct TcpHandles {
    opened: Counter,
    sent: Counter,
    received: Counter,
}

/// The metric handles of one flow.
#[derive(Debug)]
pub(crate) struct FlowRecorder {
    labels: Arc<FlowLabels>,
    families: Arc<IstioFamilies>,
    /// Off when `telemetry.metrics` is false (access logs may still be on).
    enabled: bool,
    outcomes: RwLock<Vec<(Outcome, RequestHandles)>>,
    tcp: OnceLock<TcpHandles>,
    closed: RwLock<Vec<(ResponseFlags, Counter)>>,
}

impl FlowRecorder {
    pub(crate) fn new(labels: FlowLabels, families: Arc<IstioFamilies>, enabled: bool) -> Self {
        Self {
            labels: Arc::new(labels),
            families,
            enabled,
            outcomes: RwLock::new(Vec::new()),
            tcp: OnceLock::new(),
            closed: RwLock::new(Vec::new()),
        }
    }

    /// The flow's labels.
    pub(crate) fn labels(&self) -> &FlowLabels {
        &self.labels
    }

    /// Records one finished request.
    pub(crate) fn request(
        &self,
        outcome: Outcome,
        duration: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        if !self.enabled {
            return;
        }
        let millis = duration.as_secs_f64() * 1000.0;
        let record = |h: &RequestHandles| {
            h.requests.inc();
            h.duration.observe(millis);
            h.request_bytes.observe(request_bytes as f64);
            h.response_bytes.observe(response_bytes as f64);
        };
        {
            let outcomes = self.outcomes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, handles)) = outcomes.iter().find(|(o, _)| *o == outcome) {
                record(handles);
                return;
            }
        }
        let mut outcomes = self
            .outcomes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !outcomes.iter().any(|(o, _)| *o == outcome) {
            let labels = RequestLabels {
                flow: self.labels.clone(),
                response_code: outcome.code,
                grpc_status: outcome.grpc,
                flags: outcome.flags,
            };
            let f = &self.families;
            outcomes.push((
                outcome,
                RequestHandles {
                    requests: f.requests.get_or_create_owned(&labels),
                    duration: f.duration.get_or_create_owned(&labels),
                    request_bytes: f.request_bytes.get_or_create_owned(&labels),
                    response_bytes: f.response_bytes.get_or_create_owned(&labels),
                },
            ));
        }
        if let Some((_, handles)) = outcomes.iter().find(|(o, _)| *o == outcome) {
            record(handles);
        }
    }

    fn tcp(&self) -> &TcpHandles {
        self.tcp.get_or_init(|| {
            let labels = TcpLabels {
                flow: self.labels.clone(),
                flags: ResponseFlags::NONE,
            };
            let f = &self.families;
            TcpHandles {
                opened: f.tcp_opened.get_or_create_owned(&labels),
                sent: f.tcp_sent.get_or_create_owned(&labels),
                received: f.tcp_received.get_or_create_owned(&labels),
            }
        })
    }

    fn tcp_closed(&self, flags: ResponseFlags) {
        {
            let closed = self.closed.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, counter)) = closed.iter().find(|(f, _)| *f == flags) {
                counter.inc();
                return;
            }
        }
        let counter = self.families.tcp_closed.get_or_create_owned(&TcpLabels {
            flow: self.labels.clone(),
            flags,
        });
        counter.inc();
        self.closed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((flags, counter));
    }
}

/// Meters one tunnel: counts it opened now and closed when dropped, and its bytes as they
/// flow. Reads and writes are mapped to Istio's downstream-relative `received`/`sent`.
#[derive(Debug)]
pub(crate) struct TunnelMeter {
    flow: Arc<FlowRecorder>,
    counters: Option<(Counter, Counter)>,
    /// Inbound: reads come from the downstream (received). Outbound: writes do.
    reads_received: bool,
    received: u64,
    sent: u64,
    started: Instant,
    flags: ResponseFlags,
    /// Access log details (only when access logging is on).
    log: Option<(Telemetry, Box<AccessRecord>)>,
    /// The tunnel's span (only when spans are exported and the trace is sampled).
    span: Option<(Telemetry, Box<SpanStart>)>,
}

impl TunnelMeter {
    /// Opens a meter on `flow`; `record` is kept for the access log line written at close.
    pub(crate) fn open(
        flow: Arc<FlowRecorder>,
        telemetry: &Telemetry,
        record: Option<AccessRecord>,
    ) -> Self {
        let counters = flow.enabled.then(|| {
            let tcp = flow.tcp();
            tcp.opened.inc();
            (tcp.received.clone(), tcp.sent.clone())
        });
        let reads_received = flow.labels.reporter == Reporter::Destination;
        Self {
            flow,
            counters,
            reads_received,
            received: 0,
            sent: 0,
            started: Instant::now(),
            flags: ResponseFlags::NONE,
            log: record.map(|mut r| {
                r.started = Some(SystemTime::now());
                (telemetry.clone(), Box::new(r))
            }),
            span: None,
        }
    }

    /// Records the tunnel as a span of `context` (`CONNECT`, the client's or the server's
    /// side), with `attributes`, when spans are exported.
    pub(crate) fn with_span(
        mut self,
        telemetry: &Telemetry,
        kind: SpanKind,
        context: &TraceContext,
        attributes: impl FnOnce(&mut SpanStart),
    ) -> Self {
        self.span = telemetry
            .start_span("CONNECT", kind, context)
            .map(|mut span| {
                attributes(&mut span);
                (telemetry.clone(), span)
            });
        self
    }

    /// `n` bytes were read from the tunnel.
    pub(crate) fn read(&mut self, n: usize) {
        self.count(self.reads_received, n);
    }

    /// `n` bytes were written to the tunnel.
    pub(crate) fn wrote(&mut self, n: usize) {
        self.count(!self.reads_received, n);
    }

    fn count(&mut self, received: bool, n: usize) {
        let n = n as u64;
        if received {
            self.received += n;
        } else {
            self.sent += n;
        }
        if let Some((rx, tx)) = &self.counters {
            if received { rx } else { tx }.inc_by(n);
        }
    }

    /// The tunnel was reset by the other side.
    pub(crate) fn reset_by_peer(&mut self) {
        self.flags |= match self.flow.labels.reporter {
            Reporter::Destination => ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION,
            Reporter::Source => ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
        };
    }
}

impl Drop for TunnelMeter {
    fn drop(&mut self) {
        if let Some((telemetry, mut span)) = self.span.take() {
            span.attr("mesh.bytes_received", self.received as i64);
            span.attr("mesh.bytes_sent", self.sent as i64);
            if self.flags != ResponseFlags::NONE {
                span.attr("mesh.response_flags", flags_text(self.flags));
            }
            telemetry.finish_span(span.end(self.flags != ResponseFlags::NONE));
        }
        if self.counters.is_some() {
            self.flow.tcp_closed(self.flags);
        }
        if let Some((telemetry, mut record)) = self.log.take() {
            record.duration = self.started.elapsed().as_millis() as u64;
            record.bytes_received = self.received;
            record.bytes_sent = self.sent;
            record.response_flags = flags_text(self.flags);
            telemetry.log(*record);
        }
    }
}

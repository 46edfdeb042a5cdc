//! W3C Trace Context (`traceparent`, `tracestate`) and `baggage`: parsed from requests,
//! continued as child spans, and written to outgoing requests and HBONE CONNECTs.
//!
//! The mesh does what Envoy does for its own hop: an outbound request that carries a
//! `traceparent` continues that trace with a new span ID for the client span; one that carries
//! none starts a new, sampled trace. `tracestate` and `baggage` travel unchanged. Inbound
//! requests get a [`TraceContext`] in their extensions (the server span: a child of the
//! caller's span), so handlers can log the trace ID and pass the context on with
//! [`TraceContext::inject`] when they call further services.
//!
//! Raw tunnels carry the same context on their CONNECT: [`Mesh::connect`](crate::mesh::Mesh::connect)
//! continues the context in scope ([`TraceContext::scope`], [`TraceContext::current`]) or the one
//! given to [`Mesh::connect_with_trace`](crate::mesh::Mesh::connect_with_trace) with a client
//! span, sending `traceparent`, `tracestate` and the application's `baggage` entries (after the
//! workload's own, which the destination reads for its metric labels); the destination's server
//! span ([`InboundTunnel::trace`](crate::hbone::InboundTunnel::trace)) continues it. Inside
//! [`TraceContext::scope`] the HTTP client also continues the scoped context when a request
//! carries none of its own.

use std::{cell::Cell, fmt};

use http::{HeaderMap, HeaderName, HeaderValue};
use mesh_core::rng::{Rng, SplitMix64};

/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `baggage`.
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// One span's position in a W3C trace, plus the vendor state and baggage that travel with it.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    flags: u8,
    tracestate: Option<HeaderValue>,
    baggage: Option<HeaderValue>,
}

thread_local! {
    static IDS: Cell<Option<SplitMix64>> = const { Cell::new(None) };
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Random bytes for IDs: uniqueness matters, secrecy does not, so a per-thread generator seeded
/// from the OS is enough (and costs no system call per request).
fn random_u64() -> u64 {
    IDS.with(|cell| {
        let mut rng = cell.take().unwrap_or_else(SplitMix64::from_entropy);
        let value = rng.next_u64();
        cell.set(Some(rng));
        value
    })
}

fn nonzero_span_id() -> [u8; 8] {
    loop {
        let id = random_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text.get(i * 2..i * 2 + 2)?;
        // Lowercase only, as the specification requires.
        if pair.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

impl TraceContext {
    /// A new trace: random trace and span IDs, sampled.
    pub fn new_root() -> Self {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&random_u64().to_be_bytes());
        trace_id[8..].copy_from_slice(&nonzero_span_id());
        Self {
            trace_id,
            span_id: nonzero_span_id(),
            parent_id: None,
            flags: 1,
            tracestate: None,
            baggage: None,
        }
    }

    /// Parses a `traceparent` value. Version `00` must be exactly four fields; later versions
    /// are read by their first four fields, as the specification asks. Invalid values
    /// (all-zero IDs, version `ff`, uppercase hex, wrong lengths) give `None`.
    pub fn parse_traceparent(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut fields = value.split('-');
        let version = parse_hex::<1>(fields.next()?)?[0];
        let trace_id = parse_hex::<16>(fields.next()?)?;
        let span_id = parse_hex::<8>(fields.next()?)?;
        let flags = parse_hex::<1>(fields.next()?)?[0];
        let extra = fields.next();
        if version == 0xff || (version == 0 && extra.is_some()) {
            return None;
        }
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            parent_id: None,
            flags: if version == 0 { flags } else { flags & 1 },
            tracestate: None,
            baggage: None,
        })
    }

    /// The context a request carries (`traceparent`, with its `tracestate` and `baggage`), or
    /// `None` when it has no valid `traceparent`.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut context = Self::parse_traceparent(headers.get(TRACEPARENT)?.to_str().ok()?)?;
        context.tracestate = headers.get(TRACESTATE).cloned();
        context.baggage = headers.get(BAGGAGE).cloned();
        Some(context)
    }

    /// A span continuing this one: same trace, flags, state and baggage; a new span ID whose
    /// parent is this span.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_span_id(),
            parent_id: Some(self.span_id),
            ..self.clone()
        }
    }

    /// Runs `future` with this context as the [`current`](Self::current) one: tunnels opened
    /// and HTTP requests sent without a `traceparent` of their own inside it continue this
    /// trace. An inbound handler wraps its work in its request's or tunnel's context:
    ///
    /// ```no_run
    /// # async fn demo(mesh: mesh_client::mesh::Mesh, tunnel: mesh_client::hbone::InboundTunnel)
    /// # -> Result<(), mesh_client::mesh::MeshError> {
    /// let upstream = tunnel
    ///     .trace
    ///     .clone()
    ///     .scope(mesh.connect("inventory.shop.svc.cluster.local:9000"))
    ///     .await?;
    /// # drop(upstream); Ok(()) }
    /// ```
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// The context of the enclosing [`scope`](Self::scope), if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The trace ID as 32 lowercase hex digits (what Jaeger and access logs show).
    pub fn trace_id(&self) -> String {
        let mut out = String::with_capacity(32);
        hex(&self.trace_id, &mut out);
        out
    }

    /// The raw IDs and flags (trace, span, parent span, flags), for exporters.
    #[cfg(feature = "otlp")]
    pub(crate) fn raw(&self) -> ([u8; 16], [u8; 8], Option<[u8; 8]>, u8) {
        (self.trace_id, self.span_id, self.parent_id, self.flags)
    }

    /// This span's ID as 16 hex digits.
    pub fn span_id(&self) -> String {
        let mut out = String::with_capacity(16);
        hex(&self.span_id, &mut out);
        out
    }

    /// The parent span's ID, when this span continues another.
    pub fn parent_span_id(&self) -> Option<String> {
        self.parent_id.map(|id| {
            let mut out = String::with_capacity(16);
            hex(&id, &mut out);
            out
        })
    }

    /// Whether the trace is sampled (flag `01`).
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `tracestate` carried along, if any.
    pub fn tracestate(&self) -> Option<&HeaderValue> {
        self.tracestate.as_ref()
    }

    /// The `baggage` carried along, if any.
    pub fn baggage(&self) -> Option<&HeaderValue> {
        self.baggage.as_ref()
    }

    /// The `traceparent` value naming this span: `00-<trace>-<span>-<flags>`.
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        hex(&self.trace_id, &mut out);
        out.push('-');
        hex(&self.span_id, &mut out);
        out.push('-');
        hex(&[self.flags], &mut out);
        out
    }

    /// Writes `traceparent` (this span as the parent of whatever receives the headers), and
    /// the `tracestate` and `baggage` carried, replacing earlier values.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.traceparent()) {
            headers.insert(TRACEPARENT, value);
        }
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE, state.clone());
        }
        if let Some(baggage) = &self.baggage {
            headers.insert(BAGGAGE, baggage.clone());
        }
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.traceparent())
            .field("parent_span_id", &self.parent_span_id())
            .finish_non_exhaustive()
    }
}

/// Continues the trace of an outbound request in place: a child of the request's own
/// `traceparent`, or a new root when it has none. Returns the client span's context.
pub(crate) fn continue_outbound(headers: &mut HeaderMap) -> TraceContext {
    if let Some(parent) = TraceContext::from_headers(headers) {
        let context = parent.child();
        if let Ok(value) = HeaderValue::from_str(&context.traceparent()) {
            headers.insert(TRACEPARENT, value);
        }
        return context;
    }
    // No context of its own: the scoped one's child (with its state and baggage), else a root.
    let context = TraceContext::current()
        .map(|parent| parent.child())
        .unwrap_or_else(TraceContext::new_root);
    context.inject(headers);
    context
}

/// The client span of a raw tunnel: a child of `parent`, else of the scoped context, else a
/// new root.
pub(crate) fn continue_tunnel(parent: Option<&TraceContext>) -> TraceContext {
    match parent {
        Some(parent) => parent.child(),
        None => TraceContext::current()
            .map(|parent| parent.child())
            .unwrap_or_else(TraceContext::new_root),
    }
}

/// The baggage keys ztunnel exchanges as peer metadata (what the metric labels read).
fn is_metadata_key(key: &str) -> bool {
    key.starts_with("k8s.") || key == "service.name" || key == "service.version"
}

/// The key of one `baggage` list member.
fn baggage_key(item: &str) -> &str {
    item.split_once('=').map_or("", |(k, _)| k.trim())
}

/// The peer-metadata entries of a `baggage` value, without application entries, so that
/// metric flows are keyed by the workload and not by whatever the application carries. Borrows
/// (allocates nothing) when the value holds metadata only.
pub(crate) fn metadata_baggage(value: &HeaderValue) -> std::borrow::Cow<'_, HeaderValue> {
    use std::borrow::Cow;
    let Ok(text) = value.to_str() else {
        return Cow::Borrowed(value);
    };
    if text
        .split(',')
        .all(|item| is_metadata_key(baggage_key(item)))
    {
        return Cow::Borrowed(value);
    }
    let kept: Vec<&str> = text
        .split(',')
        .filter(|item| is_metadata_key(baggage_key(item)))
        .map(str::trim)
        .collect();
    Cow::Owned(HeaderValue::from_str(&kept.join(",")).unwrap_or_else(|_| value.clone()))
}

/// `workload` baggage (peer metadata) followed by the entries of `application` baggage whose
/// keys it does not have: one `baggage` header for the CONNECT.
pub(crate) fn merge_baggage(
    workload: Option<&str>,
    application: Option<&HeaderValue>,
) -> Option<String> {
    let application = application
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.trim().is_empty());
    match (workload, application) {
        (w, None) => w.map(str::to_owned),
        (None, Some(a)) => Some(a.trim().to_owned()),
        (Some(w), Some(a)) => {
            let taken: Vec<&str> = w
                .split(',')
                .filter_map(|item| item.split_once('=').map(|(k, _)| k.trim()))
                .collect();
            let mut out = w.to_owned();
            for item in a.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let key = item.split_once('=').map_or(item, |(k, _)| k.trim());
                if !taken.contains(&key) {
                    out.push(',');
                    out.push_str(item);
                }
            }
            Some(out)
        }
    }
}

/// The server span of an inbound request: a child of the request's `traceparent`, else of the
/// tunnel's (the CONNECT's), else a new root.
pub(crate) fn continue_inbound(headers: &HeaderMap, tunnel: Option<&TraceContext>) -> TraceContext {
    match TraceContext::from_headers(headers) {
        Some(parent) => parent.child(),
        None => match tunnel {
            Some(parent) => parent.child(),
            None => TraceContext::new_root(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_renders_the_specification_example() {
        let context = TraceContext::parse_traceparent(EXAMPLE).unwrap();
        assert_eq!(context.traceparent(), EXAMPLE);
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id(), "00f067aa0ba902b7");
        assert!(context.is_sampled());
    }

    #[test]
    fn refuses_invalid_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse_traceparent(bad).is_none(), "{bad}");
        }
        // A future version with more fields is read by its first four.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-xyz";
        let context = TraceContext::parse_traceparent(future).unwrap();
        assert_eq!(context.traceparent(), EXAMPLE);
    }

    #[test]
    fn children_keep_the_trace_and_carry_state_and_baggage() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(EXAMPLE));
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=opaque"));
        headers.insert(BAGGAGE, HeaderValue::from_static("user=alice"));
        let client = continue_outbound(&mut headers);
        assert_eq!(client.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(client.span_id(), "00f067aa0ba902b7");
        assert_eq!(client.parent_span_id().as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(headers[TRACEPARENT], client.traceparent().as_str());
        assert_eq!(headers[TRACESTATE], "vendor=opaque");

        let server = continue_inbound(&headers, None);
        assert_eq!(server.trace_id(), client.trace_id());
        assert_eq!(server.parent_span_id(), Some(client.span_id()));
        assert_eq!(server.baggage().unwrap(), "user=alice");

        let mut onward = HeaderMap::new();
        server.inject(&mut onward);
        assert_eq!(onward[TRACESTATE], "vendor=opaque");
        assert_eq!(onward[BAGGAGE], "user=alice");
        assert!(
            onward[TRACEPARENT]
                .to_str()
                .unwrap()
                .contains(&server.span_id())
        );
    }

    #[test]
    fn scoped_context_is_continued_by_requests_without_their_own() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let parent = TraceContext::parse_traceparent(EXAMPLE).unwrap();
        rt.block_on(parent.clone().scope(async {
            assert_eq!(
                TraceContext::current().unwrap().span_id(),
                "00f067aa0ba902b7"
            );
            let mut headers = HeaderMap::new();
            let client = continue_outbound(&mut headers);
            assert_eq!(client.trace_id(), parent.trace_id());
            assert_eq!(client.parent_span_id().as_deref(), Some("00f067aa0ba902b7"));
            assert_eq!(headers[TRACEPARENT], client.traceparent().as_str());
            let tunnel = continue_tunnel(None);
            assert_eq!(tunnel.trace_id(), parent.trace_id());
            // An explicit parent wins over the scope.
            let other = TraceContext::new_root();
            assert_eq!(continue_tunnel(Some(&other)).trace_id(), other.trace_id());
        }));
        assert!(TraceContext::current().is_none());
        assert!(continue_tunnel(None).parent_span_id().is_none());
    }

    #[test]
    fn baggage_is_merged_for_the_connect_and_filtered_for_metrics() {
        let app = HeaderValue::from_static("user=alice, service.name=spoofed");
        let merged = merge_baggage(
            Some("k8s.namespace.name=shop,service.name=orders"),
            Some(&app),
        );
        assert_eq!(
            merged.as_deref(),
            Some("k8s.namespace.name=shop,service.name=orders,user=alice")
        );
        assert_eq!(
            merge_baggage(None, Some(&app)).as_deref(),
            Some("user=alice, service.name=spoofed")
        );
        assert_eq!(merge_baggage(Some("a=1"), None).as_deref(), Some("a=1"));
        let value = HeaderValue::from_str(merged.as_deref().unwrap()).unwrap();
        assert_eq!(
            metadata_baggage(&value).as_ref(),
            "k8s.namespace.name=shop,service.name=orders"
        );
        let plain = HeaderValue::from_static("k8s.namespace.name=shop");
        assert!(matches!(
            metadata_baggage(&plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn requests_without_context_start_sampled_roots() {
        let mut headers = HeaderMap::new();
        let root = continue_outbound(&mut headers);
        assert!(root.is_sampled());
        assert!(root.parent_span_id().is_none());
        let parsed = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(parsed.trace_id(), root.trace_id());
        assert_ne!(
            TraceContext::new_root().trace_id(),
            TraceContext::new_root().trace_id()
        );
        // The tunnel's context is used when the request has none.
        let tunnel = TraceContext::new_root();
        let server = continue_inbound(&HeaderMap::new(), Some(&tunnel));
        assert_eq!(server.trace_id(), tunnel.trace_id());
    }
}

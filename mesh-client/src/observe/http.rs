//! Recording HTTP requests: inbound per request served inside a tunnel (until the response
//! body's last byte), outbound per logical request of the resilient client (retries included).

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use hyper::body::{Body, Frame, SizeHint};
use mesh_core::SpiffeId;

use super::{
    AccessRecord, FlowRecorder, Outcome, Reporter, RequestProtocol, ResponseFlags, Telemetry,
    TraceContext,
    access_log::flags_text,
    spans::{SpanKind, SpanStart},
    trace,
};

/// A note a policy answer carries in its extensions, for the access log's `authz` field.
#[derive(Clone, Debug)]
pub(crate) struct PolicyNote(pub(crate) String);

/// The bytes a request body will have, when known up front.
fn body_len<B: Body>(headers: &HeaderMap, body: &B) -> u64 {
    body.size_hint().exact().unwrap_or_else(|| {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect())
}

fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The authority a request was sent to, without the port.
fn authority<B>(request: &Request<B>) -> &str {
    request
        .uri()
        .authority()
        .map(|a| a.host())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host))
        })
        .unwrap_or_default()
}

fn version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// A flow with the host and protocol it was resolved for.
type LastFlow = (Box<str>, RequestProtocol, Arc<FlowRecorder>);

/// What one tunnel's HTTP requests share: the peer and the telemetry to record into.
pub(crate) struct InboundHttp {
    telemetry: Telemetry,
    /// `None` for a plaintext peer (admitted by a PERMISSIVE or DISABLE PeerAuthentication).
    peer: Option<SpiffeId>,
    peer_addr: SocketAddr,
    baggage: Option<HeaderValue>,
    tunnel_trace: Option<TraceContext>,
    /// The last flow used, by host and protocol (a tunnel's requests usually share it).
    last: Mutex<Option<LastFlow>>,
}

impl InboundHttp {
    /// The context of a tunnel from `peer` whose CONNECT carried `headers`.
    pub(crate) fn new(
        telemetry: Telemetry,
        peer: Option<SpiffeId>,
        peer_addr: SocketAddr,
        headers: &HeaderMap,
    ) -> Self {
        Self {
            telemetry,
            peer,
            peer_addr,
            // Metric flows are keyed by the peer's metadata, not the application's entries.
            baggage: headers
                .get(trace::BAGGAGE)
                .map(|b| trace::metadata_baggage(b).into_owned()),
            tunnel_trace: TraceContext::from_headers(headers),
            last: Mutex::new(None),
        }
    }

    fn flow(&self, host: &str, protocol: RequestProtocol) -> Arc<FlowRecorder> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((h, p, flow)) = last.as_ref()
            && &**h == host
            && *p == protocol
        {
            return flow.clone();
        }
        let flow = self.telemetry.flow(
            Reporter::Destination,
            protocol,
            host,
            self.peer.as_ref(),
            self.baggage.as_ref(),
        );
        *last = Some((host.into(), protocol, flow.clone()));
        flow
    }

    /// Starts recording `request`: resolves its flow, continues its trace (inserting the
    /// server span's [`TraceContext`] into its extensions) and notes what the access log needs.
    pub(crate) fn begin<B: Body>(&self, request: &mut Request<B>) -> InboundProbe {
        let started = Instant::now();
        let protocol =
            RequestProtocol::of_content_type(request.headers().get(header::CONTENT_TYPE));
        let flow = self.flow(authority(request), protocol);
        let context = trace::continue_inbound(request.headers(), self.tunnel_trace.as_ref());
        let record = self.telemetry.access_log_enabled().then(|| {
            Box::new(AccessRecord {
                started: Some(SystemTime::now()),
                direction: "inbound",
                method: request.method().as_str().to_owned(),
                path: request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned()),
                protocol: version_name(request.version()),
                authority: Some(authority(request).to_owned()),
                downstream_remote_address: Some(self.peer_addr),
                downstream_peer_principal: self.peer.as_ref().map(|p| p.as_str().to_owned()),
                trace_id: Some(context.trace_id()),
                user_agent: header_text(request.headers(), header::USER_AGENT),
                request_id: header_text(
                    request.headers(),
                    header::HeaderName::from_static("x-request-id"),
                ),
                ..AccessRecord::default()
            })
        });
        let request_bytes = body_len(request.headers(), request.body());
        let span = self
            .telemetry
            .start_span(request.method().as_str(), SpanKind::Server, &context)
            .map(|mut span| {
                span.attr("http.request.method", request.method().as_str());
                span.attr("url.path", request.uri().path());
                span.attr("server.address", authority(request));
                span.attr("client.address", self.peer_addr.ip().to_string());
                span.attr("client.port", i64::from(self.peer_addr.port()));
                if let Some(peer) = &self.peer {
                    span.attr("mesh.peer.principal", peer.as_str());
                }
                span
            });
        request.extensions_mut().insert(context);
        InboundProbe(Box::new(Probe {
            telemetry: self.telemetry.clone(),
            flow,
            started,
            request_bytes,
            response_bytes: 0,
            code: 0,
            grpc: None,
            flags: ResponseFlags::NONE,
            record,
            span,
        }))
    }
}

/// A request being recorded; finished when its response body ends (or is dropped).
pub(crate) struct InboundProbe(Box<Probe>);

struct Probe {
    telemetry: Telemetry,
    flow: Arc<FlowRecorder>,
    started: Instant,
    request_bytes: u64,
    response_bytes: u64,
    code: u16,
    grpc: Option<u8>,
    flags: ResponseFlags,
    record: Option<Box<AccessRecord>>,
    span: Option<Box<SpanStart>>,
}

/// Ends an HTTP span with the outcome (status >= 500, no response, or a flag: an error).
fn end_span(telemetry: &Telemetry, mut span: SpanStart, code: u16, flags: ResponseFlags) {
    if code != 0 {
        span.attr("http.response.status_code", i64::from(code));
    }
    if flags != ResponseFlags::NONE {
        span.attr("mesh.response_flags", flags_text(flags));
    }
    let error = code == 0 || code >= 500 || flags != ResponseFlags::NONE;
    telemetry.finish_span(span.end(error));
}

impl Probe {
    fn finish(self) {
        if let Some(span) = self.span {
            end_span(&self.telemetry, *span, self.code, self.flags);
        }
        let duration = self.started.elapsed();
        let grpc = match self.flow.labels().protocol {
            RequestProtocol::Grpc => self.grpc,
            _ => None,
        };
        let outcome = Outcome {
            code: self.code,
            grpc,
            flags: self.flags,
        };
        self.flow
            .request(outcome, duration, self.request_bytes, self.response_bytes);
        if let Some(mut record) = self.record {
            record.duration = duration.as_millis() as u64;
            record.response_code = self.code;
            record.response_flags = flags_text(self.flags);
            record.bytes_received = self.request_bytes;
            record.bytes_sent = self.response_bytes;
            self.telemetry.log(*record);
        }
    }
}

impl InboundProbe {
    /// Attaches the probe to the response: the request is recorded when its body ends.
    pub(crate) fn respond<B>(mut self, response: Response<B>) -> Response<RecordedBody<B>> {
        let probe = &mut self.0;
        probe.code = response.status().as_u16();
        probe.grpc = grpc_status(response.headers());
        if let Some(flags) = response.extensions().get::<ResponseFlags>() {
            probe.flags |= *flags;
        }
        if let (Some(note), Some(record)) = (
            response.extensions().get::<PolicyNote>(),
            probe.record.as_mut(),
        ) {
            record.authz = Some(note.0.clone());
        }
        response.map(|inner| RecordedBody {
            inner,
            probe: Some(self.0),
        })
    }
}

/// A response body that records its request when it ends.
pub(crate) struct RecordedBody<B> {
    inner: B,
    probe: Option<Box<Probe>>,
}

impl<B> RecordedBody<B> {
    /// A body recording nothing (telemetry off).
    pub(crate) fn plain(inner: B) -> Self {
        Self { inner, probe: None }
    }
}

impl<B> Body for RecordedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let mut ended = false;
        if let Some(probe) = this.probe.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        probe.response_bytes += data.len() as u64;
                        // hyper may not poll again once the body says it has ended.
                        ended = this.inner.is_end_stream();
                    } else if let Some(trailers) = frame.trailers_ref()
                        && let Some(status) = grpc_status(trailers)
                    {
                        probe.grpc = Some(status);
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    probe.flags |= ResponseFlags::UPSTREAM_CONNECTION_TERMINATION;
                    ended = true;
                }
                Poll::Ready(None) => ended = true,
                Poll::Pending => {}
            }
        }
        if ended && let Some(probe) = this.probe.take() {
            (*probe).finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for RecordedBody<B> {
    fn drop(&mut self) {
        if let Some(mut probe) = self.probe.take() {
            // hyper drops bodies it never needed to poll (HEAD, 204, 304, empty bodies) and
            // bodies whose client went away mid-response: only the latter is flagged (a body
            // that delivered its end was finished in `poll_frame`).
            if probe.response_bytes > 0 {
                probe.flags |= ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;
            }
            (*probe).finish();
        }
    }
}

/// One outbound request through the resilient client, from first attempt to answer.
pub(crate) struct OutboundProbe {
    telemetry: Telemetry,
    started: Instant,
    protocol: RequestProtocol,
    request_bytes: u64,
    record: Option<Box<AccessRecord>>,
    span: Option<Box<SpanStart>>,
}

impl OutboundProbe {
    /// Starts recording: continues (or starts) the request's trace in its headers.
    pub(crate) fn begin(telemetry: &Telemetry, request: &mut Request<Bytes>) -> Self {
        let started = Instant::now();
        let context = trace::continue_outbound(request.headers_mut());
        let protocol =
            RequestProtocol::of_content_type(request.headers().get(header::CONTENT_TYPE));
        let record = telemetry.access_log_enabled().then(|| {
            Box::new(AccessRecord {
                started: Some(SystemTime::now()),
                direction: "outbound",
                method: request.method().as_str().to_owned(),
                path: request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned()),
                protocol: version_name(request.version()),
                authority: Some(authority(request).to_owned()),
                trace_id: Some(context.trace_id()),
                user_agent: header_text(request.headers(), header::USER_AGENT),
                ..AccessRecord::default()
            })
        });
        let span = telemetry
            .start_span(request.method().as_str(), SpanKind::Client, &context)
            .map(|mut span| {
                span.attr("http.request.method", request.method().as_str());
                span.attr("url.path", request.uri().path());
                span
            });
        Self {
            telemetry: telemetry.clone(),
            started,
            protocol,
            request_bytes: request.body().len() as u64,
            record,
            span,
        }
    }

    /// Records the answer to a request for `service`: its status and the upstream's
    /// identity, or the failure as Envoy would flag it (`code` 0 records nothing).
    pub(crate) fn finish<B: Body>(
        self,
        service: &str,
        answer: Result<&Response<B>, (u16, ResponseFlags)>,
    ) {
        let duration = self.started.elapsed();
        let (code, flags, grpc, upstream, response_bytes) = match answer {
            Ok(response) => (
                response.status().as_u16(),
                ResponseFlags::NONE,
                grpc_status(response.headers()),
                response.extensions().get::<crate::http::UpstreamInfo>(),
                body_len(response.headers(), response.body()),
            ),
            Err((code, flags)) => (code, flags, None, None, 0),
        };
        let peer = upstream.as_ref().and_then(|u| u.peer.as_ref());
        if let Some(mut span) = self.span {
            span.attr("server.address", service);
            if let Some(upstream) = &upstream {
                span.attr("network.peer.address", upstream.endpoint.ip().to_string());
                span.attr("network.peer.port", i64::from(upstream.endpoint.port()));
            }
            if let Some(peer) = peer {
                span.attr("mesh.peer.principal", peer.as_str());
            }
            end_span(&self.telemetry, *span, code, flags);
        }
        if code == 0 {
            return;
        }
        let baggage = upstream.as_ref().and_then(|u| u.peer_baggage.as_ref());
        let flow = self
            .telemetry
            .flow(Reporter::Source, self.protocol, service, peer, baggage);
        let grpc = (self.protocol == RequestProtocol::Grpc)
            .then_some(grpc)
            .flatten();
        flow.request(
            Outcome { code, grpc, flags },
            duration,
            self.request_bytes,
            response_bytes,
        );
        if let Some(mut record) = self.record {
            record.duration = duration.as_millis() as u64;
            record.response_code = code;
            record.response_flags = flags_text(flags);
            record.bytes_sent = response_bytes;
            record.bytes_received = self.request_bytes;
            record.upstream_cluster = Some(service.to_owned());
            record.upstream_host = upstream.as_ref().map(|u| u.endpoint);
            record.upstream_peer_principal = peer.map(|p| p.as_str().to_owned());
            self.telemetry.log(*record);
        }
    }
}

//! One inbound CONNECT: validate, authorize, reach the target, answer, then carry bytes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use mesh_core::SpiffeId;
use tracing::Instrument;

use super::{
    Delivery, ForwardTo, InboundRequest, InboundTunnel, Shared, Verdict, connection::TunnelGuard,
};
use crate::{hbone::H2Stream, net, observe::ResponseFlags};

/// Buffer size for each direction of a forwarded tunnel; large enough for h2's big DATA frames.
const COPY_BUFFER: usize = 64 * 1024;

/// Facts about the connection a stream arrived on.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SpiffeId,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) local_addr: SocketAddr,
}

fn respond(mut respond: SendResponse<Bytes>, status: StatusCode, why: &str) {
    tracing::debug!(%status, why, "refusing HBONE CONNECT");
    let response = Response::builder()
        .status(status)
        .body(())
        .unwrap_or_default();
    if respond.send_response(response, true).is_err() {
        tracing::debug!("client went away before the refusal was sent");
    }
}

/// Handles one stream to completion. `guard` keeps the tunnel counted while it is open.
pub(crate) async fn handle(
    request: Request<h2::RecvStream>,
    responder: SendResponse<Bytes>,
    conn: ConnInfo,
    shared: Arc<Shared>,
    guard: TunnelGuard,
) {
    if request.method() != Method::CONNECT {
        return respond(responder, StatusCode::BAD_REQUEST, "not a CONNECT");
    }
    let Some(target) = request
        .uri()
        .authority()
        .and_then(|a| a.as_str().parse::<SocketAddr>().ok())
    else {
        return respond(
            responder,
            StatusCode::BAD_REQUEST,
            "authority is not ip:port",
        );
    };
    if target.ip().to_canonical() != conn.local_addr.ip().to_canonical() {
        return respond(
            responder,
            StatusCode::BAD_REQUEST,
            "authority IP is not the address this connection arrived on",
        );
    }
    if shared.own_ports.contains(&target.port()) {
        return respond(
            responder,
            StatusCode::SERVICE_UNAVAILABLE,
            "target is one of the mesh's own ports",
        );
    }
    let verdict = shared.policy.load().check(&InboundRequest {
        peer: &conn.peer,
        peer_addr: conn.peer_addr,
        local_addr: conn.local_addr,
        target,
        headers: request.headers(),
    });
    if let Verdict::Deny(reason) = verdict {
        tracing::info!(peer = %conn.peer, %target, reason, "HBONE tunnel denied by policy");
        log_refusal(
            &shared,
            &conn,
            target,
            &request,
            401,
            ResponseFlags::NONE,
            Some(reason),
        );
        return respond(responder, StatusCode::UNAUTHORIZED, "denied by policy");
    }

    // The server span of the tunnel, continuing the client's (raw tunnels; HTTP requests
    // inside a tunnel get spans of their own).
    let trace = crate::observe::TraceContext::from_headers(request.headers())
        .map(|parent| parent.child())
        .unwrap_or_else(crate::observe::TraceContext::new_root);
    let span = tracing::info_span!(
        target: "mesh::tcp",
        "TCP server",
        otel.kind = "server",
        trace_id = %trace.trace_id(),
        span_id = %trace.span_id(),
        parent_span_id = trace.parent_span_id(),
        peer.principal = conn.peer.as_str(),
        client.address = %conn.peer_addr,
        server.port = target.port(),
    );
    match Route::of(&shared.delivery, target) {
        Route::Forward(upstream_addr) => {
            let Some(upstream_addr) = upstream_addr else {
                log_refusal(
                    &shared,
                    &conn,
                    target,
                    &request,
                    503,
                    ResponseFlags::NO_ROUTE_FOUND,
                    None,
                );
                return respond(
                    responder,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no target for this port",
                );
            };
            let upstream = match net::dial(upstream_addr, shared.upstream_connect_timeout).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::info!(%upstream_addr, error = %e, "HBONE target unreachable");
                    let flags = ResponseFlags::UPSTREAM_CONNECTION_FAILURE;
                    log_refusal(&shared, &conn, target, &request, 503, flags, None);
                    return respond(
                        responder,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "target unreachable",
                    );
                }
            };
            let meter = meter(&shared, &conn, target, request.headers())
                .map(|m| tunnel_span(m, &shared, &conn, target, &trace));
            let Some(stream) = accept(request, responder, &shared) else {
                return;
            };
            span.in_scope(
                || tracing::debug!(target: "mesh::tcp", %upstream_addr, "tunnel forwarded"),
            );
            bridge(stream.with_meter(meter), upstream)
                .instrument(span)
                .await;
        }
        Route::Http(service) => {
            let meter = meter(&shared, &conn, target, request.headers());
            let observe = shared.config.telemetry.as_ref().map(|t| {
                crate::observe::http::InboundHttp::new(
                    t.clone(),
                    Some(conn.peer.clone()),
                    conn.peer_addr,
                    request.headers(),
                )
            });
            let Some(stream) = accept(request, responder, &shared) else {
                return;
            };
            let peer = crate::http::PeerIdentity {
                id: conn.peer.clone(),
                addr: conn.peer_addr,
                target,
            };
            let stream = stream.with_peer(conn.peer).with_meter(meter);
            service
                .serve(stream, peer, shared.drain.clone(), observe)
                .await;
        }
        Route::Handler(handler) => {
            let headers = request.headers().clone();
            let meter = meter(&shared, &conn, target, &headers)
                .map(|m| tunnel_span(m, &shared, &conn, target, &trace));
            let Some(stream) = accept(request, responder, &shared) else {
                return;
            };
            let stream = stream.with_meter(meter);
            span.in_scope(|| {
                tracing::debug!(target: "mesh::tcp", "tunnel handed to the application");
                handler(InboundTunnel {
                    peer: conn.peer,
                    peer_addr: conn.peer_addr,
                    target,
                    headers,
                    stream: stream.with_guard(Box::new(guard)),
                    trace,
                });
            });
        }
    }
}

/// The service a tunnel is for, when the client named it (`forwarded: ...;host=`).
fn forwarded_host(headers: &http::HeaderMap) -> &str {
    headers
        .get(http::header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split([';', ','])
                .find_map(|part| part.trim().strip_prefix("host="))
        })
        .map(|host| host.trim_matches('"'))
        .unwrap_or(crate::observe::UNKNOWN)
}

/// The meter of an accepted tunnel (TCP metrics as the destination), when telemetry is on.
fn meter(
    shared: &Shared,
    conn: &ConnInfo,
    target: SocketAddr,
    headers: &http::HeaderMap,
) -> Option<crate::observe::TunnelMeter> {
    let telemetry = shared.config.telemetry.as_ref()?;
    let baggage = headers
        .get("baggage")
        .map(crate::observe::trace::metadata_baggage);
    let flow = telemetry.flow(
        crate::observe::Reporter::Destination,
        crate::observe::RequestProtocol::Tcp,
        forwarded_host(headers),
        Some(&conn.peer),
        baggage.as_deref(),
    );
    let record = telemetry
        .access_log_enabled()
        .then(|| tunnel_record(conn, target, headers, 200));
    Some(crate::observe::TunnelMeter::open(flow, telemetry, record))
}

/// Records a raw tunnel as the server span `trace`, when spans are exported.
fn tunnel_span(
    meter: crate::observe::TunnelMeter,
    shared: &Shared,
    conn: &ConnInfo,
    target: SocketAddr,
    trace: &crate::observe::TraceContext,
) -> crate::observe::TunnelMeter {
    let Some(telemetry) = shared.config.telemetry.as_ref() else {
        return meter;
    };
    meter.with_span(
        telemetry,
        crate::observe::spans::SpanKind::Server,
        trace,
        |span| {
            span.attr("server.port", i64::from(target.port()));
            span.attr("client.address", conn.peer_addr.ip().to_string());
            span.attr("client.port", i64::from(conn.peer_addr.port()));
            span.attr("mesh.peer.principal", conn.peer.as_str());
        },
    )
}

fn tunnel_record(
    conn: &ConnInfo,
    target: SocketAddr,
    headers: &http::HeaderMap,
    code: u16,
) -> crate::observe::AccessRecord {
    let service = forwarded_host(headers);
    crate::observe::AccessRecord {
        direction: "inbound",
        method: "CONNECT".to_owned(),
        protocol: "TCP",
        response_code: code,
        authority: Some(target.to_string()),
        upstream_cluster: (service != crate::observe::UNKNOWN).then(|| service.to_owned()),
        downstream_remote_address: Some(conn.peer_addr),
        downstream_peer_principal: Some(conn.peer.as_str().to_owned()),
        trace_id: crate::observe::TraceContext::from_headers(headers).map(|t| t.trace_id()),
        ..crate::observe::AccessRecord::default()
    }
}

/// Writes the access log line of a refused tunnel.
fn log_refusal<B>(
    shared: &Shared,
    conn: &ConnInfo,
    target: SocketAddr,
    request: &Request<B>,
    code: u16,
    flags: ResponseFlags,
    authz: Option<String>,
) {
    let Some(telemetry) = shared.config.telemetry.as_ref() else {
        return;
    };
    if !telemetry.access_log_enabled() {
        return;
    }
    let mut record = tunnel_record(conn, target, request.headers(), code);
    record.started = Some(std::time::SystemTime::now());
    record.response_flags = flags.to_string();
    record.authz = authz.map(|reason| format!("deny: {reason}"));
    telemetry.log(record);
}

/// Where one tunnel goes, once a [`Delivery`] is applied to its target.
enum Route<'a> {
    /// Dial this address (`None`: no target for the port: 503).
    Forward(Option<SocketAddr>),
    Handler(&'a super::TunnelHandler),
    Http(&'a crate::http::HttpService),
}

impl<'a> Route<'a> {
    fn of(delivery: &'a Delivery, target: SocketAddr) -> Self {
        match delivery {
            Delivery::Forward(ForwardTo::Authority) => Self::Forward(Some(target)),
            Delivery::Forward(ForwardTo::Fixed(addr)) => Self::Forward(Some(*addr)),
            Delivery::Forward(ForwardTo::ByPort(map)) => {
                Self::Forward(map.get(&target.port()).copied())
            }
            Delivery::Split { forward, other } => match forward.get(&target.port()) {
                Some(addr) => Self::Forward(Some(*addr)),
                None => Self::of(other, target),
            },
            Delivery::Handler(handler) => Self::Handler(handler),
            Delivery::Http(service) => Self::Http(service),
        }
    }
}

/// Answers 200 and turns the HTTP/2 stream into a byte stream.
fn accept(
    request: Request<h2::RecvStream>,
    mut responder: SendResponse<Bytes>,
    shared: &Shared,
) -> Option<H2Stream> {
    let mut response = Response::builder().status(StatusCode::OK);
    if let Some(baggage) = &shared.baggage {
        response = response.header("baggage", baggage.as_str());
    }
    let response = response.body(()).unwrap_or_default();
    match responder.send_response(response, false) {
        Ok(send) => Some(H2Stream::new(send, request.into_body())),
        Err(e) => {
            tracing::debug!(error = %e, "client went away before the tunnel was established");
            None
        }
    }
}

/// Copies both ways until both sides finish. A reset or error on either side resets the other
/// (RST_STREAM towards the client, TCP RST towards the target), as ztunnel maps them.
async fn bridge(mut stream: H2Stream, mut upstream: tokio::net::TcpStream) {
    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut stream,
        &mut upstream,
        COPY_BUFFER,
        COPY_BUFFER,
    );
    if let Err(e) = copy.await {
        tracing::debug!(error = %e, "tunnel ended abnormally; resetting both sides");
        stream.reset();
        let _ = socket2::SockRef::from(&upstream).set_linger(Some(Duration::ZERO));
    }
}

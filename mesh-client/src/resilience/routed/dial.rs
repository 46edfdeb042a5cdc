//! Dialing for [`Routed`]: a tunnel to the picked endpoint (within the destination's connect
//! timeout) and an HTTP/1.1 or HTTP/2 connection over it, driven by a task of its own until it
//! ends or reaches `connectionPool`'s maximum duration.

use std::{future::Future, pin::Pin, sync::Arc, time::Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{Http1Error, Routed, Target};
use crate::{
    hbone::{Destination, HboneClient, TunnelError},
    http::UpstreamInfo,
    resilience::{
        http1_pool::Http1Connection,
        http2_shared::{Http2Connection, Http2Shared},
    },
};

/// A connection being dialed, boxed (see [`Routed::dial_http1`]).
pub(super) type Dialing<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

impl Routed {
    /// Opens a tunnel to the endpoint and an HTTP/1.1 connection over it.
    ///
    /// Boxed: dialing (TCP, TLS handshake, CONNECT, HTTP handshake) is a future of several
    /// kilobytes, and inline it would make every request's future as large, to be moved around
    /// on every request although few of them dial. The box is made here, outside any `async`
    /// body: `Box::pin(fut).await` written in one would still keep a slot for the unboxed
    /// temporary (temporaries live to the end of their statement, across the `.await`).
    pub(super) fn dial_http1<'a>(
        &'a self,
        dest: &'a Destination,
        target: &'a Target,
        request: &'a Request<Full<Bytes>>,
    ) -> Dialing<'a, Http1Connection, Http1Error> {
        Box::pin(self.dial_http1_inline(dest, target, request))
    }

    async fn dial_http1_inline(
        &self,
        dest: &Destination,
        target: &Target,
        request: &Request<Full<Bytes>>,
    ) -> Result<Http1Connection, Http1Error> {
        let endpoint = dest.authority();
        let (stream, upstream) = open_tunnel(&self.hbone, dest, target, request)
            .await
            .map_err(Http1Error::Tunnel)?;
        let opened = Instant::now();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| {
            Http1Error::Tunnel(TunnelError::InvalidRequest(format!(
                "HTTP/1.1 handshake with {endpoint}: {e}"
            )))
        })?;
        let connection = Http1Connection::new(sender, upstream, &target.pool, opened);
        let end_of_life = target.pool.max_connection_duration().map(|d| opened + d);
        let (pool, id) = (Arc::downgrade(&self.http1), connection.id());
        tokio::spawn(async move {
            // At its maximum duration, out of the pool: it closes now if idle, or once the
            // response in flight is read (it is not put back).
            let retire = || {
                if let Some(pool) = pool.upgrade() {
                    pool.retire(endpoint, id);
                }
            };
            if let Err(e) = run_until_retired(conn, end_of_life, retire).await {
                tracing::debug!(%endpoint, error = %e, "HTTP/1.1 connection ended");
            }
        });
        Ok(connection)
    }

    /// Opens a tunnel to the endpoint and an HTTP/2 connection over it, shared from then on.
    /// Boxed (see [`dial_http1`](Self::dial_http1)).
    pub(super) fn dial_http2<'a>(
        &'a self,
        dest: &'a Destination,
        target: &'a Target,
        request: &'a Request<Full<Bytes>>,
    ) -> Dialing<'a, Http2Connection, TunnelError> {
        Box::pin(self.dial_http2_inline(dest, target, request))
    }

    async fn dial_http2_inline(
        &self,
        dest: &Destination,
        target: &Target,
        request: &Request<Full<Bytes>>,
    ) -> Result<Http2Connection, TunnelError> {
        let endpoint = dest.authority();
        let (stream, upstream) = open_tunnel(&self.hbone, dest, target, request).await?;
        let opened = Instant::now();
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| {
                TunnelError::InvalidRequest(format!("HTTP/2 handshake with {endpoint}: {e}"))
            })?;
        let id = Http2Shared::next_id();
        // Shared before its task can retire it. This request is the connection's first.
        let connection = (sender, upstream);
        self.http2
            .share(endpoint, &connection, id, &target.pool, opened);
        let end_of_life = target.pool.max_connection_duration().map(|d| opened + d);
        let shared = Arc::downgrade(&self.http2);
        tokio::spawn(async move {
            // At its maximum duration, no longer shared: with its last sender gone it takes no
            // new stream and closes once the streams in flight end.
            let retire = || {
                if let Some(shared) = shared.upgrade() {
                    shared.retire(endpoint, id);
                }
            };
            if let Err(e) = run_until_retired(conn, end_of_life, retire).await {
                tracing::debug!(%endpoint, error = %e, "HTTP/2 connection ended");
            }
        });
        Ok(connection)
    }
}

/// Drives an HTTP connection to its end; when it reaches `end_of_life` first, calls `retire`
/// (which stops handing it out, so it closes once idle) and goes on driving it, so requests in
/// flight finish normally.
async fn run_until_retired<F: Future>(
    conn: F,
    end_of_life: Option<Instant>,
    retire: impl FnOnce(),
) -> F::Output {
    let Some(at) = end_of_life else {
        return conn.await;
    };
    tokio::pin!(conn);
    tokio::select! {
        ended = &mut conn => return ended,
        () = tokio::time::sleep_until(at.into()) => retire(),
    }
    conn.await
}

/// Opens a tunnel to `dest` and describes who answers on it, as responses carry it.
async fn open_tunnel(
    hbone: &HboneClient,
    dest: &Destination,
    target: &Target,
    request: &Request<Full<Bytes>>,
) -> Result<(crate::hbone::H2Stream, UpstreamInfo), TunnelError> {
    let stream = connect(hbone, dest, target, request).await?;
    let upstream = UpstreamInfo {
        host: target.host.as_str().into(),
        endpoint: dest.authority(),
        peer: stream.peer_identity().cloned(),
        peer_baggage: stream.peer_baggage().cloned(),
    };
    Ok((stream, upstream))
}

/// Opens a tunnel within the destination's `connectionPool.tcp.connectTimeout`.
async fn connect(
    hbone: &HboneClient,
    dest: &Destination,
    target: &Target,
    request: &Request<Full<Bytes>>,
) -> Result<crate::hbone::H2Stream, TunnelError> {
    let limit = target.pool.connect_timeout();
    tokio::time::timeout(
        limit,
        hbone.connect_with(dest, &tunnel_options(target, request)),
    )
    .await
    .unwrap_or(Err(TunnelError::Timeout {
        addr: dest.hbone_addr,
        phase: "connectionPool.tcp.connectTimeout: opening the tunnel",
        after: limit,
    }))
}

/// The CONNECT of a tunnel opened for `request`: it names the service (`forwarded: ...;host=`)
/// so the destination can attribute it, and carries the request's trace.
fn tunnel_options(target: &Target, request: &Request<Full<Bytes>>) -> crate::hbone::TunnelOptions {
    crate::hbone::TunnelOptions {
        service_host: Some(target.host.clone()),
        traceparent: request
            .headers()
            .get(crate::observe::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ..crate::hbone::TunnelOptions::default()
    }
}

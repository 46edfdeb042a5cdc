//! One inbound connection: TLS, HTTP/2, then a task per CONNECT stream.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use tokio::net::TcpStream;

use super::{Shared, tunnel};
use crate::hbone::settings::{CONNECTION_WINDOW, MAX_FRAME_SIZE, MAX_SEND_BUFFER, STREAM_WINDOW};

/// Decrements a counter when dropped, so counts stay right on every exit path.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one open tunnel in the server's total and in its connection's count (which the idle
/// timer reads) for as long as it lives. It travels with the tunnel: a stream handed to an
/// in-process handler outlives the task that accepted it and stays counted until dropped.
pub(crate) struct TunnelGuard {
    shared: Arc<Shared>,
    streams: Arc<AtomicUsize>,
}

impl TunnelGuard {
    fn new(shared: Arc<Shared>, streams: Arc<AtomicUsize>) -> Self {
        shared.tunnels.fetch_add(1, Ordering::Relaxed);
        streams.fetch_add(1, Ordering::Relaxed);
        Self { shared, streams }
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.shared.tunnels.fetch_sub(1, Ordering::Relaxed);
        self.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) async fn serve(tcp: TcpStream, peer_addr: SocketAddr, shared: Arc<Shared>) {
    let _counted = Counted::new(&shared.connections);
    tokio::select! {
        () = detect_then_serve(tcp, peer_addr, &shared) => {}
        () = shared.kill.cancelled() => {}
    }
}

/// With a plaintext handler installed, connections that do not start with TLS go to it.
async fn detect_then_serve(tcp: TcpStream, peer_addr: SocketAddr, shared: &Arc<Shared>) {
    if let Some(handler) = shared.plaintext.get() {
        match super::plaintext::sniff(&tcp).await {
            super::plaintext::FirstBytes::Tls => {}
            super::plaintext::FirstBytes::Closed => return,
            super::plaintext::FirstBytes::Plaintext => {
                let Ok(local_addr) = tcp.local_addr() else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                let connection = super::PlaintextConnection {
                    stream: tcp,
                    peer_addr,
                    local_addr,
                    drain: shared.drain.clone(),
                };
                if let Some(serve) = handler(connection) {
                    serve.await;
                }
                return;
            }
        }
    }
    serve_inner(tcp, peer_addr, shared).await;
}

async fn serve_inner(tcp: TcpStream, peer_addr: SocketAddr, shared: &Arc<Shared>) {
    // Boxed so the handshake's large state is freed once it is done, instead of sizing the
    // connection task (which lives as long as the connection) for it.
    let Some((conn, info)) = Box::pin(establish(tcp, peer_addr, shared)).await else {
        return;
    };
    run(conn, info, shared).await;
}

type ServerConnection =
    h2::server::Connection<tokio_rustls::server::TlsStream<TcpStream>, bytes::Bytes>;

/// mTLS, ALPN and the HTTP/2 preface, each with its limit. `None` when any of them fails.
async fn establish(
    tcp: TcpStream,
    peer_addr: SocketAddr,
    shared: &Arc<Shared>,
) -> Option<(ServerConnection, tunnel::ConnInfo)> {
    let _ = tcp.set_nodelay(true);
    let Ok(local_addr) = tcp.local_addr() else {
        return None;
    };
    let accepted = shared.tls.accept(tcp).await;
    if let Some(telemetry) = &shared.config.telemetry {
        let outcome = accepted
            .as_ref()
            .map(|_| ())
            .map_err(crate::observe::handshake_reason);
        telemetry.handshake(crate::observe::Direction::Inbound, outcome);
    }
    let (tls, peer) = match accepted {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::info!(%peer_addr, error = %e, "inbound mTLS handshake failed");
            return None;
        }
    };
    if tls.get_ref().1.alpn_protocol() != Some(mesh_tls::ALPN_H2) {
        tracing::info!(%peer_addr, %peer, "inbound connection did not negotiate ALPN h2; closing");
        return None;
    }
    let config = &shared.config;
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(config.max_header_list_size)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .handshake::<_, bytes::Bytes>(tls);
    let conn = match tokio::time::timeout(config.h2_handshake_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::info!(%peer_addr, %peer, error = %e, "inbound HTTP/2 handshake failed");
            return None;
        }
        Err(_) => {
            tracing::info!(%peer_addr, %peer, "inbound HTTP/2 preface not received in time");
            return None;
        }
    };
    let info = tunnel::ConnInfo {
        peer,
        peer_addr,
        local_addr,
    };
    Some((conn, info))
}

/// Accepts streams until the connection ends, drains or idles out.
async fn run(mut conn: ServerConnection, info: tunnel::ConnInfo, shared: &Arc<Shared>) {
    let config = &shared.config;
    let peer_addr = info.peer_addr;
    let streams = Arc::new(AtomicUsize::new(0));
    let mut ping_pong = conn.ping_pong();
    let keepalive = async {
        let Some(pp) = ping_pong.as_mut() else {
            return std::future::pending::<()>().await;
        };
        loop {
            tokio::time::sleep(config.keepalive_interval).await;
            match tokio::time::timeout(config.keepalive_timeout, pp.ping(h2::Ping::opaque())).await
            {
                Ok(Ok(_)) => {}
                _ => return,
            }
        }
    };
    tokio::pin!(keepalive);
    let mut idle_since = Some(Instant::now());
    let mut idle_check =
        tokio::time::interval(config.idle_timeout.min(std::time::Duration::from_secs(1)));
    let mut draining = false;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    idle_since = None;
                    let guard = TunnelGuard::new(shared.clone(), streams.clone());
                    let shared2 = shared.clone();
                    let info = info.clone();
                    let kill = shared.kill.clone();
                    shared.tasks.spawn(async move {
                        tokio::select! {
                            () = tunnel::handle(request, respond, info, shared2, guard) => {}
                            () = kill.cancelled() => {}
                        }
                    });
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer_addr, error = %e, "inbound HTTP/2 connection error");
                    break;
                }
                None => break,
            },
            () = shared.drain.cancelled(), if !draining => {
                draining = true;
                conn.graceful_shutdown();
            }
            () = &mut keepalive => {
                tracing::info!(%peer_addr, "inbound connection failed keepalive; closing");
                break;
            }
            _ = idle_check.tick() => {
                if streams.load(Ordering::Relaxed) > 0 {
                    idle_since = None;
                } else if let Some(since) = idle_since {
                    if since.elapsed() >= config.idle_timeout && !draining {
                        tracing::debug!(%peer_addr, "inbound connection idle; sending GOAWAY");
                        draining = true;
                        conn.graceful_shutdown();
                    }
                } else {
                    idle_since = Some(Instant::now());
                }
            }
        }
    }
}

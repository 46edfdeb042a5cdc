//! `mesh_server`: the inbound HBONE listener handing each authorized tunnel to the host as a
//! socket, with the client's SPIFFE ID.

use std::{
    ffi::c_void,
    sync::{Arc, Mutex, PoisonError},
};

use mesh_client::{
    hbone::{InboundPolicy, InboundTunnel},
    mesh::{InboundApp, InboundServer},
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    boundary::{self, HandleState},
    callback::{HostCheck, mesh_authorize_callback},
    error::{Error, mesh_error},
    mesh::mesh_mesh,
    ptr, runtime,
    runtime::ProcessRuntime,
    status::mesh_status,
    tunnel::{TunnelParts, mesh_tunnel},
};

/// Tunnels waiting for `mesh_server_accept`; beyond this, new ones are reset (like a full
/// listen backlog).
const BACKLOG: usize = 128;

/// A running inbound listener. Thread-safe: several threads may accept at once.
pub struct mesh_server {
    state: HandleState,
    rt: Arc<ProcessRuntime>,
    shared: Arc<Shared>,
    port: u16,
    check: Option<Arc<HostCheck>>,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::Receiver<InboundTunnel>>,
    closed: CancellationToken,
    /// Until closing takes it to drain it.
    server: Mutex<Option<InboundServer>>,
    /// Tunnels cut off by the drain, once it finished.
    drained: watch::Sender<Option<usize>>,
}

impl Shared {
    /// Stops handing out tunnels, resets those not yet accepted, and starts the graceful
    /// drain in the background.
    fn close(self: &Arc<Self>, rt: &ProcessRuntime) {
        self.closed.cancel();
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(server) = server else { return };
        let shared = self.clone();
        rt.tokio().spawn(async move {
            {
                let mut queue = shared.queue.lock().await;
                queue.close();
                while queue.try_recv().is_ok() {}
            }
            let cut = server.shutdown().await;
            shared.drained.send_replace(Some(cut));
        });
    }
}

/// Starts the workload's inbound listener as the configuration's `inbound:` section says
/// (`listen`, `forward`, `drain_timeout`, ...), with its `policies:` enforced on every tunnel.
/// Tunnels to ports not forwarded are queued for `mesh_server_accept`.
///
/// `callback` (may be NULL) is asked about each tunnel the policies allow, with `user_data`;
/// see `mesh_authorize_callback`. Both must stay valid until `mesh_server_free` returns.
///
/// # Safety
///
/// `mesh` is NULL or a live `mesh_mesh`; `callback`, when not NULL, is a function of the
/// documented type that is safe to call from any thread with `user_data`; `server_out` and
/// `error_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_server_start(
    mesh: *const mesh_mesh,
    callback: mesh_authorize_callback,
    user_data: *mut c_void,
    server_out: *mut *mut mesh_server,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `server_out`.
        let out = unsafe { ptr::out(server_out, "server_out", std::ptr::null_mut()) }?;
        // SAFETY: documented contract of `mesh`.
        let mesh = unsafe { ptr::arg(mesh, "mesh") }?;
        let check = HostCheck::new(callback, user_data).map(Arc::new);
        let host_check = check.clone().map(|c| c as Arc<dyn InboundPolicy>);
        let (tx, rx) = mpsc::channel(BACKLOG);
        let closed = CancellationToken::new();
        let handler_closed = closed.clone();
        let handler = Arc::new(move |tunnel: InboundTunnel| {
            if handler_closed.is_cancelled() {
                return;
            }
            if let Err(e) = tx.try_send(tunnel) {
                tracing::warn!(
                    "inbound tunnel reset: {} tunnels are waiting for mesh_server_accept",
                    BACKLOG
                );
                drop(e);
            }
        });
        let (server, rt) = mesh.with(|rt, mesh| {
            let mesh = mesh.clone();
            let server = runtime::block(rt, None, "starting the server", async move {
                Ok(mesh
                    .serve_with_check(InboundApp::Tunnels(handler), host_check)
                    .await?)
            })?;
            Ok((server, rt.clone()))
        })?;
        let port = server.local_addr().port();
        *out = ptr::into_raw(mesh_server {
            state: HandleState::new(),
            rt,
            shared: Arc::new(Shared {
                queue: tokio::sync::Mutex::new(rx),
                closed,
                server: Mutex::new(Some(server)),
                drained: watch::Sender::new(None),
            }),
            port,
            check,
        });
        Ok(())
    })
}

/// The port the listener is bound to (useful with `listen: 127.0.0.1:0`); 0 for NULL.
///
/// # Safety
///
/// `server` is NULL or a live `mesh_server`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_server_port(server: *const mesh_server) -> u16 {
    boundary::value(0, || {
        // SAFETY: documented contract of `server`.
        unsafe { ptr::as_ref(server) }.map_or(0, |s| s.port)
    })
}

/// Waits for the next authorized tunnel, at most `timeout_ms` milliseconds (0: until one
/// arrives or the server is closed). On success `*tunnel_out` holds the tunnel: its socket,
/// the client's SPIFFE ID and address, and the target port. `MESH_ERR_CLOSED` once the
/// server is closed, `MESH_ERR_TIMEOUT` when nothing arrived in time.
///
/// # Safety
///
/// `server` is NULL or a live `mesh_server`; `tunnel_out` and `error_out` are NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_server_accept(
    server: *const mesh_server,
    timeout_ms: u32,
    tunnel_out: *mut *mut mesh_tunnel,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `tunnel_out`.
        let out = unsafe { ptr::out(tunnel_out, "tunnel_out", std::ptr::null_mut()) }?;
        // SAFETY: documented contract of `server`.
        let server = unsafe { ptr::arg(server, "server") }?;
        let shared = server.shared.clone();
        let parts = server.state.guard("server", || {
            runtime::block(
                &server.rt,
                runtime::timeout(timeout_ms),
                "accepting a tunnel",
                async move {
                    let next = async {
                        let mut queue = shared.queue.lock().await;
                        queue.recv().await
                    };
                    let tunnel = tokio::select! {
                        biased;
                        () = shared.closed.cancelled() => None,
                        tunnel = next => tunnel,
                    }
                    .ok_or_else(|| Error::closed("the server"))?;
                    TunnelParts::bridge(
                        tunnel.stream,
                        tunnel.peer.as_str().to_owned(),
                        tunnel.peer_addr.to_string(),
                        tunnel.target.port(),
                    )
                },
            )
        })?;
        *out = ptr::into_raw(parts.into_handle());
        Ok(())
    })
}

/// Closes the server without waiting: pending and future `mesh_server_accept` calls return
/// `MESH_ERR_CLOSED`, tunnels not yet accepted are reset, the listener stops accepting and
/// the graceful drain starts (accepted tunnels may finish within `inbound.drain_timeout`).
/// Closing again does nothing.
///
/// # Safety
///
/// `server` is NULL or a live `mesh_server`; `error_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_server_close(
    server: *const mesh_server,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `server`.
        let server = unsafe { ptr::arg(server, "server") }?;
        server.state.guard("server", || {
            server.shared.close(&server.rt);
            Ok(())
        })
    })
}

/// Graceful shutdown: closes the server (see `mesh_server_close`) and waits, at most
/// `timeout_ms` milliseconds (0: no limit of its own), for the drain: open tunnels may finish
/// within `inbound.drain_timeout`, the rest are reset. `*cut_off_out` (when not NULL) receives
/// how many tunnels were cut off.
///
/// # Safety
///
/// `server` is NULL or a live `mesh_server`; `cut_off_out` and `error_out` are NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_server_shutdown(
    server: *const mesh_server,
    timeout_ms: u32,
    cut_off_out: *mut u32,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `cut_off_out`.
        unsafe { ptr::set_optional(cut_off_out, 0) };
        // SAFETY: documented contract of `server`.
        let server = unsafe { ptr::arg(server, "server") }?;
        let cut = server.state.guard("server", || {
            server.shared.close(&server.rt);
            let mut drained = server.shared.drained.subscribe();
            runtime::block(
                &server.rt,
                runtime::timeout(timeout_ms),
                "shutting down the server",
                async move {
                    let cut = drained
                        .wait_for(Option::is_some)
                        .await
                        .map_err(|_| Error::closed("the server's drain"))?;
                    Ok(cut.unwrap_or(0))
                },
            )
        })?;
        // SAFETY: as above.
        unsafe { ptr::set_optional(cut_off_out, u32::try_from(cut).unwrap_or(u32::MAX)) };
        Ok(())
    })
}

/// Frees the server. Without a finished shutdown, every connection and tunnel still open is
/// closed at once. The callback is not called after this returns. NULL is accepted. In a
/// forked child, nothing shared with the parent is touched.
///
/// # Safety
///
/// `server` is NULL or a live `mesh_server` that no other call is using, not freed before;
/// not called from inside the server's own callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_server_free(server: *mut mesh_server) {
    boundary::value((), || {
        // SAFETY: documented contract of `server`.
        let Some(server) = (unsafe { ptr::take(server) }) else {
            return;
        };
        if server.state.in_forked_child() {
            std::mem::forget(server);
            return;
        }
        if let Some(check) = &server.check {
            check.revoke();
        }
        server.shared.closed.cancel();
        let rt = server.rt.clone();
        let _entered = rt.tokio().enter();
        drop(server);
    });
}

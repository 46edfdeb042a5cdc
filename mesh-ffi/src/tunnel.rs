//! `mesh_tunnel`: an HBONE tunnel handed to the host as a socket file descriptor, with what is
//! known about the workload at the other end.

use std::{
    ffi::{CString, c_char, c_int},
    os::fd::{AsRawFd, IntoRawFd, OwnedFd},
    sync::{Arc, Mutex, PoisonError},
};

use mesh_client::{hbone::H2Stream, mesh::MeshError};

use crate::{
    boundary,
    bridge::{self, BridgeState},
    destination,
    error::{Error, mesh_error},
    mesh::mesh_mesh,
    ptr, runtime,
    status::mesh_status,
};

/// How a tunnel stands.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum mesh_tunnel_state {
    /// Bytes may still flow (possibly in one direction only, after a half-close).
    MESH_TUNNEL_OPEN = 0,
    /// Both directions ended cleanly (EOF / END_STREAM each way).
    MESH_TUNNEL_CLOSED = 1,
    /// The tunnel was reset: by the peer, by a failed connection, by a drain that cut it off,
    /// or because the host closed its socket with unread data. A host that read EOF from a
    /// reset tunnel should treat it as "connection reset".
    MESH_TUNNEL_RESET = 2,
}

/// One tunnel: the host's socket (until taken), the peer's identity and address, and the
/// tunnel's state. Freeing the handle closes the socket only if it was never taken.
pub struct mesh_tunnel {
    fd: Mutex<Option<OwnedFd>>,
    peer_id: CString,
    peer_addr: CString,
    target_port: u16,
    bridge: Arc<BridgeState>,
}

/// What an opened tunnel hands over.
pub(crate) struct TunnelParts {
    pub(crate) fd: OwnedFd,
    pub(crate) bridge: Arc<BridgeState>,
    pub(crate) peer_id: String,
    pub(crate) peer_addr: String,
    pub(crate) target_port: u16,
}

impl TunnelParts {
    /// Bridges `stream` to a new socketpair. Must run inside the runtime.
    pub(crate) fn bridge(
        stream: H2Stream,
        peer_id: String,
        peer_addr: String,
        target_port: u16,
    ) -> Result<Self, Error> {
        let (fd, bridge) = bridge::spawn(stream)
            .map_err(|e| Error::io("cannot create the tunnel's socketpair", &e))?;
        Ok(Self {
            fd,
            bridge,
            peer_id,
            peer_addr,
            target_port,
        })
    }

    pub(crate) fn into_handle(self) -> mesh_tunnel {
        mesh_tunnel {
            fd: Mutex::new(Some(self.fd)),
            peer_id: CString::new(self.peer_id).unwrap_or_default(),
            peer_addr: CString::new(self.peer_addr).unwrap_or_default(),
            target_port: self.target_port,
            bridge: self.bridge,
        }
    }
}

/// Opens an HBONE tunnel to `target` (`"host:port"` of a service the mesh knows): the
/// service's balancer picks an endpoint, mutual TLS verifies its SPIFFE ID, connect failures
/// are retried on another endpoint. The result's socket carries the tunnel's bytes.
///
/// Waits at most `timeout_ms` milliseconds (0: no limit beyond the mesh's own). Errors:
/// `MESH_ERR_UNKNOWN_SERVICE` (the mesh does not know the service), `MESH_ERR_NO_ENDPOINT`
/// (it knows it, but no endpoint for the port can be reached), `MESH_ERR_TLS` (wrong SPIFFE ID), `MESH_ERR_DENIED` (the
/// destination's policy), `MESH_ERR_UNAVAILABLE`, `MESH_ERR_TIMEOUT`, ...
///
/// # Safety
///
/// `mesh` is NULL or a live `mesh_mesh`; `target` is NULL or a NUL-terminated string;
/// `tunnel_out` and `error_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_tunnel_connect(
    mesh: *const mesh_mesh,
    target: *const c_char,
    timeout_ms: u32,
    tunnel_out: *mut *mut mesh_tunnel,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `tunnel_out`.
        let out = unsafe { ptr::out(tunnel_out, "tunnel_out", std::ptr::null_mut()) }?;
        // SAFETY: documented contract of `mesh`.
        let mesh = unsafe { ptr::arg(mesh, "mesh") }?;
        // SAFETY: documented contract of `target`.
        let target = unsafe { ptr::str_arg(target, "target") }?.to_owned();
        let parts = mesh.with(|rt, mesh| {
            let mesh = mesh.clone();
            let what = format!("opening a tunnel to {target}");
            runtime::block(rt, runtime::timeout(timeout_ms), &what, async move {
                let stream = match mesh.connect(&target).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        let unreachable = match &e {
                            MeshError::NoEndpoint { host, port } => Some((host.clone(), *port)),
                            _ => None,
                        };
                        let error = Error::from(e);
                        return Err(match unreachable {
                            Some((host, port)) => {
                                destination::no_endpoint(&mesh, &host, port, error)
                            }
                            None => error,
                        });
                    }
                };
                let peer = stream
                    .peer_identity()
                    .map(|id| id.as_str().to_owned())
                    .unwrap_or_default();
                let port = target
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or(0);
                TunnelParts::bridge(stream, peer, String::new(), port)
            })
        })?;
        *out = ptr::into_raw(parts.into_handle());
        Ok(())
    })
}

/// The tunnel's socket, still owned by the tunnel (closed by `mesh_tunnel_free`); -1 when
/// `tunnel` is NULL or the socket was taken.
///
/// # Safety
///
/// `tunnel` is NULL or a live `mesh_tunnel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_tunnel_fd(tunnel: *const mesh_tunnel) -> c_int {
    boundary::value(-1, || {
        // SAFETY: documented contract of `tunnel`.
        unsafe { ptr::as_ref(tunnel) }.map_or(-1, |t| {
            let fd = t.fd.lock().unwrap_or_else(PoisonError::into_inner);
            fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
        })
    })
}

/// Takes the tunnel's socket: the caller owns it from now on and closes it when done (closing
/// it ends the tunnel). Returns -1 when `tunnel` is NULL or the socket was already taken. The
/// handle stays useful for the peer's identity and the tunnel's state.
///
/// # Safety
///
/// `tunnel` is NULL or a live `mesh_tunnel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_tunnel_take_fd(tunnel: *mut mesh_tunnel) -> c_int {
    boundary::value(-1, || {
        // SAFETY: documented contract of `tunnel` (only shared access is needed).
        unsafe { ptr::as_ref(tunnel) }.map_or(-1, |t| {
            let mut fd = t.fd.lock().unwrap_or_else(PoisonError::into_inner);
            fd.take().map_or(-1, IntoRawFd::into_raw_fd)
        })
    })
}

/// The verified SPIFFE ID of the workload at the other end (for an accepted tunnel, the
/// client; for an opened one, the server). Valid until the tunnel is freed; NULL for NULL.
///
/// # Safety
///
/// `tunnel` is NULL or a live `mesh_tunnel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_tunnel_peer_id(tunnel: *const mesh_tunnel) -> *const c_char {
    boundary::value(std::ptr::null(), || {
        // SAFETY: documented contract of `tunnel`.
        unsafe { ptr::as_ref(tunnel) }.map_or(std::ptr::null(), |t| t.peer_id.as_ptr())
    })
}

/// For an accepted tunnel, the client's TCP address (`"ip:port"`); for an opened tunnel, an
/// empty string. Valid until the tunnel is freed; NULL for NULL.
///
/// # Safety
///
/// `tunnel` is NULL or a live `mesh_tunnel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_tunnel_peer_addr(tunnel: *const mesh_tunnel) -> *const c_char {
    boundary::value(std::ptr::null(), || {
        // SAFETY: documented contract of `tunnel`.
        unsafe { ptr::as_ref(tunnel) }.map_or(std::ptr::null(), |t| t.peer_addr.as_ptr())
    })
}

/// The port the tunnel was opened to (for an accepted tunnel, the port the client asked for);
/// 0 for NULL.
///
/// # Safety
///
/// `tunnel` is NULL or a live `mesh_tunnel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_tunnel_target_port(tunnel: *const mesh_tunnel) -> u16 {
    boundary::value(0, || {
        // SAFETY: documented contract of `tunnel`.
        unsafe { ptr::as_ref(tunnel) }.map_or(0, |t| t.target_port)
    })
}

/// How the tunnel stands now. After reading EOF from the socket, `MESH_TUNNEL_RESET` means the
/// tunnel was reset rather than closed. NULL reads as `MESH_TUNNEL_CLOSED`.
///
/// # Safety
///
/// `tunnel` is NULL or a live `mesh_tunnel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_tunnel_get_state(tunnel: *const mesh_tunnel) -> mesh_tunnel_state {
    boundary::value(mesh_tunnel_state::MESH_TUNNEL_CLOSED, || {
        // SAFETY: documented contract of `tunnel`.
        match unsafe { ptr::as_ref(tunnel) }.map(|t| t.bridge.get()) {
            Some(bridge::OPEN) => mesh_tunnel_state::MESH_TUNNEL_OPEN,
            Some(bridge::RESET) => mesh_tunnel_state::MESH_TUNNEL_RESET,
            _ => mesh_tunnel_state::MESH_TUNNEL_CLOSED,
        }
    })
}

/// Frees the handle, closing the socket unless it was taken. NULL is accepted.
///
/// # Safety
///
/// `tunnel` is NULL or a live `mesh_tunnel` that no other call is using, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_tunnel_free(tunnel: *mut mesh_tunnel) {
    boundary::value((), || {
        // Fine in a forked child too: the socket is this process's own copy, the rest is
        // plain memory.
        // SAFETY: documented contract of `tunnel`.
        drop(unsafe { ptr::take(tunnel) });
    });
}

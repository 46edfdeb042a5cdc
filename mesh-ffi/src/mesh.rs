//! `mesh_mesh`: one workload in the mesh, created from a configuration string.

use std::{
    ffi::{CString, c_char},
    sync::Arc,
};

use mesh_client::mesh::Mesh;

use crate::{
    boundary::{self, HandleState},
    error::{Error, mesh_error},
    ptr, runtime,
    runtime::ProcessRuntime,
    status::mesh_status,
};

/// A running workload: identity, discovery, outbound clients; the parent of tunnels, requests
/// and servers. Thread-safe: any number of threads may use one handle at once.
pub struct mesh_mesh {
    pub(crate) state: HandleState,
    pub(crate) rt: Arc<ProcessRuntime>,
    pub(crate) mesh: Mesh,
    spiffe_id: CString,
}

impl mesh_mesh {
    /// Runs `body` with the mesh, under the handle's fork and poison checks.
    pub(crate) fn with<R>(
        &self,
        body: impl FnOnce(&Arc<ProcessRuntime>, &Mesh) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.state.guard("mesh", || body(&self.rt, &self.mesh))
    }
}

/// Creates a workload from `config`: the mesh's YAML or JSON document, the same schema the
/// Rust API reads (`identity`, `services`, `inbound`, `policies`, `discovery`, ...). Unknown
/// fields are errors naming the field path. Starts the SVID refresh and discovery; the inbound
/// listener starts with `mesh_server_start`.
///
/// Waits at most `timeout_ms` milliseconds (0: no limit). On success `*mesh_out` is a new
/// handle to free with `mesh_mesh_free`; on failure it is NULL and `*error_out` (when
/// `error_out` is not NULL) says why (`MESH_ERR_CONFIG` names the field).
///
/// # Safety
///
/// `config` is NULL or a NUL-terminated string; `mesh_out` is NULL or writable;
/// `error_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_mesh_new(
    config: *const c_char,
    timeout_ms: u32,
    mesh_out: *mut *mut mesh_mesh,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `mesh_out`.
        let out = unsafe { ptr::out(mesh_out, "mesh_out", std::ptr::null_mut()) }?;
        // SAFETY: documented contract of `config`.
        let config = unsafe { ptr::str_arg(config, "config") }?.to_owned();
        let rt = runtime::get()?;
        let mesh = runtime::block(
            &rt,
            runtime::timeout(timeout_ms),
            "creating the mesh",
            async move { Mesh::from_yaml(&config).await.map_err(Error::from) },
        )?;
        let spiffe_id = CString::new(mesh.identity().as_str()).unwrap_or_default();
        *out = ptr::into_raw(mesh_mesh {
            state: HandleState::new(),
            rt,
            mesh,
            spiffe_id,
        });
        Ok(())
    })
}

/// This workload's SPIFFE ID (`spiffe://...`), valid until the mesh is freed; NULL when
/// `mesh` is NULL.
///
/// # Safety
///
/// `mesh` is NULL or a live `mesh_mesh`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_mesh_spiffe_id(mesh: *const mesh_mesh) -> *const c_char {
    boundary::value(std::ptr::null(), || {
        // SAFETY: documented contract of `mesh`.
        unsafe { ptr::as_ref(mesh) }.map_or(std::ptr::null(), |m| m.spiffe_id.as_ptr())
    })
}

/// Frees the mesh: its background tasks stop and its connections close. Tunnels already
/// handed out keep working until closed; servers keep running until freed. NULL is accepted.
/// In a forked child, nothing shared with the parent is touched (the memory is left as is).
///
/// # Safety
///
/// `mesh` is NULL or a live `mesh_mesh` that no other call is using, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_mesh_free(mesh: *mut mesh_mesh) {
    boundary::value((), || {
        // SAFETY: documented contract of `mesh`.
        if let Some(mesh) = unsafe { ptr::take(mesh) } {
            release(mesh);
        }
    });
}

/// Drops `mesh` inside its runtime (dropping sockets deregisters them there), or leaks it in a
/// forked child.
fn release(mesh: Box<mesh_mesh>) {
    if mesh.state.in_forked_child() {
        std::mem::forget(mesh);
        return;
    }
    let rt = mesh.rt.clone();
    let _entered = rt.tokio().enter();
    drop(mesh);
}

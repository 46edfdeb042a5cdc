//! The C ABI: the mesh's data path for Go, Python and any language with a C FFI.
//!
//! One Rust core behind a C ABI, so every language gets the same behaviour (identity, policy,
//! retries, balancing) by construction. The header `include/mesh.h` is generated from this
//! crate by a pinned cbindgen and committed; `scripts/check-header.sh` regenerates and diffs it.
//!
//! Conventions (see `README.md` for examples):
//! - Opaque handles named `mesh_<object>_<verb>`: `mesh_mesh` (a workload), `mesh_tunnel` (a
//!   tunnel as a socket file descriptor), `mesh_server` (the inbound listener), `mesh_request` /
//!   `mesh_response` (HTTP; bodies whole or streamed in chunks), `mesh_upload` (a request
//!   whose body is written in chunks), `mesh_error`. Each has one `*_free` function, which accepts NULL.
//! - Fallible calls return a [`mesh_status`] (stable numbers, never reused) and take an
//!   optional `mesh_error **error_out` receiving the message. Outputs are set (to NULL / -1 /
//!   0) before any work, so they are defined whatever happens. Every pointer is NULL-checked
//!   and every string UTF-8-checked.
//! - No panic crosses the boundary: it becomes `MESH_ERR_PANIC` and poisons the handle.
//! - The library owns a multi-threaded tokio runtime; calls block the calling thread, are
//!   thread-safe and take a `timeout_ms`. A handle used in a forked child answers
//!   `MESH_ERR_FORKED` instead of hanging on threads that do not exist there.
//!
//! Non-goals: behaviour of its own. This crate only translates between C and `mesh-client`.
//! It is the only crate in the workspace with `unsafe` code: pointer handling is confined to
//! `ptr.rs`, the host callback to `callback.rs`, and the runtime threads' signal mask to
//! `runtime.rs`, each use with its SAFETY argument.
// The exported types carry their C names (`mesh_mesh`), which is what the header shows.
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod boundary;
mod bridge;
mod callback;
mod destination;
mod error;
mod http;
mod mesh;
mod ptr;
mod response;
mod runtime;
mod server;
mod status;
mod tunnel;
mod upload;

use std::ffi::c_char;

pub use callback::mesh_authorize_callback;
pub use error::{mesh_error, mesh_error_free, mesh_error_message, mesh_error_status};
pub use http::{
    mesh_request, mesh_request_add_header, mesh_request_free, mesh_request_new, mesh_request_send,
    mesh_request_set_body, mesh_request_set_response_limit, mesh_request_start,
};
pub use mesh::{mesh_mesh, mesh_mesh_free, mesh_mesh_new, mesh_mesh_spiffe_id};
pub use response::{
    mesh_response, mesh_response_body, mesh_response_free, mesh_response_header_count,
    mesh_response_header_name, mesh_response_header_value, mesh_response_read,
    mesh_response_status,
};
pub use server::{
    mesh_server, mesh_server_accept, mesh_server_close, mesh_server_free, mesh_server_port,
    mesh_server_shutdown, mesh_server_start,
};
pub use status::{mesh_status, mesh_status_name};
pub use tunnel::{
    mesh_tunnel, mesh_tunnel_connect, mesh_tunnel_fd, mesh_tunnel_free, mesh_tunnel_get_state,
    mesh_tunnel_peer_addr, mesh_tunnel_peer_id, mesh_tunnel_state, mesh_tunnel_take_fd,
    mesh_tunnel_target_port,
};
pub use upload::{
    mesh_upload, mesh_upload_finish, mesh_upload_free, mesh_upload_start, mesh_upload_write,
};

/// The library's version (`"0.1.0"`), a static string: never free it. Bindings compare it with
/// the version they were written for.
#[unsafe(no_mangle)]
pub extern "C" fn mesh_version() -> *const c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}

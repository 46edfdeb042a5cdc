//! Failures: the internal error type and the `mesh_error` object handed to C.
//!
//! There is deliberately no thread-local "last error": goroutines and Python threads move
//! between OS threads, so the error travels with the call that failed, through its
//! `mesh_error **error_out` argument.

use std::ffi::{CString, c_char};

use mesh_client::{hbone::TunnelError, mesh::MeshError, resilience::RequestError};

use crate::{boundary, ptr, status::mesh_status};

/// A failed call: a status and a message saying what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Error {
    pub(crate) status: mesh_status,
    pub(crate) message: String,
}

impl Error {
    pub(crate) fn new(status: mesh_status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(argument: &str) -> Self {
        Self::new(
            mesh_status::MESH_ERR_NULL_ARGUMENT,
            format!("argument `{argument}` is NULL; pass a valid pointer"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(mesh_status::MESH_ERR_INVALID_ARGUMENT, message)
    }

    pub(crate) fn io(what: &str, e: &std::io::Error) -> Self {
        Self::new(mesh_status::MESH_ERR_IO, format!("{what}: {e}"))
    }

    pub(crate) fn panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Self::new(
            mesh_status::MESH_ERR_PANIC,
            format!(
                "internal error (panic: {detail}); the handle is poisoned: free it and create a \
                 new one, and please report this"
            ),
        )
    }

    pub(crate) fn closed(what: &str) -> Self {
        Self::new(mesh_status::MESH_ERR_CLOSED, format!("{what} is closed"))
    }
}

/// The status for a tunnel that could not be opened.
fn tunnel_status(e: &TunnelError) -> mesh_status {
    match e {
        TunnelError::Denied { .. } => mesh_status::MESH_ERR_DENIED,
        TunnelError::Tls { .. } => mesh_status::MESH_ERR_TLS,
        TunnelError::Timeout { .. } => mesh_status::MESH_ERR_TIMEOUT,
        TunnelError::InvalidRequest(_) => mesh_status::MESH_ERR_INVALID_ARGUMENT,
        _ => mesh_status::MESH_ERR_UNAVAILABLE,
    }
}

impl From<MeshError> for Error {
    fn from(e: MeshError) -> Self {
        let status = match &e {
            MeshError::Config(_)
            | MeshError::Identity(_)
            | MeshError::Discovery(_)
            | MeshError::Policy { .. } => mesh_status::MESH_ERR_CONFIG,
            MeshError::Inbound { .. } => mesh_status::MESH_ERR_IO,
            MeshError::BadTarget(_) => mesh_status::MESH_ERR_INVALID_ARGUMENT,
            MeshError::NoEndpoint { .. } => mesh_status::MESH_ERR_NO_ENDPOINT,
            MeshError::Overflow { .. } => mesh_status::MESH_ERR_OVERLOADED,
            MeshError::Tunnel { source, .. } => tunnel_status(source),
            _ => mesh_status::MESH_ERR_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        let status = match &e {
            RequestError::Overflow { .. } => mesh_status::MESH_ERR_OVERLOADED,
            RequestError::Timeout { .. } => mesh_status::MESH_ERR_TIMEOUT,
            RequestError::Invalid(_) => mesh_status::MESH_ERR_INVALID_ARGUMENT,
            RequestError::Failed { source, .. } => {
                // The tunnel's own failure, wherever hyper wrapped it, says most.
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
                let mut status = mesh_status::MESH_ERR_HTTP;
                while let Some(c) = cause {
                    if let Some(tunnel) = c.downcast_ref::<TunnelError>() {
                        status = tunnel_status(tunnel);
                        break;
                    }
                    if let Some(MeshError::NoEndpoint { .. }) = c.downcast_ref::<MeshError>() {
                        status = mesh_status::MESH_ERR_NO_ENDPOINT;
                        break;
                    }
                    cause = c.source();
                }
                status
            }
            _ => mesh_status::MESH_ERR_HTTP,
        };
        // Include the causes: hyper's top-level messages alone ("client error (Connect)") do
        // not say what to fix.
        let mut message = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let text = c.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            cause = c.source();
        }
        Self::new(status, message)
    }
}

/// Why a call failed: its status and a message. Returned through `mesh_error **error_out`
/// arguments; the caller owns it and frees it with `mesh_error_free`.
pub struct mesh_error {
    status: mesh_status,
    message: CString,
}

impl From<Error> for mesh_error {
    fn from(e: Error) -> Self {
        // Interior NULs cannot be carried by a C string; they never carry meaning here.
        let text = e.message.replace('\0', "\\0");
        Self {
            status: e.status,
            message: CString::new(text).unwrap_or_default(),
        }
    }
}

/// The status of the failed call that produced `error` (`MESH_ERR_NULL_ARGUMENT` for NULL).
///
/// # Safety
///
/// `error` is NULL or a live `mesh_error` from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_error_status(error: *const mesh_error) -> mesh_status {
    boundary::value(mesh_status::MESH_ERR_PANIC, || {
        // SAFETY: the caller passes NULL or a live error object (documented above).
        match unsafe { ptr::as_ref(error) } {
            Some(e) => e.status,
            None => mesh_status::MESH_ERR_NULL_ARGUMENT,
        }
    })
}

/// The message of `error`: what was wrong and what to do. Valid until `error` is freed; NULL
/// when `error` is NULL.
///
/// # Safety
///
/// `error` is NULL or a live `mesh_error` from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_error_message(error: *const mesh_error) -> *const c_char {
    boundary::value(std::ptr::null(), || {
        // SAFETY: the caller passes NULL or a live error object (documented above).
        unsafe { ptr::as_ref(error) }.map_or(std::ptr::null(), |e| e.message.as_ptr())
    })
}

/// Frees an error object. NULL is accepted and ignored.
///
/// # Safety
///
/// `error` is NULL or a `mesh_error` from this library not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_error_free(error: *mut mesh_error) {
    boundary::value((), || {
        // SAFETY: the caller passes NULL or an error object it owns (documented above).
        drop(unsafe { ptr::take(error) });
    });
}

//! Stable numeric status codes: what every fallible export returns.
//!
//! A code's number never changes and is never reused for another meaning; new codes are
//! appended. Bindings compare numerically (Go receives the C enum as `uint32`).

use std::ffi::{CStr, c_char};

use crate::boundary;

/// The outcome of a call. `MESH_OK` (0) is success; every other value names a failure class,
/// and the optional `mesh_error` object carries the message.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum mesh_status {
    /// Success.
    MESH_OK = 0,
    /// A required pointer argument was NULL.
    MESH_ERR_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    MESH_ERR_INVALID_UTF8 = 2,
    /// An argument had a value the call cannot use (a malformed target, URL, method or header).
    MESH_ERR_INVALID_ARGUMENT = 3,
    /// The configuration (or a file it names: policies, identity) is invalid; the message names
    /// the field.
    MESH_ERR_CONFIG = 4,
    /// A bug inside the library panicked; the handle involved is poisoned.
    MESH_ERR_PANIC = 5,
    /// The handle was poisoned by an earlier panic and refuses further use; free it.
    MESH_ERR_POISONED = 6,
    /// The handle was created in another process: this is a forked child. Create new handles.
    MESH_ERR_FORKED = 7,
    /// The call's timeout expired before it finished.
    MESH_ERR_TIMEOUT = 8,
    /// The service is known but has no reachable endpoint for the port (undeclared port, no
    /// healthy or non-ejected endpoint, or none with a SPIFFE identity to verify).
    MESH_ERR_NO_ENDPOINT = 9,
    /// Mutual TLS failed, including a peer whose SPIFFE ID is not the one expected.
    MESH_ERR_TLS = 10,
    /// The destination's authorization policy (or its host callback) refused the tunnel.
    MESH_ERR_DENIED = 11,
    /// The destination could not be reached or could not reach its target (connection refused,
    /// HTTP 503, HTTP/2 failure).
    MESH_ERR_UNAVAILABLE = 12,
    /// A circuit breaker refused the call (too many connections or requests in flight).
    MESH_ERR_OVERLOADED = 13,
    /// An HTTP request failed without a response, or its response was unusable (too large).
    MESH_ERR_HTTP = 14,
    /// An operating-system call failed (socket creation, binding the listener).
    MESH_ERR_IO = 15,
    /// The server was closed or shut down.
    MESH_ERR_CLOSED = 16,
    /// A blocking call was made from a thread of the library's runtime (inside a callback),
    /// where waiting could deadlock; call it from another thread.
    MESH_ERR_WRONG_THREAD = 17,
    /// The mesh does not know the service at all (not in `services:`, in no discovery backend,
    /// named by no VirtualService): declare or register it, or fix the name. (Tunnels to unknown services
    /// used to answer `MESH_ERR_NO_ENDPOINT`, which now means a known service without a
    /// reachable endpoint; the Go and Python error types for this code still match
    /// `NO_ENDPOINT` checks.)
    MESH_ERR_UNKNOWN_SERVICE = 18,
}

impl mesh_status {
    /// Every code, in numeric order (for tests and `mesh_status_name`).
    pub(crate) const ALL: [mesh_status; 19] = [
        Self::MESH_OK,
        Self::MESH_ERR_NULL_ARGUMENT,
        Self::MESH_ERR_INVALID_UTF8,
        Self::MESH_ERR_INVALID_ARGUMENT,
        Self::MESH_ERR_CONFIG,
        Self::MESH_ERR_PANIC,
        Self::MESH_ERR_POISONED,
        Self::MESH_ERR_FORKED,
        Self::MESH_ERR_TIMEOUT,
        Self::MESH_ERR_NO_ENDPOINT,
        Self::MESH_ERR_TLS,
        Self::MESH_ERR_DENIED,
        Self::MESH_ERR_UNAVAILABLE,
        Self::MESH_ERR_OVERLOADED,
        Self::MESH_ERR_HTTP,
        Self::MESH_ERR_IO,
        Self::MESH_ERR_CLOSED,
        Self::MESH_ERR_WRONG_THREAD,
        Self::MESH_ERR_UNKNOWN_SERVICE,
    ];

    /// The code's constant name, as a C string.
    pub fn name(self) -> &'static CStr {
        match self {
            Self::MESH_OK => c"MESH_OK",
            Self::MESH_ERR_NULL_ARGUMENT => c"MESH_ERR_NULL_ARGUMENT",
            Self::MESH_ERR_INVALID_UTF8 => c"MESH_ERR_INVALID_UTF8",
            Self::MESH_ERR_INVALID_ARGUMENT => c"MESH_ERR_INVALID_ARGUMENT",
            Self::MESH_ERR_CONFIG => c"MESH_ERR_CONFIG",
            Self::MESH_ERR_PANIC => c"MESH_ERR_PANIC",
            Self::MESH_ERR_POISONED => c"MESH_ERR_POISONED",
            Self::MESH_ERR_FORKED => c"MESH_ERR_FORKED",
            Self::MESH_ERR_TIMEOUT => c"MESH_ERR_TIMEOUT",
            Self::MESH_ERR_NO_ENDPOINT => c"MESH_ERR_NO_ENDPOINT",
            Self::MESH_ERR_TLS => c"MESH_ERR_TLS",
            Self::MESH_ERR_DENIED => c"MESH_ERR_DENIED",
            Self::MESH_ERR_UNAVAILABLE => c"MESH_ERR_UNAVAILABLE",
            Self::MESH_ERR_OVERLOADED => c"MESH_ERR_OVERLOADED",
            Self::MESH_ERR_HTTP => c"MESH_ERR_HTTP",
            Self::MESH_ERR_IO => c"MESH_ERR_IO",
            Self::MESH_ERR_CLOSED => c"MESH_ERR_CLOSED",
            Self::MESH_ERR_WRONG_THREAD => c"MESH_ERR_WRONG_THREAD",
            Self::MESH_ERR_UNKNOWN_SERVICE => c"MESH_ERR_UNKNOWN_SERVICE",
        }
    }

    /// The code with this number, if there is one.
    pub fn from_u32(code: u32) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }
}

/// The constant name of a status code (`"MESH_ERR_TIMEOUT"`), or NULL for a number that is no
/// status code. The string is static: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn mesh_status_name(status: u32) -> *const c_char {
    boundary::value(std::ptr::null(), || {
        mesh_status::from_u32(status).map_or(std::ptr::null(), |s| s.name().as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::mesh_status;

    #[test]
    fn codes_are_dense_and_named() {
        for (i, status) in mesh_status::ALL.iter().enumerate() {
            assert_eq!(*status as u32 as usize, i);
            assert_eq!(mesh_status::from_u32(i as u32), Some(*status));
            assert!(status.name().to_str().unwrap().starts_with("MESH_"));
        }
        assert_eq!(mesh_status::from_u32(mesh_status::ALL.len() as u32), None);
    }
}

//! The host's optional allow/deny callback for inbound tunnels, asked after the configured
//! authorization policies allowed a tunnel.

use std::{
    ffi::{CString, c_char, c_int, c_void},
    sync::{PoisonError, RwLock},
};

use mesh_client::hbone::{InboundPolicy, InboundRequest, Verdict};

/// Asked about every inbound tunnel the configured policies allow, before it is accepted:
/// return non-zero to allow it, 0 to deny it (the client gets HTTP 401, `MESH_ERR_DENIED`).
///
/// `peer_spiffe_id` is the client's verified SPIFFE ID and `peer_addr` its TCP address
/// (`"ip:port"`); both are valid only during the call. `target_port` is the port the client
/// asked for. Runs on one of the library's threads, possibly on several at once: it must be
/// thread-safe, fast, must not block, and must not call blocking mesh functions.
pub type mesh_authorize_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        peer_spiffe_id: *const c_char,
        peer_addr: *const c_char,
        target_port: u16,
    ) -> c_int,
>;

/// The host's pointer, passed back to it untouched.
struct UserData(*mut c_void);

// SAFETY: the pointer is never dereferenced here, only handed back to the host's callback;
// `mesh_server_start` documents that the callback and its data must be usable from any thread.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

/// The callback with its data. Revoked when the server is freed, so the host's data is never
/// used after `mesh_server_free` returns.
pub(crate) struct HostCheck {
    callback: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, u16) -> c_int,
    user_data: UserData,
    /// Held for reading during each call; revoking takes it for writing, so it waits for
    /// running calls to finish.
    revoked: RwLock<bool>,
}

impl HostCheck {
    pub(crate) fn new(callback: mesh_authorize_callback, user_data: *mut c_void) -> Option<Self> {
        callback.map(|callback| Self {
            callback,
            user_data: UserData(user_data),
            revoked: RwLock::new(false),
        })
    }

    /// No call starts after this returns, and none is running.
    pub(crate) fn revoke(&self) {
        *self.revoked.write().unwrap_or_else(PoisonError::into_inner) = true;
    }
}

impl InboundPolicy for HostCheck {
    fn check(&self, request: &InboundRequest<'_>) -> Verdict {
        let revoked = self.revoked.read().unwrap_or_else(PoisonError::into_inner);
        if *revoked {
            return Verdict::Deny("the server is closed".to_owned());
        }
        let peer = CString::new(request.peer.as_str()).unwrap_or_default();
        let addr = CString::new(request.peer_addr.to_string()).unwrap_or_default();
        // SAFETY: the host registered this function and data for exactly this call shape and
        // promised they are usable from any thread until the server is freed, which cannot
        // happen while we hold the read lock. The strings outlive the call.
        let answer = unsafe {
            (self.callback)(
                self.user_data.0,
                peer.as_ptr(),
                addr.as_ptr(),
                request.target.port(),
            )
        };
        if answer != 0 {
            Verdict::Allow
        } else {
            Verdict::Deny("refused by the host's authorization callback".to_owned())
        }
    }
}

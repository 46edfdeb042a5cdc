//! The panic boundary every export runs inside, and the state every handle carries: the
//! process it was created in (fork detection) and whether a panic poisoned it.
//!
//! A Rust panic must never unwind into C: each export catches it, answers `MESH_ERR_PANIC`,
//! and poisons the handle it was working on, which then refuses every further call with
//! `MESH_ERR_POISONED` (its state may be half-updated) but can still be freed.

use std::{
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    sync::atomic::{AtomicBool, Ordering},
};

use crate::{
    error::{Error, mesh_error},
    ptr,
    status::mesh_status,
};

/// Runs the body of an export that returns a status, with the optional error output.
///
/// `*error_out` is cleared first (outputs are set before any work), then set to a new error
/// object when the body fails or panics.
pub(crate) fn status(
    error_out: *mut *mut mesh_error,
    body: impl FnOnce() -> Result<(), Error>,
) -> mesh_status {
    // SAFETY: every export documents `error_out` as NULL or a writable `mesh_error *` slot.
    unsafe { ptr::set_optional(error_out, std::ptr::null_mut()) };
    let error = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return mesh_status::MESH_OK,
        Ok(Err(e)) => e,
        Err(payload) => Error::panic(payload.as_ref()),
    };
    let status = error.status;
    if error_out.is_null() {
        return status;
    }
    // Building the error object allocates; even that must not unwind into C.
    if let Ok(object) = catch_unwind(AssertUnwindSafe(|| ptr::into_raw(mesh_error::from(error)))) {
        // SAFETY: as above.
        unsafe { ptr::set_optional(error_out, object) };
    }
    status
}

/// Runs the body of an export that returns a plain value (accessors, frees); a panic yields
/// `fallback`.
pub(crate) fn value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// What every handle knows about itself, beyond its payload.
#[derive(Debug)]
pub(crate) struct HandleState {
    /// The process that created the handle.
    pid: u32,
    poisoned: AtomicBool,
}

impl HandleState {
    pub(crate) fn new() -> Self {
        Self {
            pid: std::process::id(),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Whether this is a forked child of the process that created the handle: the runtime
    /// threads it relies on do not exist here, and its sockets are shared with the parent.
    pub(crate) fn in_forked_child(&self) -> bool {
        std::process::id() != self.pid
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Refuses use in a forked child or after a panic.
    pub(crate) fn check(&self, what: &str) -> Result<(), Error> {
        if self.in_forked_child() {
            return Err(Error::new(
                mesh_status::MESH_ERR_FORKED,
                format!(
                    "this {what} was created by process {} and cannot be used in a forked child \
                     (its threads and connections stay with the parent); create a new one in \
                     the child",
                    self.pid
                ),
            ));
        }
        if self.is_poisoned() {
            return Err(Error::new(
                mesh_status::MESH_ERR_POISONED,
                format!("this {what} is poisoned by an earlier internal error; free it"),
            ));
        }
        Ok(())
    }

    /// Runs `body` on the handle: refused when [`check`](Self::check) fails; a panic (or a
    /// panic reported by a task working for it) poisons the handle and travels on to the
    /// export's boundary.
    pub(crate) fn guard<R>(
        &self,
        what: &str,
        body: impl FnOnce() -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.check(what)?;
        match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Err(e)) if e.status == mesh_status::MESH_ERR_PANIC => {
                self.poison();
                Err(e)
            }
            Ok(result) => result,
            Err(payload) => {
                self.poison();
                resume_unwind(payload)
            }
        }
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_returns_the_panic_status_and_poisons_the_handle() {
        let handle = HandleState::new();
        let mut error = std::ptr::null_mut();
        let code = status(&mut error, || {
            handle.guard("test handle", || -> Result<(), Error> { panic!("boom") })
        });
        assert_eq!(code, mesh_status::MESH_ERR_PANIC);
        // SAFETY: the boundary just created it.
        let error = unsafe { ptr::take(error) }.unwrap();
        let text = mesh_error_text(&error);
        assert!(text.contains("boom") && text.contains("poisoned"), "{text}");

        assert!(handle.is_poisoned());
        let mut error = std::ptr::null_mut();
        let code = status(&mut error, || handle.guard("test handle", || Ok(())));
        assert_eq!(code, mesh_status::MESH_ERR_POISONED);
        // SAFETY: as above.
        drop(unsafe { ptr::take(error) });
    }

    #[test]
    fn a_panic_reported_by_a_task_poisons_too() {
        let handle = HandleState::new();
        let result: Result<(), Error> = handle.guard("test handle", || {
            Err(Error::new(mesh_status::MESH_ERR_PANIC, "task panicked"))
        });
        assert!(result.is_err());
        assert!(handle.is_poisoned());
    }

    #[test]
    fn success_clears_the_error_output() {
        let mut error = std::ptr::dangling_mut::<mesh_error>();
        assert_eq!(status(&mut error, || Ok(())), mesh_status::MESH_OK);
        assert!(error.is_null());
        // A NULL error output is allowed.
        let code = status(std::ptr::null_mut(), || Err(Error::invalid("x")));
        assert_eq!(code, mesh_status::MESH_ERR_INVALID_ARGUMENT);
    }

    fn mesh_error_text(error: &mesh_error) -> String {
        // SAFETY: a live error object.
        let message = unsafe { crate::error::mesh_error_message(error) };
        // SAFETY: a NUL-terminated string owned by `error`.
        unsafe { std::ffi::CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}

//! Every dereference of a pointer received from C happens here.
//!
//! The exports state each pointer's contract in their `# Safety` sections; these helpers turn
//! a pointer that meets it into a Rust reference or value, and check what can be checked
//! (NULL, UTF-8). Nothing else in the crate touches raw pointers.

use std::ffi::{CStr, c_char};

use crate::error::Error;

/// Borrows `p`, or `None` when it is NULL.
///
/// # Safety
///
/// `p` is NULL or points to a live, properly aligned `T` that stays valid and is not mutated
/// (except through interior mutability) for `'a`.
pub(crate) unsafe fn as_ref<'a, T>(p: *const T) -> Option<&'a T> {
    // SAFETY: guaranteed by the caller; `as_ref` itself handles NULL.
    unsafe { p.as_ref() }
}

/// Borrows the required argument `p`; NULL is an error naming `name`.
///
/// # Safety
///
/// As for [`as_ref`].
pub(crate) unsafe fn arg<'a, T>(p: *const T, name: &str) -> Result<&'a T, Error> {
    // SAFETY: forwarded contract.
    unsafe { as_ref(p) }.ok_or_else(|| Error::null(name))
}

/// Borrows the required argument `p` mutably; NULL is an error naming `name`.
///
/// # Safety
///
/// `p` is NULL or points to a live, aligned `T` that nothing else accesses for `'a`.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Error> {
    // SAFETY: guaranteed by the caller; `as_mut` handles NULL.
    unsafe { p.as_mut() }.ok_or_else(|| Error::null(name))
}

/// Reads the required NUL-terminated UTF-8 string argument `p`.
///
/// # Safety
///
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::null(name));
    }
    // SAFETY: non-NULL and NUL-terminated, guaranteed by the caller.
    let bytes = unsafe { CStr::from_ptr(p) };
    bytes.to_str().map_err(|e| {
        Error::new(
            crate::status::mesh_status::MESH_ERR_INVALID_UTF8,
            format!(
                "argument `{name}` is not valid UTF-8 (invalid byte at offset {}); pass UTF-8 text",
                e.valid_up_to()
            ),
        )
    })
}

/// Reads the byte buffer `(p, len)`; `p` may be NULL only when `len` is 0.
///
/// # Safety
///
/// When `len > 0`, `p` points to `len` readable bytes that stay valid and unchanged for `'a`.
pub(crate) unsafe fn bytes_arg<'a>(
    p: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::null(name));
    }
    // SAFETY: non-NULL with `len` readable bytes, guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Borrows the writable byte buffer `(p, len)`; `p` may be NULL only when `len` is 0.
///
/// # Safety
///
/// When `len > 0`, `p` points to `len` writable bytes that nothing else accesses for `'a`.
pub(crate) unsafe fn bytes_out<'a>(
    p: *mut u8,
    len: usize,
    name: &str,
) -> Result<&'a mut [u8], Error> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Error::null(name));
    }
    // SAFETY: non-NULL with `len` writable bytes, exclusively ours, guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Prepares the required output argument `p`: NULL is an error naming `name`; otherwise it is
/// set to `initial` at once, so the caller sees a defined value even when the call fails.
///
/// # Safety
///
/// `p` is NULL or points to writable, aligned memory for a `T` (whose old value, if any, needs
/// no drop).
pub(crate) unsafe fn out<'a, T>(p: *mut T, name: &str, initial: T) -> Result<&'a mut T, Error> {
    if p.is_null() {
        return Err(Error::null(name));
    }
    // SAFETY: non-NULL, writable and aligned, guaranteed by the caller; `write` does not read
    // or drop the previous contents.
    unsafe {
        p.write(initial);
        Ok(&mut *p)
    }
}

/// Sets the optional output `p` to `value` when it is not NULL.
///
/// # Safety
///
/// As for [`out`].
pub(crate) unsafe fn set_optional<T>(p: *mut T, value: T) {
    if !p.is_null() {
        // SAFETY: non-NULL, writable and aligned, guaranteed by the caller.
        unsafe { p.write(value) };
    }
}

/// Moves `value` to the heap and hands its ownership to C.
pub(crate) fn into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back ownership of an object created by [`into_raw`]; `None` for NULL.
///
/// # Safety
///
/// `p` is NULL or was returned by [`into_raw`] for this `T` and not taken back before; no
/// other call uses it concurrently or afterwards.
pub(crate) unsafe fn take<T>(p: *mut T) -> Option<Box<T>> {
    if p.is_null() {
        None
    } else {
        // SAFETY: it came from `Box::into_raw` and is owned by this call, guaranteed by the
        // caller.
        Some(unsafe { Box::from_raw(p) })
    }
}

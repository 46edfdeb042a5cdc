//! `mesh_response`: an HTTP response's status and headers, and its body either whole in memory
//! (`mesh_request_send`) or streamed chunk by chunk (`mesh_request_start`, `mesh_upload_finish`)
//! so a large body never has to fit in memory.

use std::{
    ffi::{CString, c_char},
    future::poll_fn,
    pin::Pin,
    sync::Arc,
    task::Poll,
};

use bytes::{Buf, Bytes};
use http::response::Parts;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::body::Incoming;

use crate::{
    boundary,
    error::{Error, mesh_error},
    ptr, runtime,
    runtime::ProcessRuntime,
    status::mesh_status,
};

/// An HTTP response: status, headers (in received order) and body. Reading the body
/// (`mesh_response_read`) needs the handle to itself; the accessors may be called from any
/// thread.
pub struct mesh_response {
    status: u16,
    headers: Vec<(CString, CString)>,
    /// The whole body, for responses read completely by `mesh_request_send`.
    whole: Option<Bytes>,
    reader: Arc<tokio::sync::Mutex<BodyReader>>,
    rt: Arc<ProcessRuntime>,
    /// Names the request in error messages (`"GET http://..."`).
    what: String,
}

/// What is left of the body: bytes received but not yet handed to the host, and the rest of
/// the stream (`None` once it ended).
struct BodyReader {
    pending: Bytes,
    stream: Option<Incoming>,
    /// A failure met while taking what had arrived with the head, reported by the next read.
    failed: Option<String>,
}

impl BodyReader {
    /// Takes what the stream already holds without waiting (a small body often arrives with
    /// the head), and notices its end, so reading such a body never has to wait on the
    /// runtime. Called on the runtime, before the response is handed to the host.
    async fn prefetch(&mut self) {
        while self.pending.is_empty() {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            if stream.is_end_stream() {
                self.stream = None;
                return;
            }
            let frame = poll_fn(|cx| Poll::Ready(Pin::new(&mut *stream).poll_frame(cx))).await;
            match frame {
                Poll::Pending => return,
                Poll::Ready(None) => self.stream = None,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending = data;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.stream = None;
                    self.failed = Some(e.to_string());
                }
            }
        }
        if self.stream.as_ref().is_some_and(Incoming::is_end_stream) {
            self.stream = None;
        }
    }
}

impl mesh_response {
    fn new(
        parts: &Parts,
        whole: Option<Bytes>,
        stream: Option<Incoming>,
        rt: Arc<ProcessRuntime>,
        what: String,
    ) -> Self {
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    CString::new(name.as_str()).unwrap_or_default(),
                    CString::new(value.as_bytes()).unwrap_or_default(),
                )
            })
            .collect();
        Self {
            status: parts.status.as_u16(),
            headers,
            reader: Arc::new(tokio::sync::Mutex::new(BodyReader {
                pending: whole.clone().unwrap_or_default(),
                stream,
                failed: None,
            })),
            whole,
            rt,
            what,
        }
    }

    /// A response whose body was read completely.
    pub(crate) fn whole(parts: &Parts, body: Bytes, rt: Arc<ProcessRuntime>, what: String) -> Self {
        Self::new(parts, Some(body), None, rt, what)
    }

    /// A response whose body is read as it arrives. Must run on the runtime.
    pub(crate) async fn streaming(
        parts: &Parts,
        body: Incoming,
        rt: Arc<ProcessRuntime>,
        what: String,
    ) -> Self {
        let response = Self::new(parts, None, Some(body), rt, what);
        response.reader.lock().await.prefetch().await;
        response
    }

    /// Copies up to `buf.len()` body bytes into `buf`; 0 at the end of the body.
    fn read(&self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Fast path: bytes already here are copied without a trip through the runtime.
        if let Ok(mut reader) = self.reader.try_lock() {
            if reader.pending.is_empty() {
                if let Some(e) = reader.failed.take() {
                    return Err(Error::new(
                        mesh_status::MESH_ERR_HTTP,
                        format!("reading the response body of {}: {e}", self.what),
                    ));
                }
            }
            if !reader.pending.is_empty() || reader.stream.is_none() {
                return Ok(copy_out(&mut reader.pending, buf));
            }
        }
        let reader = self.reader.clone();
        let what = format!("reading the response body of {}", self.what);
        let message = what.clone();
        runtime::block(&self.rt, runtime::timeout(timeout_ms), &what, async move {
            let mut reader = reader.lock_owned().await;
            while reader.pending.is_empty() {
                let Some(stream) = reader.stream.as_mut() else {
                    break;
                };
                match stream.frame().await {
                    None => reader.stream = None,
                    Some(Ok(frame)) => {
                        // Trailers carry no body bytes; they are not exposed.
                        if let Ok(data) = frame.into_data() {
                            reader.pending = data;
                        }
                        // Knowing the end now spares the host a trip here just to learn it.
                        if reader.stream.as_ref().is_some_and(Incoming::is_end_stream) {
                            reader.stream = None;
                        }
                    }
                    Some(Err(e)) => {
                        reader.stream = None;
                        return Err(Error::new(
                            mesh_status::MESH_ERR_HTTP,
                            format!(
                                "{message}: {e} (the connection failed or the server reset the \
                                 stream before the body ended)"
                            ),
                        ));
                    }
                }
            }
            Ok(reader)
        })
        .map(|mut reader| copy_out(&mut reader.pending, buf))
    }
}

fn copy_out(pending: &mut Bytes, buf: &mut [u8]) -> usize {
    let n = pending.len().min(buf.len());
    buf[..n].copy_from_slice(&pending[..n]);
    pending.advance(n);
    n
}

impl Drop for mesh_response {
    fn drop(&mut self) {
        // An unread body holds hyper's connection state; release it inside the runtime.
        if let Ok(mut reader) = self.reader.try_lock() {
            if let Some(stream) = reader.stream.take() {
                let _entered = self.rt.tokio().enter();
                drop(stream);
            }
        }
    }
}

/// The response's HTTP status code; 0 for NULL.
///
/// # Safety
///
/// `response` is NULL or a live `mesh_response`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_response_status(response: *const mesh_response) -> u16 {
    boundary::value(0, || {
        // SAFETY: documented contract of `response`.
        unsafe { ptr::as_ref(response) }.map_or(0, |r| r.status)
    })
}

/// How many header lines the response has; 0 for NULL.
///
/// # Safety
///
/// `response` is NULL or a live `mesh_response`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_response_header_count(response: *const mesh_response) -> usize {
    boundary::value(0, || {
        // SAFETY: documented contract of `response`.
        unsafe { ptr::as_ref(response) }.map_or(0, |r| r.headers.len())
    })
}

/// The name (lower case) of header line `index`; NULL when out of range or for NULL. Valid
/// until the response is freed.
///
/// # Safety
///
/// `response` is NULL or a live `mesh_response`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_response_header_name(
    response: *const mesh_response,
    index: usize,
) -> *const c_char {
    boundary::value(std::ptr::null(), || {
        // SAFETY: documented contract of `response`.
        unsafe { ptr::as_ref(response) }
            .and_then(|r| r.headers.get(index))
            .map_or(std::ptr::null(), |(name, _)| name.as_ptr())
    })
}

/// The value of header line `index` (its bytes as received, NUL-terminated); NULL when out of
/// range or for NULL. Valid until the response is freed.
///
/// # Safety
///
/// `response` is NULL or a live `mesh_response`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_response_header_value(
    response: *const mesh_response,
    index: usize,
) -> *const c_char {
    boundary::value(std::ptr::null(), || {
        // SAFETY: documented contract of `response`.
        unsafe { ptr::as_ref(response) }
            .and_then(|r| r.headers.get(index))
            .map_or(std::ptr::null(), |(_, value)| value.as_ptr())
    })
}

/// The whole response body of a `mesh_request_send` response: `*data_out` points to
/// `*len_out` bytes owned by the response (valid until it is freed; NULL with length 0 for an
/// empty body). A streamed response (`mesh_request_start`, `mesh_upload_finish`) has no whole
/// body: this fails with `MESH_ERR_INVALID_ARGUMENT`; read it with `mesh_response_read`.
///
/// # Safety
///
/// `response` is NULL or a live `mesh_response`; `data_out`, `len_out` and `error_out` are
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_response_body(
    response: *const mesh_response,
    data_out: *mut *const u8,
    len_out: *mut usize,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `data_out`.
        let data = unsafe { ptr::out(data_out, "data_out", std::ptr::null()) }?;
        // SAFETY: documented contract of `len_out`.
        let len = unsafe { ptr::out(len_out, "len_out", 0) }?;
        // SAFETY: documented contract of `response`.
        let response = unsafe { ptr::arg(response, "response") }?;
        let Some(body) = &response.whole else {
            return Err(Error::invalid(
                "this response streams its body (it came from mesh_request_start or \
                 mesh_upload_finish); read it with mesh_response_read",
            ));
        };
        if !body.is_empty() {
            *data = body.as_ptr();
            *len = body.len();
        }
        Ok(())
    })
}

/// Reads the next part of the body into `buf` (at most `capacity` bytes) and sets `*read_out`
/// to the number of bytes copied: 0 means the body ended. Blocks until some bytes arrive, for
/// at most `timeout_ms` milliseconds (0: no limit); a timeout loses nothing, the next call
/// continues. Works for every response; for a `mesh_request_send` response it reads through
/// the same bytes `mesh_response_body` shows. A body cut off by a failed connection or a
/// stream reset fails with `MESH_ERR_HTTP`.
///
/// # Safety
///
/// `response` is NULL or a live `mesh_response`; `buf` points to `capacity` writable bytes
/// (or is NULL with `capacity` 0); `read_out` and `error_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_response_read(
    response: *const mesh_response,
    buf: *mut u8,
    capacity: usize,
    timeout_ms: u32,
    read_out: *mut usize,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `read_out`.
        let out = unsafe { ptr::out(read_out, "read_out", 0) }?;
        // SAFETY: documented contract of `response`.
        let response = unsafe { ptr::arg(response, "response") }?;
        // SAFETY: documented contract of `buf` and `capacity`.
        let buf = unsafe { ptr::bytes_out(buf, capacity, "buf") }?;
        *out = response.read(buf, timeout_ms)?;
        Ok(())
    })
}

/// Frees a response (an unread streamed body is abandoned). NULL is accepted.
///
/// # Safety
///
/// `response` is NULL or a live `mesh_response` no other call is using, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_response_free(response: *mut mesh_response) {
    boundary::value((), || {
        // SAFETY: documented contract of `response`.
        drop(unsafe { ptr::take(response) });
    });
}

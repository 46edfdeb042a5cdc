//! `mesh_upload`: an HTTP request whose body the host writes in chunks, so a large body is
//! never held whole in memory.
//!
//! The exchange runs on one HBONE tunnel opened with `Mesh::connect` (discovery, balancing,
//! mTLS, connect retries on another endpoint, `tcp.maxConnections`), speaking HTTP/1.1 or
//! HTTP/2 as the service's port declares. A body that is being streamed cannot be replayed,
//! so unlike `mesh_request_send` the request itself is not retried (Envoy likewise stops
//! retrying once a body outgrows its buffer). Backpressure is end to end: a write waits while
//! the connection cannot take more (a few chunks are buffered).

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header::HOST};
use http_body_util::channel::{Channel, Sender};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_client::mesh::{Mesh, MeshError};
use mesh_core::model::Protocol;
use tokio::sync::oneshot;

use crate::{
    boundary::{self, HandleState},
    destination,
    error::{Error, mesh_error},
    http::mesh_request,
    mesh::mesh_mesh,
    ptr,
    response::mesh_response,
    runtime,
    runtime::ProcessRuntime,
    status::mesh_status,
};

/// Chunks buffered between the host's writes and the connection.
const CHUNKS_BUFFERED: usize = 4;

type Body = Channel<Bytes, io::Error>;
type Answer = Result<Response<Incoming>, Error>;

/// A request in flight whose body is being written: `mesh_upload_write` adds to it,
/// `mesh_upload_finish` ends it and waits for the response. Thread-safe, but writes from
/// several threads interleave in no defined order.
pub struct mesh_upload {
    state: HandleState,
    rt: Arc<ProcessRuntime>,
    what: String,
    /// Until `finish` (or free) takes it.
    body: Arc<tokio::sync::Mutex<Option<Sender<Bytes, io::Error>>>>,
    answer: Mutex<Option<oneshot::Receiver<Answer>>>,
}

/// Opens a tunnel to the service of `request`'s URL and sends the request line and headers;
/// the body follows with `mesh_upload_write` (a body set with `mesh_request_set_body` goes
/// first). Without a `content-length` header, HTTP/1.1 sends the body chunked. Waits at most
/// `timeout_ms` milliseconds (0: no limit) for the tunnel. Errors as for
/// `mesh_tunnel_connect` (`MESH_ERR_UNKNOWN_SERVICE`, `MESH_ERR_NO_ENDPOINT`, `MESH_ERR_TLS`,
/// `MESH_ERR_DENIED`, ...). Free the result with `mesh_upload_free`.
///
/// # Safety
///
/// `request` is NULL or a live `mesh_request`; `mesh` is NULL or a live `mesh_mesh`;
/// `upload_out` and `error_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_upload_start(
    request: *const mesh_request,
    mesh: *const mesh_mesh,
    timeout_ms: u32,
    upload_out: *mut *mut mesh_upload,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `upload_out`.
        let out = unsafe { ptr::out(upload_out, "upload_out", std::ptr::null_mut()) }?;
        // SAFETY: documented contract of `request`.
        let spec = unsafe { ptr::arg(request, "request") }?;
        // SAFETY: documented contract of `mesh`.
        let mesh = unsafe { ptr::arg(mesh, "mesh") }?;
        let (tx, body) = Channel::<Bytes, io::Error>::new(CHUNKS_BUFFERED);
        let request = spec.to_request(body);
        let first = spec.body().clone();
        let what = spec.describe();
        let (host, port) = spec.destination();
        let (answer, rt) = mesh.with(|rt, mesh| {
            let mesh = mesh.clone();
            let answer = runtime::block(rt, runtime::timeout(timeout_ms), &what, async move {
                let mut tx = tx;
                if !first.is_empty() {
                    tx.send_data(first).await.map_err(|_| {
                        Error::new(mesh_status::MESH_ERR_HTTP, "the request body was refused")
                    })?;
                }
                Ok((begin(&mesh, &host, port, request).await?, tx))
            })?;
            Ok((answer, rt.clone()))
        })?;
        let (answer, tx) = answer;
        *out = ptr::into_raw(mesh_upload {
            state: HandleState::new(),
            rt,
            what,
            body: Arc::new(tokio::sync::Mutex::new(Some(tx))),
            answer: Mutex::new(Some(answer)),
        });
        Ok(())
    })
}

/// Opens the tunnel, runs the HTTP handshake and sends `request` on a task of its own; the
/// receiver gets the response head (or the failure).
async fn begin(
    mesh: &Mesh,
    host: &str,
    port: u16,
    mut request: Request<Body>,
) -> Result<oneshot::Receiver<Answer>, Error> {
    let stream = match mesh.connect(&format!("{host}:{port}")).await {
        Ok(stream) => stream,
        Err(e) => {
            let no_endpoint = matches!(e, MeshError::NoEndpoint { .. });
            let error = Error::from(e);
            return Err(if no_endpoint {
                destination::no_endpoint(mesh, host, port, error)
            } else {
                error
            });
        }
    };
    let http2 = mesh
        .discovery()
        .current()
        .service(host)
        .and_then(|s| s.port(port))
        .is_some_and(|p| matches!(p.protocol, Protocol::Http2 | Protocol::Grpc));
    let handshake_failed = |e: hyper::Error| {
        Error::new(
            mesh_status::MESH_ERR_HTTP,
            format!("HTTP handshake with {host}:{port} failed: {e}"),
        )
    };
    let io = TokioIo::new(stream);
    let (tx, rx) = oneshot::channel();
    if http2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(handshake_failed)?;
        tokio::spawn(connection);
        tokio::spawn(async move {
            let _ = tx.send(sender.send_request(request).await.map_err(failed));
        });
    } else {
        // HTTP/1.1 wants the path as the request target and the service in `Host`.
        if !request.headers().contains_key(HOST) {
            if let Some(authority) = request.uri().authority() {
                if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                    request.headers_mut().insert(HOST, value);
                }
            }
        }
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()
            .map_err(|e| Error::invalid(format!("the URL's path is unusable: {e}")))?;
        *request.uri_mut() = path;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(handshake_failed)?;
        tokio::spawn(connection);
        tokio::spawn(async move {
            let _ = tx.send(sender.send_request(request).await.map_err(failed));
        });
    }
    Ok(rx)
}

fn failed(e: hyper::Error) -> Error {
    let mut message = format!("the request failed without a response: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    Error::new(mesh_status::MESH_ERR_HTTP, message)
}

impl mesh_upload {
    fn write(&self, data: Bytes, timeout_ms: u32) -> Result<(), Error> {
        self.state.guard("upload", || {
            let body = self.body.clone();
            let what = format!("writing the request body of {}", self.what);
            runtime::block(&self.rt, runtime::timeout(timeout_ms), &what, async move {
                let mut body = body.lock().await;
                let Some(tx) = body.as_mut() else {
                    return Err(Error::closed("the upload's body (it was finished)"));
                };
                tx.send_data(data).await.map_err(|_| {
                    Error::new(
                        mesh_status::MESH_ERR_HTTP,
                        "the request body is no longer read: the destination answered early or \
                         the exchange failed; call mesh_upload_finish for the response or the \
                         error",
                    )
                })
            })
        })
    }

    fn finish(&self, timeout_ms: u32) -> Result<mesh_response, Error> {
        self.state.guard("upload", || {
            let answer = self
                .answer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .ok_or_else(|| Error::closed("this upload (it was finished before)"))?;
            let body = self.body.clone();
            let rt = self.rt.clone();
            let what = self.what.clone();
            runtime::block(
                &self.rt,
                runtime::timeout(timeout_ms),
                &self.what,
                async move {
                    // Dropping the sender ends the body (END_STREAM / the last chunk).
                    drop(body.lock().await.take());
                    let response = answer.await.map_err(|_| {
                        Error::new(
                            mesh_status::MESH_ERR_HTTP,
                            format!("the exchange for {what} ended without a response"),
                        )
                    })??;
                    let (parts, body) = response.into_parts();
                    Ok(mesh_response::streaming(&parts, body, rt, what).await)
                },
            )
        })
    }
}

impl Drop for mesh_upload {
    fn drop(&mut self) {
        let _entered = self.rt.tokio().enter();
        // Not finished: abort the body, so the destination sees a reset, not a short request.
        if let Ok(mut body) = self.body.try_lock() {
            if let Some(tx) = body.take() {
                tx.abort(io::Error::other("the upload was freed before it finished"));
            }
        }
    }
}

/// Sends `len` bytes (copied) of the request body. Blocks while the connection cannot take
/// more, for at most `timeout_ms` milliseconds (0: no limit). Fails with `MESH_ERR_HTTP` when
/// the destination stopped reading (it answered early, or the exchange failed: call
/// `mesh_upload_finish` for which), `MESH_ERR_CLOSED` after `mesh_upload_finish`.
///
/// # Safety
///
/// `upload` is NULL or a live `mesh_upload`; `data` points to `len` readable bytes (or is
/// NULL with `len` 0); `error_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_upload_write(
    upload: *const mesh_upload,
    data: *const u8,
    len: usize,
    timeout_ms: u32,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `upload`.
        let upload = unsafe { ptr::arg(upload, "upload") }?;
        // SAFETY: documented contract of `data` and `len`.
        let data = unsafe { ptr::bytes_arg(data, len, "data") }?;
        if data.is_empty() {
            return Ok(());
        }
        upload.write(Bytes::copy_from_slice(data), timeout_ms)
    })
}

/// Ends the request body and waits at most `timeout_ms` milliseconds (0: no limit) for the
/// response's status and headers; its body is read with `mesh_response_read`. Callable once
/// (then `MESH_ERR_CLOSED`); after a timeout the exchange is abandoned.
///
/// # Safety
///
/// `upload` is NULL or a live `mesh_upload`; `response_out` and `error_out` are NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_upload_finish(
    upload: *const mesh_upload,
    timeout_ms: u32,
    response_out: *mut *mut mesh_response,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `response_out`.
        let out = unsafe { ptr::out(response_out, "response_out", std::ptr::null_mut()) }?;
        // SAFETY: documented contract of `upload`.
        let upload = unsafe { ptr::arg(upload, "upload") }?;
        *out = ptr::into_raw(upload.finish(timeout_ms)?);
        Ok(())
    })
}

/// Frees an upload. One not finished is aborted: the destination sees the request reset, never
/// a shortened body. NULL is accepted.
///
/// # Safety
///
/// `upload` is NULL or a live `mesh_upload` no other call is using, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_upload_free(upload: *mut mesh_upload) {
    boundary::value((), || {
        // SAFETY: documented contract of `upload`.
        let upload = unsafe { ptr::take(upload) };
        if let Some(upload) = upload {
            if upload.state.in_forked_child() {
                std::mem::forget(upload);
            }
        }
    });
}

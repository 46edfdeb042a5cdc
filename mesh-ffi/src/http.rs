//! `mesh_request`: HTTP through the mesh's client (discovery, balancing, retries, timeouts,
//! circuit breaking), answered with a whole (`mesh_request_send`) or streamed
//! (`mesh_request_start`) `mesh_response`. Streamed request bodies are `upload.rs`.

use std::ffi::c_char;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Limited};

use mesh_client::{mesh::Mesh, resilience::RequestError};

use crate::{
    boundary, destination,
    error::{Error, mesh_error},
    mesh::mesh_mesh,
    ptr,
    response::mesh_response,
    runtime,
    status::mesh_status,
};

/// The largest response body read unless the request says otherwise.
const DEFAULT_RESPONSE_LIMIT: usize = 64 * 1024 * 1024;

/// An HTTP request being built. Not thread-safe while being built; sending only reads it, so
/// one request may be sent several times and from several threads.
pub struct mesh_request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    response_limit: usize,
}

/// Starts a request: `method` (`"GET"`, `"POST"`, ...) and an absolute `url` naming a service
/// the mesh knows, such as `"http://inventory.shop.svc.cluster.local:8080/stock?id=7"`.
///
/// # Safety
///
/// `method` and `url` are NULL or NUL-terminated strings; `request_out` and `error_out` are
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_request_new(
    method: *const c_char,
    url: *const c_char,
    request_out: *mut *mut mesh_request,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `request_out`.
        let out = unsafe { ptr::out(request_out, "request_out", std::ptr::null_mut()) }?;
        // SAFETY: documented contract of `method`.
        let method = unsafe { ptr::str_arg(method, "method") }?;
        // SAFETY: documented contract of `url`.
        let url = unsafe { ptr::str_arg(url, "url") }?;
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::invalid(format!("{method:?} is not an HTTP method")))?;
        let uri: Uri = url.parse().map_err(|e| {
            Error::invalid(format!(
                "{url:?} is not a URL ({e}); write it as http://service.namespace:port/path"
            ))
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(Error::invalid(format!(
                "{url:?} must be an absolute http:// URL naming a service (the mesh adds mTLS); \
                 write it as http://service.namespace:port/path"
            )));
        }
        *out = ptr::into_raw(mesh_request {
            method,
            uri,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            response_limit: DEFAULT_RESPONSE_LIMIT,
        });
        Ok(())
    })
}

/// Appends a header (repeated names are kept, in order).
///
/// # Safety
///
/// `request` is NULL or a live `mesh_request` no other call is using; `name` and `value` are
/// NULL or NUL-terminated strings; `error_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_request_add_header(
    request: *mut mesh_request,
    name: *const c_char,
    value: *const c_char,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `request`.
        let request = unsafe { ptr::arg_mut(request, "request") }?;
        // SAFETY: documented contract of `name`.
        let name = unsafe { ptr::str_arg(name, "name") }?;
        // SAFETY: documented contract of `value`.
        let value = unsafe { ptr::str_arg(value, "value") }?;
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::invalid(format!("{name:?} is not a valid header name")))?;
        let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
            Error::invalid(format!(
                "the value of header {name} contains control characters"
            ))
        })?;
        request.headers.append(header, value);
        Ok(())
    })
}

/// Sets the body (copied). `body` may be NULL when `len` is 0.
///
/// # Safety
///
/// `request` is NULL or a live `mesh_request` no other call is using; `body` points to `len`
/// readable bytes (or is NULL with `len` 0); `error_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_request_set_body(
    request: *mut mesh_request,
    body: *const u8,
    len: usize,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `request`.
        let request = unsafe { ptr::arg_mut(request, "request") }?;
        // SAFETY: documented contract of `body` and `len`.
        let body = unsafe { ptr::bytes_arg(body, len, "body") }?;
        request.body = Bytes::copy_from_slice(body);
        Ok(())
    })
}

/// Sets the largest response body accepted (default 64 MiB); a larger one fails the send with
/// `MESH_ERR_HTTP`.
///
/// # Safety
///
/// `request` is NULL or a live `mesh_request` no other call is using; `error_out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_request_set_response_limit(
    request: *mut mesh_request,
    max_bytes: usize,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `request`.
        let request = unsafe { ptr::arg_mut(request, "request") }?;
        request.response_limit = max_bytes;
        Ok(())
    })
}

/// Sends `request` through `mesh` and reads the whole response, waiting at most `timeout_ms`
/// milliseconds (0: only the mesh's own request timeout). Any HTTP status is a success here
/// (403 from the destination's policy included); errors are failures to get a response:
/// `MESH_ERR_UNKNOWN_SERVICE` (the mesh does not know the URL's service),
/// `MESH_ERR_NO_ENDPOINT`, `MESH_ERR_TLS`, `MESH_ERR_TIMEOUT`, `MESH_ERR_HTTP`, ...
///
/// # Safety
///
/// `request` is NULL or a live `mesh_request`; `mesh` is NULL or a live `mesh_mesh`;
/// `response_out` and `error_out` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_request_send(
    request: *const mesh_request,
    mesh: *const mesh_mesh,
    timeout_ms: u32,
    response_out: *mut *mut mesh_response,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    // SAFETY: forwarded contracts.
    unsafe { send(request, mesh, timeout_ms, response_out, error_out, false) }
}

/// Like `mesh_request_send` (the request body is sent whole, so retries still apply), but
/// returns as soon as the response's status and headers arrived: read the body in chunks
/// with `mesh_response_read`, so a large one never has to fit in memory (the request's
/// response limit does not apply). `timeout_ms` bounds the wait for the headers; each read
/// has its own.
///
/// # Safety
///
/// As for `mesh_request_send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_request_start(
    request: *const mesh_request,
    mesh: *const mesh_mesh,
    timeout_ms: u32,
    response_out: *mut *mut mesh_response,
    error_out: *mut *mut mesh_error,
) -> mesh_status {
    // SAFETY: forwarded contracts.
    unsafe { send(request, mesh, timeout_ms, response_out, error_out, true) }
}

/// `mesh_request_send` (`stream` false) and `mesh_request_start` (`stream` true).
///
/// # Safety
///
/// As for `mesh_request_send`.
unsafe fn send(
    request: *const mesh_request,
    mesh: *const mesh_mesh,
    timeout_ms: u32,
    response_out: *mut *mut mesh_response,
    error_out: *mut *mut mesh_error,
    stream: bool,
) -> mesh_status {
    boundary::status(error_out, || {
        // SAFETY: documented contract of `response_out`.
        let out = unsafe { ptr::out(response_out, "response_out", std::ptr::null_mut()) }?;
        // SAFETY: documented contract of `request`.
        let spec = unsafe { ptr::arg(request, "request") }?;
        // SAFETY: documented contract of `mesh`.
        let mesh = unsafe { ptr::arg(mesh, "mesh") }?;
        let request = spec.to_request(spec.body.clone());
        let limit = spec.response_limit;
        let what = spec.describe();
        let (host, port) = spec.destination();
        let response = mesh.with(|rt, mesh| {
            let client = mesh.http_client();
            let mesh = mesh.clone();
            let rt_handle = rt.clone();
            runtime::block(
                rt,
                runtime::timeout(timeout_ms),
                &what.clone(),
                async move {
                    let response = client
                        .request(request)
                        .await
                        .map_err(|e| request_error(&mesh, &host, port, e))?;
                    let (parts, body) = response.into_parts();
                    if stream {
                        return Ok(mesh_response::streaming(&parts, body, rt_handle, what).await);
                    }
                    let body = Limited::new(body, limit)
                        .collect()
                        .await
                        .map_err(|e| {
                            Error::new(
                                mesh_status::MESH_ERR_HTTP,
                                format!(
                                    "reading the response to {what}: {e} (the limit is {limit} \
                                 bytes; raise it with mesh_request_set_response_limit, or \
                                 stream the body with mesh_request_start)"
                                ),
                            )
                        })?
                        .to_bytes();
                    Ok(mesh_response::whole(&parts, body, rt_handle, what))
                },
            )
        })?;
        *out = ptr::into_raw(response);
        Ok(())
    })
}

impl mesh_request {
    /// The request as `http` sees it, with `body`.
    pub(crate) fn to_request<B>(&self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }

    /// `"POST http://svc:8080/path"`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("{} {}", self.method, self.uri)
    }

    /// The service and port the URL names.
    pub(crate) fn destination(&self) -> (String, u16) {
        (
            self.uri.host().unwrap_or_default().to_owned(),
            self.uri.port_u16().unwrap_or(80),
        )
    }

    /// The body set with `mesh_request_set_body` (sent before any streamed chunk).
    pub(crate) fn body(&self) -> &Bytes {
        &self.body
    }
}

/// The error for a request that got no response: an unknown service or a known one without a
/// reachable endpoint gets its own status (see `destination`), other failures keep theirs.
fn request_error(mesh: &Mesh, host: &str, port: u16, e: RequestError) -> Error {
    let no_endpoint = matches!(
        &e,
        RequestError::Failed { source, .. } if source.to_string().starts_with("no reachable endpoint")
    );
    let counts = !matches!(e, RequestError::Invalid(_) | RequestError::NoRoute(_));
    let error = Error::from(e);
    if counts {
        if let Some(unknown) = destination::unknown_service(mesh, host, port) {
            return unknown;
        }
    }
    if no_endpoint {
        let error = Error::new(mesh_status::MESH_ERR_NO_ENDPOINT, error.message);
        return destination::no_endpoint(mesh, host, port, error);
    }
    error
}

/// Frees a request. NULL is accepted.
///
/// # Safety
///
/// `request` is NULL or a live `mesh_request` no other call is using, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_request_free(request: *mut mesh_request) {
    boundary::value((), || {
        // SAFETY: documented contract of `request`.
        drop(unsafe { ptr::take(request) });
    });
}

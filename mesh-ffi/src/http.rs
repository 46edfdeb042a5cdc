//! `mesh_request` / `mesh_response`: HTTP through the mesh's client (discovery, balancing,
//! retries, timeouts, circuit breaking), with whole bodies in memory.

use std::ffi::{CString, c_char};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Limited};

use mesh_client::{mesh::Mesh, resilience::RequestError};

use crate::{
    boundary, destination,
    error::{Error, mesh_error},
    mesh::mesh_mesh,
    ptr, runtime,
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

/// A complete HTTP response: status, headers (in received order) and body.
pub struct mesh_response {
    status: u16,
    headers: Vec<(CString, CString)>,
    body: Bytes,
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
/// (403 from the destination's policy included); errors are failures to get a response.
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
    boundary::status(error_out, || {
        // SAFETY: documented contract of `response_out`.
        let out = unsafe { ptr::out(response_out, "response_out", std::ptr::null_mut()) }?;
        // SAFETY: documented contract of `request`.
        let spec = unsafe { ptr::arg(request, "request") }?;
        // SAFETY: documented contract of `mesh`.
        let mesh = unsafe { ptr::arg(mesh, "mesh") }?;
        let mut request = Request::new(spec.body.clone());
        *request.method_mut() = spec.method.clone();
        *request.uri_mut() = spec.uri.clone();
        *request.headers_mut() = spec.headers.clone();
        let limit = spec.response_limit;
        let what = format!("{} {}", spec.method, spec.uri);
        let host = spec.uri.host().unwrap_or_default().to_owned();
        let port = spec.uri.port_u16().unwrap_or(80);
        let response = mesh.with(|rt, mesh| {
            let client = mesh.http_client();
            let mesh = mesh.clone();
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
                    let body = Limited::new(body, limit)
                    .collect()
                    .await
                    .map_err(|e| {
                        Error::new(
                            mesh_status::MESH_ERR_HTTP,
                            format!(
                                "reading the response to {what}: {e} (the limit is {limit} bytes; \
                                 raise it with mesh_request_set_response_limit)"
                            ),
                        )
                    })?
                    .to_bytes();
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
                    Ok(mesh_response {
                        status: parts.status.as_u16(),
                        headers,
                        body,
                    })
                },
            )
        })?;
        *out = ptr::into_raw(response);
        Ok(())
    })
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

/// The response body: `*data_out` points to `*len_out` bytes owned by the response (valid
/// until it is freed; NULL with length 0 for an empty body).
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
        if !response.body.is_empty() {
            *data = response.body.as_ptr();
            *len = response.body.len();
        }
        Ok(())
    })
}

/// Frees a response. NULL is accepted.
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

//! `CUSTOM` authorization: asking an external HTTP authorizer, as Envoy's `ext_authz` filter
//! does with an HTTP service (Istio's `envoyExtAuthzHttp` extension provider).
//!
//! For each request a `CUSTOM` policy matched, the provider receives a check request over
//! plain TCP (one pooled hyper client for every provider): the original method, the
//! provider's `path_prefix` followed by the original path and query, the original `Host`,
//! `Authorization` and the headers `include_request_headers_in_check` names, plus the fixed
//! `include_additional_headers_in_check`, and an empty body (see below for the body). Then,
//! as Envoy:
//!
//! - **200** allows; the answer's headers named by `headers_to_upstream_on_allow` replace
//!   the request's (none by default), those named by `headers_to_downstream_on_allow` are
//!   added to the application's response, and its body is ignored;
//! - **5xx**, a connection failure or the `timeout` is an error: allowed when `fail_open`,
//!   else answered with `status_on_error` (default 403) and an empty body;
//! - **any other status** denies: the caller gets that status, the authorizer's body (up to
//!   64 KiB) and its headers named by `headers_to_downstream_on_deny` (all but `host` and
//!   framing headers when the list is empty; `www-authenticate` and `location` always).
//!
//! A provider with `include_request_body_in_check` gets the request body too, as Envoy's
//! `with_request_body`: the body is read up to `max_request_bytes` (never more is held for
//! the check) and the check request carries those bytes with their `Content-Length` and
//! `x-envoy-auth-partial-body: true` when the request body goes on past them (`false` when
//! the check holds all of it; a caller's own header of that name is replaced). A larger body
//! is answered **413** without asking the authorizer unless `allow_partial_message`, even
//! when `fail_open` (a `Content-Length` over the limit is refused before reading). After an
//! allowing answer the application receives the whole body unchanged: the bytes read are
//! replayed before the rest (see [`body`]). Providers without the setting, and requests
//! without a CUSTOM policy naming one, stream their body untouched. `pack_as_bytes` shapes
//! the gRPC check message only and has no effect on an HTTP provider, which receives the
//! bytes as they are.

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header, request::Parts,
};
use http_body_util::{BodyExt, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use mesh_core::config::{
    ExtAuthzBodySettings, ExtAuthzHttpSettings, ExtensionProvider, HeaderPattern,
};

mod body;

pub(crate) use body::Buffered;
use body::CheckBody;

/// The header telling the authorizer whether the check's body is only the start of the
/// request body (Envoy's name).
pub(crate) const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// The largest denial body passed on to the caller.
const MAX_DENY_BODY: usize = 64 * 1024;
/// Idle pooled connections to an authorizer are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Headers that describe one hop's framing, never copied between messages.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
];

fn hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// What one provider said about a request.
#[derive(Debug)]
pub(crate) enum CheckOutcome {
    /// Let it through.
    Allow {
        /// Set on the request first (replacing).
        upstream: Vec<(HeaderName, HeaderValue)>,
        /// Added to the application's response.
        downstream: Vec<(HeaderName, HeaderValue)>,
    },
    /// Answer this instead (the provider's denial, or `status_on_error`).
    Deny {
        /// The answer.
        response: Response<Bytes>,
        /// For logs: what happened.
        why: String,
    },
    /// The authorizer was not asked: the request body is larger than the provider accepts
    /// (413), whatever `fail_open` says.
    TooLarge {
        /// The answer.
        response: Response<Bytes>,
        /// For logs: what happened.
        why: String,
    },
}

/// The configured providers and the client that reaches them.
pub(crate) struct ExtAuthz {
    providers: HashMap<String, ExtAuthzHttpSettings>,
    client: Client<HttpConnector, CheckBody>,
}

impl ExtAuthz {
    /// One pooled client for every provider in `providers`.
    pub(crate) fn new(providers: &[ExtensionProvider]) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Self {
            providers: providers
                .iter()
                .map(|p| (p.name.clone(), p.http.clone()))
                .collect(),
            client,
        }
    }

    /// The body settings of provider `name`, when it wants the request body.
    pub(crate) fn body_settings(&self, name: &str) -> Option<ExtAuthzBodySettings> {
        self.providers.get(name).and_then(|s| s.body)
    }

    /// Asks provider `name` about the request described by `parts`, with `body` (read for
    /// the providers that want it) when the provider wants the body.
    pub(crate) async fn check(
        &self,
        name: &str,
        parts: &Parts,
        body: Option<&Buffered>,
    ) -> CheckOutcome {
        let Some(settings) = self.providers.get(name) else {
            // Loading refuses policies naming unknown providers; fail closed all the same.
            return CheckOutcome::Deny {
                response: error_response(StatusCode::FORBIDDEN),
                why: format!("provider {name:?} is not configured"),
            };
        };
        let check_body = match (settings.body, body) {
            (Some(wanted), Some(read)) => {
                if !wanted.allow_partial_message && read.longer_than(wanted.max_request_bytes) {
                    let (response, why) = too_large(name, wanted.max_request_bytes);
                    return CheckOutcome::TooLarge { response, why };
                }
                Some(read.check_body(wanted.max_request_bytes))
            }
            // The caller read nothing: the request has no body to show.
            (Some(_), None) => Some(CheckBody::empty()),
            (None, _) => None,
        };
        let request = match check_request(settings, parts, check_body) {
            Ok(request) => request,
            Err(why) => return failed(settings, why),
        };
        let asked = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("cannot reach {}: {e}", settings.authority))?;
            let (head, body) = response.into_parts();
            if head.status.is_server_error() {
                return Err(format!(
                    "{} answered {} (an authorizer error)",
                    settings.authority, head.status
                ));
            }
            if head.status == StatusCode::OK {
                return Ok((head, Bytes::new()));
            }
            let body = Limited::new(body, MAX_DENY_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading {}'s denial: {e}", settings.authority))?
                .to_bytes();
            Ok((head, body))
        };
        match tokio::time::timeout(settings.timeout, asked).await {
            Err(_) => failed(
                settings,
                format!(
                    "{} did not answer within {:?}",
                    settings.authority, settings.timeout
                ),
            ),
            Ok(Err(why)) => failed(settings, why),
            Ok(Ok((head, _))) if head.status == StatusCode::OK => CheckOutcome::Allow {
                upstream: pick(&head.headers, &settings.headers_to_upstream_on_allow),
                downstream: pick(&head.headers, &settings.headers_to_downstream_on_allow),
            },
            Ok(Ok((head, body))) => {
                let mut response = Response::new(body);
                *response.status_mut() = head.status;
                copy_denial_headers(settings, &head.headers, response.headers_mut());
                CheckOutcome::Deny {
                    why: format!("provider {name:?} answered {}", head.status),
                    response,
                }
            }
        }
    }
}

/// The 413 answered when the body is over `max` bytes and partial messages are refused,
/// and why (for logs).
pub(crate) fn too_large(name: &str, max: usize) -> (Response<Bytes>, String) {
    let mut response = Response::new(Bytes::from_static(b"Payload Too Large"));
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    let why = format!(
        "the request body is larger than provider {name:?}'s max_request_bytes ({max}) and \
         allow_partial_message is false"
    );
    (response, why)
}

/// The provider could not answer: `fail_open` decides.
fn failed(settings: &ExtAuthzHttpSettings, why: String) -> CheckOutcome {
    if settings.fail_open {
        tracing::warn!(reason = %why, "external authorizer failed; allowing (fail_open)");
        CheckOutcome::Allow {
            upstream: Vec::new(),
            downstream: Vec::new(),
        }
    } else {
        let status =
            StatusCode::from_u16(settings.status_on_error).unwrap_or(StatusCode::FORBIDDEN);
        CheckOutcome::Deny {
            response: error_response(status),
            why,
        }
    }
}

/// The headers of `from` that `patterns` name (framing headers never).
fn pick(from: &HeaderMap, patterns: &[HeaderPattern]) -> Vec<(HeaderName, HeaderValue)> {
    from.iter()
        .filter(|(n, _)| !hop_by_hop(n) && HeaderPattern::any(patterns, n.as_str()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

fn error_response(status: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

fn copy_denial_headers(settings: &ExtAuthzHttpSettings, from: &HeaderMap, to: &mut HeaderMap) {
    let listed = &settings.headers_to_downstream_on_deny;
    for (name, value) in from {
        if hop_by_hop(name) || *name == header::HOST {
            continue;
        }
        let wanted = listed.is_empty()
            || HeaderPattern::any(listed, name.as_str())
            || *name == header::WWW_AUTHENTICATE
            || *name == header::LOCATION;
        if wanted {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The check request for `parts` as Envoy's HTTP ext_authz client builds it, with `body`
/// when the provider wants the request body.
fn check_request(
    settings: &ExtAuthzHttpSettings,
    parts: &Parts,
    body: Option<CheckBody>,
) -> Result<Request<CheckBody>, String> {
    let framing = body
        .as_ref()
        .map(|b| (b.len(), if b.partial() { "true" } else { "false" }));
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = format!(
        "http://{}{}{}",
        settings.authority, settings.path_prefix, path
    );
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(&uri)
        .body(body.unwrap_or_else(CheckBody::empty))
        .map_err(|e| format!("cannot build the check request for {uri:?}: {e}"))?;
    let headers = request.headers_mut();
    for (name, value) in &parts.headers {
        if hop_by_hop(name) || *name == header::HOST {
            continue;
        }
        if *name == header::AUTHORIZATION
            || HeaderPattern::any(&settings.include_request_headers, name.as_str())
        {
            headers.append(name.clone(), value.clone());
        }
    }
    // The original authority, as Envoy sends it (the URI's, else the Host header).
    let host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(header::HOST).cloned());
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }
    for (name, value) in &settings.additional_headers {
        // Validated when the configuration was loaded.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    if let Some((len, partial)) = framing {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        headers.insert(PARTIAL_BODY_HEADER, HeaderValue::from_static(partial));
    } else {
        // Envoy sets it only for body checks; a caller's own never reaches the authorizer.
        headers.remove(PARTIAL_BODY_HEADER);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> ExtAuthzHttpSettings {
        let config = mesh_core::config::MeshConfig::from_yaml(&format!(
            "extension_providers: [{{ name: p, envoy_ext_authz_http: {yaml} }}]"
        ))
        .unwrap();
        config.workload_settings().unwrap().extension_providers[0]
            .http
            .clone()
    }

    #[test]
    fn check_request_carries_method_prefixed_path_and_chosen_headers() {
        let s = settings(
            "{ service: 127.0.0.1, port: 9, path_prefix: /ext, \
             include_request_headers_in_check: [x-user, 'x-b3-*'], \
             include_additional_headers_in_check: { x-from: mesh } }",
        );
        let (parts, ()) = Request::post("http://inventory:8080/stock?id=1")
            .header("x-user", "alice")
            .header("x-b3-traceid", "1")
            .header("cookie", "secret")
            .header("authorization", "Bearer t")
            .header("content-length", "5")
            .body(())
            .unwrap()
            .into_parts();
        let check = check_request(&s, &parts, None).unwrap();
        assert_eq!(check.method(), http::Method::POST);
        assert_eq!(check.uri().to_string(), "http://127.0.0.1:9/ext/stock?id=1");
        let h = check.headers();
        assert_eq!(h["host"], "inventory:8080");
        assert_eq!(h["x-user"], "alice");
        assert_eq!(h["x-b3-traceid"], "1");
        assert_eq!(h["authorization"], "Bearer t");
        assert_eq!(h["x-from"], "mesh");
        assert!(!h.contains_key("cookie"));
        assert!(!h.contains_key("content-length"));
    }

    #[test]
    fn partial_body_header_is_ours_only() {
        let s =
            settings("{ service: a, port: 1, include_request_headers_in_check: ['x-envoy-*'] }");
        let (parts, ()) = Request::post("http://inventory/")
            .header(PARTIAL_BODY_HEADER, "false")
            .body(())
            .unwrap()
            .into_parts();
        // No body setting: a caller's header of that name never reaches the authorizer.
        let check = check_request(&s, &parts, None).unwrap();
        assert!(!check.headers().contains_key(PARTIAL_BODY_HEADER));
        // An empty check body: whole, zero length.
        let check = check_request(&s, &parts, Some(CheckBody::empty())).unwrap();
        assert_eq!(check.headers()[PARTIAL_BODY_HEADER], "false");
        assert_eq!(check.headers()[header::CONTENT_LENGTH], "0");
    }

    #[test]
    fn denial_headers_follow_the_list() {
        let mut from = HeaderMap::new();
        from.insert("x-reason", HeaderValue::from_static("no"));
        from.insert("x-other", HeaderValue::from_static("1"));
        from.insert("www-authenticate", HeaderValue::from_static("Bearer"));
        from.insert("host", HeaderValue::from_static("authz"));
        from.insert("content-length", HeaderValue::from_static("2"));
        let mut all = HeaderMap::new();
        copy_denial_headers(&settings("{ service: a, port: 1 }"), &from, &mut all);
        assert_eq!(all.len(), 3, "{all:?}");
        let mut listed = HeaderMap::new();
        copy_denial_headers(
            &settings("{ service: a, port: 1, headers_to_downstream_on_deny: ['x-r*'] }"),
            &from,
            &mut listed,
        );
        assert!(listed.contains_key("x-reason") && listed.contains_key("www-authenticate"));
        assert!(!listed.contains_key("x-other"));
    }
}

//! VirtualService `http` routes: raw shapes to the model, with istiod's validation.

use std::collections::BTreeMap;

use super::{
    cx::{Cx, join},
    policy::valid_header_name,
};
use crate::traffic::{
    Destination, HttpRoute, MatchRegex, RetryConditions, RetryPolicy, RouteDestination, RouteMatch,
    StringMatch, host::is_dns_label, raw::istio,
};

/// `http` routes. `default_host`: where a route without `route` goes (the mesh config's own
/// service); Istio documents have none and require `route`.
pub(crate) fn http_routes(
    cx: &mut Cx,
    path: &str,
    raw: &[istio::HttpRoute],
    default_host: Option<&str>,
) -> Vec<HttpRoute> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| http_route(cx, &format!("{path}[{i}]"), r, default_host))
        .collect()
}

fn http_route(
    cx: &mut Cx,
    path: &str,
    raw: &istio::HttpRoute,
    default_host: Option<&str>,
) -> HttpRoute {
    for (field, present, what) in [
        ("redirect", raw.redirect.is_some(), "redirects"),
        (
            "directResponse",
            raw.direct_response.is_some(),
            "direct responses",
        ),
        (
            "delegate",
            raw.delegate.is_some(),
            "delegation to another VirtualService",
        ),
        (
            "rewrite",
            raw.rewrite.is_some(),
            "URI and authority rewrites",
        ),
        ("fault", raw.fault.is_some(), "fault injection"),
        ("mirror", raw.mirror.is_some(), "traffic mirroring"),
        ("mirrors", raw.mirrors.is_some(), "traffic mirroring"),
        (
            "mirrorPercent",
            raw.mirror_percent.is_some(),
            "traffic mirroring",
        ),
        (
            "mirrorPercentage",
            raw.mirror_percentage.is_some(),
            "traffic mirroring",
        ),
        ("corsPolicy", raw.cors_policy.is_some(), "CORS policies"),
        ("headers", raw.headers.is_some(), "header manipulation"),
    ] {
        if present {
            cx.unsupported(
                join(path, field),
                format!("{what} are not implemented; only match, route, timeout and retries are"),
            );
        }
    }
    let matches = raw
        .r#match
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| route_match(cx, &format!("{}[{i}]", join(path, "match")), m))
        .collect();
    let destinations = match (&raw.route, default_host) {
        (Some(route), _) if !route.is_empty() => {
            destinations(cx, &join(path, "route"), route, default_host)
        }
        (_, Some(host)) => vec![RouteDestination {
            destination: Destination::new(host),
            weight: 100,
        }],
        (_, None) => {
            cx.invalid(
                join(path, "route"),
                "a route needs at least one destination",
            );
            Vec::new()
        }
    };
    HttpRoute {
        name: raw.name.clone(),
        matches,
        destinations,
        retries: raw.retries.as_ref().map_or_else(RetryPolicy::default, |r| {
            retries(cx, &join(path, "retries"), r)
        }),
        timeout: cx.duration(join(path, "timeout"), &raw.timeout),
    }
}

fn destinations(
    cx: &mut Cx,
    path: &str,
    raw: &[istio::RouteDestination],
    default_host: Option<&str>,
) -> Vec<RouteDestination> {
    let mut out = Vec::new();
    let mut total = 0u64;
    for (i, d) in raw.iter().enumerate() {
        let here = format!("{path}[{i}]");
        cx.refuse(
            &here,
            "headers",
            &d.headers,
            "header manipulation is not implemented",
        );
        let weight = d.weight.unwrap_or(0);
        total += u64::from(weight);
        let Some(dest) = &d.destination else {
            cx.invalid(join(&here, "destination"), "a destination is required");
            continue;
        };
        let dpath = join(&here, "destination");
        let host = match (&dest.host, default_host) {
            (Some(h), _) if !h.is_empty() => cx.destination_host(join(&dpath, "host"), h),
            (_, Some(own)) => Some(own.to_owned()),
            _ => {
                cx.invalid(join(&dpath, "host"), "a destination host is required");
                None
            }
        };
        if let Some(subset) = &dest.subset {
            if !is_dns_label(subset) {
                cx.invalid(
                    join(&dpath, "subset"),
                    format!("{subset:?} is not a valid subset name (a lowercase DNS label)"),
                );
            }
        }
        let port = dest
            .port
            .as_ref()
            .and_then(|p| cx.port(join(&dpath, "port.number"), p.number));
        if let Some(host) = host {
            out.push(RouteDestination {
                destination: Destination {
                    host,
                    subset: dest.subset.clone().filter(|s| !s.is_empty()),
                    port,
                },
                weight,
            });
        }
    }
    if raw.len() > 1 && total == 0 {
        cx.invalid(
            path,
            "the destinations' weights add up to 0; give at least one a weight",
        );
    }
    out
}

fn retries(cx: &mut Cx, path: &str, raw: &istio::HttpRetry) -> RetryPolicy {
    let attempts = raw.attempts.unwrap_or(0);
    if attempts == 0 {
        if raw.per_try_timeout.is_some()
            || raw.retry_on.is_some()
            || raw.retry_remote_localities.is_some()
            || raw.backoff.is_some()
        {
            cx.invalid(
                join(path, "attempts"),
                "retries are configured but attempts is 0 (disabled); set attempts or remove the other retry fields",
            );
        }
        return RetryPolicy::disabled();
    }
    let retry_on = match &raw.retry_on {
        None => RetryConditions::istio_default(),
        Some(text) => text
            .parse()
            .unwrap_or_else(|e: crate::traffic::RetryOnError| {
                cx.invalid(join(path, "retryOn"), e.to_string());
                RetryConditions::istio_default()
            }),
    };
    RetryPolicy {
        attempts,
        per_try_timeout: cx.duration(join(path, "perTryTimeout"), &raw.per_try_timeout),
        retry_on,
        retry_remote_localities: raw.retry_remote_localities.unwrap_or(false),
        backoff: cx.duration(join(path, "backoff"), &raw.backoff),
    }
}

fn route_match(cx: &mut Cx, path: &str, raw: &istio::HttpMatch) -> RouteMatch {
    for (field, present, what) in [
        (
            "sourceLabels",
            raw.source_labels.is_some(),
            "matching the caller's labels",
        ),
        ("gateways", raw.gateways.is_some(), "matching gateways"),
        (
            "sourceNamespace",
            raw.source_namespace.is_some(),
            "matching the caller's namespace",
        ),
        (
            "statPrefix",
            raw.stat_prefix.is_some(),
            "per-match statistics prefixes",
        ),
    ] {
        if present {
            cx.unsupported(join(path, field), format!("{what} is not implemented"));
        }
    }
    let mut single = |field: &str, m: &Option<istio::StringMatch>| {
        m.as_ref()
            .and_then(|m| string_match(cx, &join(path, field), m, false))
    };
    let uri = single("uri", &raw.uri);
    let scheme = single("scheme", &raw.scheme);
    let method = single("method", &raw.method);
    let authority = single("authority", &raw.authority);
    let port = raw.port.and_then(|p| cx.port(join(path, "port"), Some(p)));
    RouteMatch {
        name: raw.name.clone(),
        uri,
        ignore_uri_case: raw.ignore_uri_case.unwrap_or(false),
        scheme,
        method,
        authority,
        headers: header_matches(cx, &join(path, "headers"), &raw.headers),
        without_headers: header_matches(cx, &join(path, "withoutHeaders"), &raw.without_headers),
        query_params: raw
            .query_params
            .iter()
            .flatten()
            .filter_map(|(name, m)| {
                let m = string_match(cx, &join(&join(path, "queryParams"), name), m, true)?;
                Some((name.clone(), m))
            })
            .collect(),
        port,
    }
}

fn header_matches(
    cx: &mut Cx,
    path: &str,
    raw: &Option<BTreeMap<String, istio::StringMatch>>,
) -> Vec<(String, StringMatch)> {
    let mut out = Vec::new();
    for (name, m) in raw.iter().flatten() {
        let here = join(path, name);
        if name.starts_with("@request.auth.claims") {
            cx.unsupported(here, "routing on JWT claims is not implemented");
            continue;
        }
        if !valid_header_name(name) {
            cx.invalid(
                here,
                format!("{name:?} is not a header name (letters, digits, '-' and '_')"),
            );
            continue;
        }
        if let Some(m) = string_match(cx, &here, m, true) {
            out.push((name.to_ascii_lowercase(), m));
        }
    }
    out
}

/// A StringMatch; `allow_empty`: an empty match means "present" (headers, query parameters).
fn string_match(
    cx: &mut Cx,
    path: &str,
    raw: &istio::StringMatch,
    allow_empty: bool,
) -> Option<StringMatch> {
    match (&raw.exact, &raw.prefix, &raw.regex) {
        (Some(e), None, None) => Some(StringMatch::Exact(e.clone())),
        (None, Some(p), None) => Some(StringMatch::Prefix(p.clone())),
        (None, None, Some(r)) => match MatchRegex::new(r) {
            Ok(re) => Some(StringMatch::Regex(re)),
            Err(e) => {
                // The regex crate's message spans several lines; its last line says what is wrong.
                let message = e.to_string();
                let what = message.lines().last().unwrap_or_default();
                let what = what.trim().trim_start_matches("error: ");
                cx.invalid(
                    join(path, "regex"),
                    format!("{r:?} is not a valid regular expression (RE2 syntax): {what}"),
                );
                None
            }
        },
        (None, None, None) if allow_empty => Some(StringMatch::Present),
        (None, None, None) => {
            cx.invalid(path, "set one of exact, prefix or regex");
            None
        }
        _ => {
            cx.invalid(path, "set only one of exact, prefix and regex");
            None
        }
    }
}

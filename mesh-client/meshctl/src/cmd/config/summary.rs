//! One line per valid document: what it is and what it does, at a glance.

use mesh_core::{
    config::{MeshConfig, WorkloadSettings},
    traffic::{
        Algorithm, DestinationRule, HashTable, PolicySettings, RetryPolicy, TlsMode,
        VirtualService, format_duration,
    },
};
use mesh_policy::{
    authn::jwt::RequestAuthentication,
    authz::{Action, AuthorizationPolicy},
    peer_authn::PeerAuthentication,
};

/// `2 subsets` / `1 subset`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn algorithm(a: &Algorithm) -> String {
    match a {
        Algorithm::RoundRobin => "ROUND_ROBIN".to_owned(),
        Algorithm::Random => "RANDOM".to_owned(),
        Algorithm::ConsistentHash(hash) => match hash.table {
            HashTable::Maglev { .. } => "consistent hash (maglev)".to_owned(),
            _ => "consistent hash (ring)".to_owned(),
        },
        _ => "LEAST_REQUEST".to_owned(),
    }
}

/// `LEAST_REQUEST, connection pool, outlier detection, tls ISTIO_MUTUAL`.
fn settings(s: &PolicySettings) -> String {
    let mut parts = vec![algorithm(
        &s.load_balancer.clone().unwrap_or_default().algorithm,
    )];
    if let Some(pool) = &s.connection_pool {
        let l = pool.limits();
        let mut limits = Vec::new();
        if pool.tcp.max_connections.is_some() {
            limits.push(format!("max {} connections", l.max_connections));
        }
        if pool.http.http1_max_pending_requests.is_some() {
            limits.push(format!("{} pending", l.max_pending_requests));
        }
        if pool.http.http2_max_requests.is_some() {
            limits.push(format!("{} requests", l.max_requests));
        }
        if pool.http.max_retries.is_some() {
            limits.push(format!("{} retries", l.max_retries));
        }
        parts.push(if limits.is_empty() {
            "connection pool".to_owned()
        } else {
            format!("connection pool ({})", limits.join(", "))
        });
    }
    if let Some(o) = &s.outlier_detection {
        let c = o.outlier_config();
        parts.push(format!(
            "outlier detection ({} consecutive 5xx, every {}, eject {})",
            c.consecutive_5xx,
            format_duration(c.interval),
            format_duration(c.base_ejection_time)
        ));
    }
    match s.tls {
        Some(TlsMode::Disable) => parts.push("tls DISABLE".to_owned()),
        Some(_) => parts.push("tls ISTIO_MUTUAL".to_owned()),
        None => {}
    }
    parts.join(", ")
}

pub(super) fn destination_rule(r: &DestinationRule) -> String {
    let p = &r.policy;
    let mut line = format!(
        "DestinationRule {}/{}: host {}; {}",
        r.namespace,
        r.name,
        p.host,
        settings(&p.settings.all_ports)
    );
    if !p.settings.ports.is_empty() {
        let ports: Vec<String> = p.settings.ports.keys().map(u16::to_string).collect();
        line.push_str(&format!("; port settings for {}", ports.join(", ")));
    }
    if !p.subsets.is_empty() {
        let names: Vec<&str> = p.subsets.iter().map(|s| s.name.as_str()).collect();
        line.push_str(&format!(
            "; {} ({})",
            count(names.len(), "subset"),
            names.join(", ")
        ));
    }
    line
}

fn retries(r: &RetryPolicy) -> String {
    if r.attempts == 0 {
        return "no retries".to_owned();
    }
    let per_try = r
        .per_try_timeout
        .map(|t| format!(" of {}", format_duration(t)))
        .unwrap_or_default();
    format!("{} retries{per_try} on {}", r.attempts, r.retry_on)
}

pub(super) fn virtual_service(v: &VirtualService) -> String {
    let hosts: Vec<&str> = v.hosts.iter().map(|h| h.as_str()).collect();
    let mut line = format!(
        "VirtualService {}/{}: hosts {}; {}",
        v.namespace,
        v.name,
        hosts.join(", "),
        count(v.http.len(), "http route")
    );
    let mut destinations: Vec<String> = Vec::new();
    for d in v.http.iter().flat_map(|r| &r.destinations) {
        let d = d.destination.to_string();
        if !destinations.contains(&d) {
            destinations.push(d);
        }
    }
    line.push_str(&format!(" to {}", destinations.join(", ")));
    if let Some(last) = v.http.last() {
        line.push_str(&format!("; default route: {}", retries(&last.retries)));
        if let Some(t) = last.timeout {
            line.push_str(&format!(", timeout {}", format_duration(t)));
        }
    }
    line
}

pub(super) fn mesh_config(
    c: &MeshConfig,
    workload: Option<&WorkloadSettings>,
    with_traffic: usize,
) -> String {
    let endpoints: usize = c.services.iter().map(|s| s.endpoints.len()).sum();
    let name = match workload.map(|w| (&w.namespace, &w.name)) {
        Some((Some(ns), Some(name))) => format!(" {ns}/{name}"),
        Some((None, Some(name))) => format!(" {name}"),
        _ => String::new(),
    };
    let mut line = format!(
        "MeshConfig{name}: {}, {}",
        count(c.services.len(), "service"),
        count(endpoints, "endpoint")
    );
    if with_traffic > 0 {
        line.push_str(&format!(
            "; traffic policy for {}",
            count(with_traffic, "service")
        ));
    }
    line
}

pub(super) fn authorization_policy(p: &AuthorizationPolicy) -> String {
    let action = match &p.action {
        Action::Custom { provider } => format!("CUSTOM ({provider})"),
        other => other.to_string(),
    };
    let mut line = format!(
        "AuthorizationPolicy {}: {action}, {}",
        p.id,
        count(p.rules.len(), "rule")
    );
    selector(&mut line, p.selector.as_ref());
    if p.dry_run {
        line.push_str(", dry run");
    }
    line
}

pub(super) fn request_authentication(r: &RequestAuthentication) -> String {
    let issuers: Vec<&str> = r.rules.iter().map(|j| j.issuer.as_str()).collect();
    let mut line = format!(
        "RequestAuthentication {}: {}",
        r.id,
        count(r.rules.len(), "JWT rule")
    );
    if !issuers.is_empty() {
        line.push_str(&format!(" (issuers {})", issuers.join(", ")));
    }
    selector(&mut line, r.selector.as_ref());
    line
}

pub(super) fn peer_authentication(p: &PeerAuthentication) -> String {
    let mut line = format!("PeerAuthentication {}: mTLS {}", p.id, p.mode);
    for (port, mode) in &p.port_level {
        line.push_str(&format!(", port {port} {mode}"));
    }
    selector(&mut line, p.selector.as_ref());
    line
}

fn selector(line: &mut String, selector: Option<&std::collections::BTreeMap<String, String>>) {
    if let Some(labels) = selector {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push_str(&format!(", for workloads {}", labels.join(",")));
    }
}

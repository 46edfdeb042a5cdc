//! `trafficPolicy` and `subsets`: raw shapes to the model, with istiod's validation.

use std::collections::{BTreeMap, HashMap};

use super::cx::{Cx, join};
use crate::{
    balance::{MaglevConfig, RingHashConfig},
    traffic::{
        Algorithm, ConnectionPoolSettings, ConsistentHash, H2UpgradePolicy, HashCookie,
        HashKeySource, HashTable, LoadBalancerSettings, OutlierDetectionSettings, PolicySettings,
        Subset, TlsMode, TrafficSettings, host::is_dns_label, raw::istio,
    },
};

/// A `trafficPolicy`. `require_fields`: Istio refuses an empty one (`trafficPolicy: {}`).
pub(crate) fn traffic_settings(
    cx: &mut Cx,
    path: &str,
    raw: &istio::TrafficPolicy,
    require_fields: bool,
) -> TrafficSettings {
    if require_fields && *raw == istio::TrafficPolicy::default() {
        cx.invalid(path, "a traffic policy must set at least one field");
    }
    cx.refuse(
        path,
        "tunnel",
        &raw.tunnel,
        "tunneling to the destination through a proxy is not implemented",
    );
    cx.refuse(
        path,
        "proxyProtocol",
        &raw.proxy_protocol,
        "the PROXY protocol header is not implemented",
    );
    let all_ports = policy_settings(
        cx,
        path,
        &raw.load_balancer,
        &raw.connection_pool,
        &raw.outlier_detection,
        &raw.tls,
    );
    let mut ports = BTreeMap::new();
    let mut seen: HashMap<u16, usize> = HashMap::new();
    for (i, p) in raw.port_level_settings.iter().flatten().enumerate() {
        let here = format!("{}[{i}]", join(path, "portLevelSettings"));
        let port = match &p.port {
            Some(selector) => cx.port(join(&here, "port.number"), selector.number),
            None => {
                cx.invalid(
                    join(&here, "port"),
                    "port-level settings need port: { number: N }",
                );
                None
            }
        };
        if p.load_balancer.is_none()
            && p.connection_pool.is_none()
            && p.outlier_detection.is_none()
            && p.tls.is_none()
        {
            cx.invalid(&here, "port-level settings must set at least one of loadBalancer, connectionPool, outlierDetection, tls");
        }
        let settings = policy_settings(
            cx,
            &here,
            &p.load_balancer,
            &p.connection_pool,
            &p.outlier_detection,
            &p.tls,
        );
        if let Some(port) = port {
            if let Some(first) = seen.insert(port, i) {
                cx.invalid(
                    join(&here, "port.number"),
                    format!(
                        "port {port} already has settings in portLevelSettings[{first}]; merge them"
                    ),
                );
            }
            ports.insert(port, settings);
        }
    }
    TrafficSettings { all_ports, ports }
}

fn policy_settings(
    cx: &mut Cx,
    path: &str,
    lb: &Option<istio::LoadBalancer>,
    pool: &Option<istio::ConnectionPool>,
    outlier: &Option<istio::OutlierDetection>,
    tls: &Option<istio::ClientTls>,
) -> PolicySettings {
    PolicySettings {
        load_balancer: lb
            .as_ref()
            .map(|lb| load_balancer(cx, &join(path, "loadBalancer"), lb)),
        connection_pool: pool
            .as_ref()
            .map(|p| connection_pool(cx, &join(path, "connectionPool"), p)),
        outlier_detection: outlier
            .as_ref()
            .map(|o| outlier_detection(cx, &join(path, "outlierDetection"), o)),
        tls: tls.as_ref().map(|t| tls_mode(cx, &join(path, "tls"), t)),
    }
}

fn load_balancer(cx: &mut Cx, path: &str, raw: &istio::LoadBalancer) -> LoadBalancerSettings {
    let warmup = "slow start (warmup) is not implemented; remove it";
    cx.refuse(
        path,
        "warmupDurationSecs",
        &raw.warmup_duration_secs,
        warmup,
    );
    cx.refuse(path, "warmup", &raw.warmup, warmup);
    let algorithm = match (&raw.simple, &raw.consistent_hash) {
        (Some(_), Some(_)) => {
            cx.invalid(path, "set only one of simple and consistentHash");
            Algorithm::default()
        }
        (Some(simple), None) => match simple {
            istio::SimpleLb::Unspecified
            | istio::SimpleLb::LeastConn
            | istio::SimpleLb::LeastRequest => Algorithm::LeastRequest,
            istio::SimpleLb::RoundRobin => Algorithm::RoundRobin,
            istio::SimpleLb::Random => Algorithm::Random,
            istio::SimpleLb::Passthrough => {
                cx.unsupported(
                    join(path, "simple"),
                    "PASSTHROUGH (connect to the caller's original destination address) does not exist without a proxy; use ROUND_ROBIN, LEAST_REQUEST or RANDOM",
                );
                Algorithm::default()
            }
        },
        (None, Some(hash)) => {
            Algorithm::ConsistentHash(consistent_hash(cx, &join(path, "consistentHash"), hash))
        }
        (None, None) => Algorithm::default(),
    };
    let mut settings = LoadBalancerSettings::new(algorithm);
    if let Some(locality) = &raw.locality_lb_setting {
        let here = join(path, "localityLbSetting");
        settings.locality_rules = super::locality::locality_rules(cx, &here, locality);
        settings.locality_enabled = locality.enabled;
    }
    settings
}

fn consistent_hash(cx: &mut Cx, path: &str, raw: &istio::ConsistentHash) -> ConsistentHash {
    let mut keys = Vec::new();
    if let Some(name) = &raw.http_header_name {
        let here = join(path, "httpHeaderName");
        if valid_header_name(name) {
            keys.push(HashKeySource::Header(name.to_ascii_lowercase()));
        } else {
            cx.invalid(
                here,
                format!("{name:?} is not a header name (letters, digits, '-' and '_')"),
            );
        }
    }
    if let Some(cookie) = &raw.http_cookie {
        let here = join(path, "httpCookie");
        cx.refuse(
            &here,
            "attributes",
            &cookie.attributes,
            "cookie attributes are not implemented",
        );
        let name = cookie.name.clone().unwrap_or_default();
        if name.is_empty() {
            cx.invalid(join(&here, "name"), "a cookie name is required");
        }
        let ttl = cookie.ttl.as_ref().and_then(|t| {
            // Zero is allowed here: it asks for a session cookie.
            if t == "0" || t == "0s" {
                return Some(std::time::Duration::ZERO);
            }
            cx.duration(join(&here, "ttl"), &Some(t.clone()))
        });
        keys.push(HashKeySource::Cookie(HashCookie {
            name,
            path: cookie.path.clone(),
            ttl,
        }));
    }
    if raw.use_source_ip == Some(true) {
        keys.push(HashKeySource::SourceIp);
    }
    if let Some(name) = &raw.http_query_parameter_name {
        if name.is_empty() {
            cx.invalid(
                join(path, "httpQueryParameterName"),
                "the parameter name is empty",
            );
        }
        keys.push(HashKeySource::QueryParameter(name.clone()));
    }
    if keys.len() > 1 {
        cx.invalid(
            path,
            "set only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName",
        );
    }
    let deprecated_size = raw.minimum_ring_size.filter(|&s| s > 0);
    let table = if raw.ring_hash.is_some() && raw.maglev.is_some() {
        cx.invalid(path, "set only one of ringHash and maglev");
        HashTable::default()
    } else if deprecated_size.is_some() && (raw.ring_hash.is_some() || raw.maglev.is_some()) {
        cx.invalid(
            join(path, "minimumRingSize"),
            "only one of minimumRingSize or maglev/ringHash can be specified; use ringHash.minimumRingSize",
        );
        HashTable::default()
    } else if let Some(maglev) = &raw.maglev {
        let here = join(path, "maglev.tableSize");
        match maglev.table_size {
            None | Some(0) => {
                cx.invalid(
                    here,
                    "tableSize must be set for maglev (a prime, such as 65537)",
                );
                HashTable::default()
            }
            Some(table_size) => {
                if let Err(e) = (MaglevConfig { table_size }).validate() {
                    cx.invalid(here, e.to_string());
                }
                HashTable::Maglev { table_size }
            }
        }
    } else {
        let (here, size) = match &raw.ring_hash {
            Some(r) => (join(path, "ringHash.minimumRingSize"), r.minimum_ring_size),
            None => (join(path, "minimumRingSize"), deprecated_size),
        };
        let default = RingHashConfig::default();
        let minimum_ring_size = size.filter(|&s| s > 0).unwrap_or(default.minimum_ring_size);
        let config = RingHashConfig {
            minimum_ring_size,
            ..default
        };
        if let Err(e) = config.validate() {
            cx.invalid(here, e.to_string());
        }
        HashTable::RingHash { minimum_ring_size }
    };
    ConsistentHash {
        key: keys.into_iter().next(),
        table,
    }
}

/// Istio's header-name rule for matches and hash keys.
pub(crate) fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn connection_pool(cx: &mut Cx, path: &str, raw: &istio::ConnectionPool) -> ConnectionPoolSettings {
    if raw.tcp.is_none() && raw.http.is_none() {
        cx.invalid(path, "a connection pool must set tcp or http");
    }
    let set = |v: Option<u32>| v.filter(|&n| n > 0);
    let mut pool = ConnectionPoolSettings::default();
    if let Some(tcp) = &raw.tcp {
        let here = join(path, "tcp");
        pool.tcp.max_connections = set(tcp.max_connections);
        pool.tcp.connect_timeout = cx.duration(join(&here, "connectTimeout"), &tcp.connect_timeout);
        pool.tcp.max_connection_duration = cx.duration(
            join(&here, "maxConnectionDuration"),
            &tcp.max_connection_duration,
        );
        // istiod accepts `0s` here (and only here): it switches the idle timeout off.
        pool.tcp.idle_timeout = cx.duration_or_zero(join(&here, "idleTimeout"), &tcp.idle_timeout);
        if let Some(ka) = &tcp.tcp_keepalive {
            let here = join(&here, "tcpKeepalive");
            pool.tcp.keepalive = Some(crate::traffic::TcpKeepalive {
                probes: set(ka.probes),
                time: cx.duration(join(&here, "time"), &ka.time),
                interval: cx.duration(join(&here, "interval"), &ka.interval),
            });
        }
    }
    if let Some(http) = &raw.http {
        let here = join(path, "http");
        pool.http.http1_max_pending_requests = set(http.http1_max_pending_requests);
        pool.http.http2_max_requests = set(http.http2_max_requests);
        pool.http.max_requests_per_connection = set(http.max_requests_per_connection);
        pool.http.max_retries = set(http.max_retries);
        pool.http.max_concurrent_streams = set(http.max_concurrent_streams);
        pool.http.idle_timeout = cx.duration(join(&here, "idleTimeout"), &http.idle_timeout);
        pool.http.use_client_protocol = http.use_client_protocol.unwrap_or(false);
        pool.http.h2_upgrade_policy = match http.h2_upgrade_policy {
            None | Some(istio::H2Upgrade::Default) => H2UpgradePolicy::Default,
            Some(istio::H2Upgrade::DoNotUpgrade) => H2UpgradePolicy::DoNotUpgrade,
            Some(istio::H2Upgrade::Upgrade) => H2UpgradePolicy::Upgrade,
        };
        if pool.http.h2_upgrade_policy == H2UpgradePolicy::Upgrade && pool.http.use_client_protocol
        {
            cx.invalid(
                join(&here, "useClientProtocol"),
                "useClientProtocol must not be true when h2UpgradePolicy is UPGRADE",
            );
        }
    }
    pool
}

fn outlier_detection(
    cx: &mut Cx,
    path: &str,
    raw: &istio::OutlierDetection,
) -> OutlierDetectionSettings {
    cx.refuse(
        path,
        "consecutiveErrors",
        &raw.consecutive_errors,
        "consecutiveErrors is deprecated and removed; use consecutiveGatewayErrors (502/503/504) or consecutive5xxErrors",
    );
    let split = raw.split_external_local_origin_errors.unwrap_or(false);
    if !split && raw.consecutive_local_origin_failures.is_some_and(|n| n > 0) {
        cx.invalid(
            join(path, "consecutiveLocalOriginFailures"),
            "only counted when splitExternalLocalOriginErrors is true; set it, or remove this field",
        );
    }
    let mut percent = |field: &str, value: Option<u32>| {
        if let Some(v) = value.filter(|&v| v > 100) {
            cx.invalid(
                join(path, field),
                format!("{v} is not a percentage (0-100)"),
            );
        }
        value
    };
    let max_ejection_percent = percent("maxEjectionPercent", raw.max_ejection_percent);
    let min_health_percent = percent("minHealthPercent", raw.min_health_percent);
    OutlierDetectionSettings {
        consecutive_5xx_errors: raw.consecutive_5xx_errors,
        consecutive_gateway_errors: raw.consecutive_gateway_errors,
        consecutive_local_origin_failures: raw.consecutive_local_origin_failures,
        split_external_local_origin_errors: split,
        interval: cx.duration(join(path, "interval"), &raw.interval),
        base_ejection_time: cx.duration(join(path, "baseEjectionTime"), &raw.base_ejection_time),
        // Istio passes the percentage on only when it is positive.
        max_ejection_percent: max_ejection_percent.filter(|&v| v > 0),
        min_health_percent,
    }
}

fn tls_mode(cx: &mut Cx, path: &str, raw: &istio::ClientTls) -> TlsMode {
    let why = "only mode ISTIO_MUTUAL (mesh identities, from the service's identities) and DISABLE are supported";
    cx.refuse(path, "clientCertificate", &raw.client_certificate, why);
    cx.refuse(path, "privateKey", &raw.private_key, why);
    cx.refuse(path, "caCertificates", &raw.ca_certificates, why);
    cx.refuse(path, "credentialName", &raw.credential_name, why);
    cx.refuse(path, "subjectAltNames", &raw.subject_alt_names, why);
    cx.refuse(path, "sni", &raw.sni, why);
    cx.refuse(path, "insecureSkipVerify", &raw.insecure_skip_verify, why);
    cx.refuse(path, "caCrl", &raw.ca_crl, why);
    // An absent mode is protobuf's zero value: DISABLE.
    match raw.mode.unwrap_or(istio::TlsMode::Disable) {
        istio::TlsMode::Disable => TlsMode::Disable,
        istio::TlsMode::IstioMutual => TlsMode::IstioMutual,
        mode @ (istio::TlsMode::Simple | istio::TlsMode::Mutual) => {
            cx.unsupported(
                join(path, "mode"),
                format!(
                    "{mode:?}: TLS origination with your own certificates is not implemented; {why}"
                ),
            );
            TlsMode::IstioMutual
        }
    }
}

/// `subsets`: unique DNS-label names, Kubernetes-style labels, optional traffic policy.
pub(crate) fn subsets(cx: &mut Cx, path: &str, raw: &[istio::Subset]) -> Vec<Subset> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, s) in raw.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let name = s.name.clone().unwrap_or_default();
        if name.is_empty() {
            cx.invalid(join(&here, "name"), "a subset name is required");
        } else if !is_dns_label(&name) {
            cx.invalid(
                join(&here, "name"),
                format!(
                    "{name:?} is not a valid subset name (a lowercase DNS label: a-z, 0-9, '-')"
                ),
            );
        } else if let Some(first) = seen.insert(name.clone(), i) {
            cx.invalid(
                join(&here, "name"),
                format!("duplicate subset name {name:?} (also {path}[{first}])"),
            );
        }
        let labels = s.labels.clone().unwrap_or_default();
        for (key, value) in &labels {
            if let Err(reason) = check_label(key, value) {
                cx.invalid(join(&join(&here, "labels"), key), reason);
            }
        }
        let traffic = s
            .traffic_policy
            .as_ref()
            .map(|t| traffic_settings(cx, &join(&here, "trafficPolicy"), t, true));
        out.push(Subset {
            name,
            labels,
            traffic,
        });
    }
    out
}

/// Kubernetes label syntax: `[prefix/]name` (name 1-63 characters) and a value of at most 63.
pub(super) fn check_label(key: &str, value: &str) -> Result<(), String> {
    let part = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && s.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
    };
    let name = key.rsplit_once('/').map_or(key, |(prefix, name)| {
        if prefix.is_empty() || prefix.len() > 253 {
            ""
        } else {
            name
        }
    });
    if !part(name) {
        return Err(format!("{key:?} is not a valid label key"));
    }
    if !value.is_empty() && !part(value) {
        return Err(format!("{value:?} is not a valid label value"));
    }
    Ok(())
}

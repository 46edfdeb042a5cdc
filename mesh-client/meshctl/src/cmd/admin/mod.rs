//! `meshctl status ADDR` and `meshctl endpoints ADDR SERVICE`: what a running workload's admin
//! endpoint (`admin: { listen: ... }`, or `Mesh::serve_admin`) says, in a form to read.
//!
//! Both read `/config_dump` (and `status` also `/healthz/ready` and `/metrics`). Exit status:
//! 0 when all is well; 1 when the workload is not ready, discovery is failing, or (for
//! `endpoints`) an endpoint is unhealthy or ejected; 2 when the endpoint cannot be reached or
//! the service is unknown.

mod client;

use std::io::Write;

use serde_json::Value;

use self::client::{AdminAddr, samples};
use super::Outcome;
use crate::{
    cli::{EndpointsArgs, StatusArgs},
    error::Error,
};

fn dump(addr: &AdminAddr) -> Result<Value, Error> {
    let (status, body) = addr.get("/config_dump")?;
    if status != 200 {
        return Err(Error::Admin {
            addr: addr.shown.clone(),
            reason: format!("/config_dump answered {status}: {}", body.trim()),
        });
    }
    serde_json::from_str(&body).map_err(|e| Error::Admin {
        addr: addr.shown.clone(),
        reason: format!(
            "/config_dump is not the mesh's JSON ({e}); is ADDR a mesh admin endpoint?"
        ),
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn ports(service: &Value) -> String {
    service["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| format!("{}/{}", text(&p["port"]), text(&p["protocol"])))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "any".to_owned())
}

/// `(healthy, ejected, total)` endpoints of a service.
fn endpoint_counts(service: &Value) -> (u64, u64, u64) {
    let endpoints = service["endpoints"].as_array().cloned().unwrap_or_default();
    let healthy = endpoints
        .iter()
        .filter(|e| e["health"] == "healthy")
        .count() as u64;
    let ejected = endpoints.iter().filter(|e| e["ejected"] == true).count() as u64;
    (healthy, ejected, endpoints.len() as u64)
}

fn duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Runs `meshctl status ADDR`.
pub(crate) fn status(args: &StatusArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let addr = AdminAddr::parse(&args.addr)?;
    let dump = dump(&addr)?;
    let (ready_status, ready_body) = addr.get("/healthz/ready")?;
    let (_, metrics) = addr.get("/metrics")?;
    let metrics = samples(&metrics);
    let mut problems = false;

    let workload = &dump["workload"];
    writeln!(
        out,
        "workload:    {} in {} ({})",
        text(&workload["name"]),
        text(&workload["namespace"]),
        text(&workload["spiffe_id"])
    )?;
    if ready_status == 200 {
        writeln!(out, "ready:       yes")?;
    } else {
        problems = true;
        writeln!(out, "ready:       NO: {}", ready_body.trim())?;
    }
    for cert in dump["certificates"].as_array().cloned().unwrap_or_default() {
        writeln!(
            out,
            "certificate: {} expires {} (in {})",
            text(&cert["spiffe_id"]),
            text(&cert["not_after"]),
            duration(cert["seconds_left"].as_u64().unwrap_or(0))
        )?;
    }
    let pools = &dump["pools"];
    match dump["inbound"].as_object() {
        Some(inbound) => writeln!(
            out,
            "inbound:     listening on {}; {} and {} open",
            text(&inbound["listen"]),
            plural(
                pools["inbound"]["connections"].as_u64().unwrap_or(0),
                "connection",
                "connections"
            ),
            plural(
                pools["inbound"]["tunnels"].as_u64().unwrap_or(0),
                "tunnel",
                "tunnels"
            ),
        )?,
        None => writeln!(out, "inbound:     not configured")?,
    }
    let outbound = &pools["outbound"];
    writeln!(
        out,
        "outbound:    {} open ({} opened), {} open",
        plural(
            outbound["connections_open"].as_u64().unwrap_or(0),
            "connection",
            "connections"
        ),
        outbound["connections_opened"].as_u64().unwrap_or(0),
        plural(
            outbound["streams_open"].as_u64().unwrap_or(0),
            "tunnel",
            "tunnels"
        ),
    )?;
    let discovery = &dump["discovery"];
    let health = match discovery["last_error"].as_str() {
        Some(error) => {
            problems = true;
            format!("FAILING: {error}")
        }
        None => "healthy".to_owned(),
    };
    writeln!(
        out,
        "discovery:   version {}, {}, {health}",
        text(&discovery["version"]),
        plural(
            discovery["updates"].as_u64().unwrap_or(0),
            "update",
            "updates"
        )
    )?;
    let services = discovery["services"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    writeln!(out, "services:    {}", services.len())?;
    for service in &services {
        let (healthy, ejected, total) = endpoint_counts(service);
        writeln!(
            out,
            "  {}  ports {}  {} ({healthy} healthy, {ejected} ejected)",
            text(&service["host"]),
            ports(service),
            plural(total, "endpoint", "endpoints"),
        )?;
    }
    let policies = &dump["policies"];
    let authz: Vec<String> = policies["authorization"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "policies:    authorization {}; request authentication {}; rate limit {}",
        if authz.is_empty() {
            "none".to_owned()
        } else {
            authz.join(", ")
        },
        if policies["request_authentication"] == true {
            "on"
        } else {
            "off"
        },
        match (
            policies["rate_limit"]["local"].is_string(),
            policies["rate_limit"]["global"].is_object()
        ) {
            (true, true) => "local and global",
            (true, false) => "local",
            (false, true) => "global",
            (false, false) => "none",
        }
    )?;
    // Counters are whole numbers; an empty sum is -0.0 in floating point.
    let requests = |reporter: &str, server_error: bool| -> u64 {
        metrics
            .iter()
            .filter(|s| s.name == "istio_requests_total" && s.label("reporter") == Some(reporter))
            .filter(|s| {
                !server_error || s.label("response_code").is_some_and(|c| c.starts_with('5'))
            })
            .map(|s| s.value)
            .sum::<f64>()
            .max(0.0) as u64
    };
    let tunnels = |reporter: &str| -> u64 {
        metrics
            .iter()
            .filter(|s| s.name == "istio_tcp_connections_opened_total")
            .filter(|s| s.label("reporter") == Some(reporter))
            .map(|s| s.value)
            .sum::<f64>()
            .max(0.0) as u64
    };
    writeln!(
        out,
        "traffic:     inbound {} requests ({} 5xx), {} tunnels; outbound {} requests ({} 5xx), {} tunnels",
        requests("destination", false),
        requests("destination", true),
        tunnels("destination"),
        requests("source", false),
        requests("source", true),
        tunnels("source"),
    )?;
    let telemetry = &dump["telemetry"];
    writeln!(
        out,
        "telemetry:   metrics {}, access log {}",
        if telemetry["metrics"] == false {
            "off"
        } else {
            "on"
        },
        if telemetry["access_log"]["enabled"] == true {
            "on"
        } else {
            "off"
        },
    )?;
    Ok(if problems {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

/// Runs `meshctl endpoints ADDR SERVICE`.
pub(crate) fn endpoints(args: &EndpointsArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let addr = AdminAddr::parse(&args.addr)?;
    let dump = dump(&addr)?;
    let services = dump["discovery"]["services"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let wanted = args.service.trim_end_matches('.').to_ascii_lowercase();
    // The full host, or its first label (`inventory` for `inventory.shop.svc.cluster.local`)
    // when that names exactly one service.
    let exact: Vec<&Value> = services
        .iter()
        .filter(|s| s["host"] == wanted.as_str())
        .collect();
    let short: Vec<&Value> = services
        .iter()
        .filter(|s| {
            s["host"]
                .as_str()
                .is_some_and(|h| h.split('.').next() == Some(wanted.as_str()))
        })
        .collect();
    let service = match (exact.first(), short.as_slice()) {
        (Some(service), _) => *service,
        (None, [service]) => *service,
        _ => {
            let known: Vec<String> = services.iter().map(|s| text(&s["host"])).collect();
            return Err(Error::InvalidArg {
                flag: "SERVICE",
                value: args.service.clone(),
                reason: if known.is_empty() {
                    "the workload knows no services".to_owned()
                } else {
                    format!(
                        "not a service this workload knows; it knows {}",
                        known.join(", ")
                    )
                },
            });
        }
    };
    let outlier: Vec<&Value> = dump["outlier_detection"]
        .as_array()
        .map(|o| o.iter().filter(|b| b["host"] == service["host"]).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "{}  ports {}  identities {}",
        text(&service["host"]),
        ports(service),
        service["identities"]
            .as_array()
            .map(|i| i.iter().map(text).collect::<Vec<_>>().join(", "))
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| "-".to_owned())
    )?;
    let rows: Vec<[String; 7]> = service["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            [
                text(&e["address"]),
                text(&e["hbone_port"]),
                text(&e["health"]),
                if e["ejected"] == true {
                    "EJECTED"
                } else {
                    "ok"
                }
                .to_owned(),
                text(&e["weight"]),
                match text(&e["locality"]) {
                    l if l.is_empty() => "-".to_owned(),
                    l => l,
                },
                text(&e["identity"]),
            ]
        })
        .collect();
    let header = [
        "ENDPOINT", "HBONE", "HEALTH", "OUTLIER", "WEIGHT", "LOCALITY", "IDENTITY",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(&header.map(str::to_owned)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    let ejections: u64 = outlier.iter().filter_map(|b| b["ejections"].as_u64()).sum();
    if outlier.iter().any(|b| b["enabled"] == true) {
        writeln!(
            out,
            "outlier detection: on, {}",
            plural(ejections, "ejection", "ejections")
        )?;
    }
    let (healthy, ejected, total) = endpoint_counts(service);
    Ok(if healthy < total || ejected > 0 {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

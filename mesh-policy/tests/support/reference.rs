//! A deliberately naive evaluator written straight from Istio's documentation, over the public
//! model types and [`StringPattern::matches`]: no indexes, no compiled sets. The engine must
//! agree with it on every request.

use std::net::IpAddr;

use ipnet::IpNet;
use mesh_policy::authz::{
    Action, ActionTaken, AuthorizationPolicy, AuthzRequest, Condition, ConditionKey, PolicyId,
    Rule, StringPattern, Values, Workload,
};

/// `(allowed, step, deciding policy and rule)` for the enforced policies.
pub fn decide(
    policies: &[AuthorizationPolicy],
    workload: &Workload,
    req: &AuthzRequest,
) -> (bool, ActionTaken, Option<(PolicyId, usize)>) {
    let applied: Vec<&AuthorizationPolicy> = policies
        .iter()
        .filter(|p| workload.is_selected_by(p) && !p.dry_run)
        .collect();
    let first = |action: &Action, restrictive: bool| {
        applied
            .iter()
            .filter(|p| &p.action == action)
            .find_map(|p| {
                let i = p
                    .rules
                    .iter()
                    .position(|r| rule_matches(r, req, restrictive))?;
                Some((p.id.clone(), i))
            })
    };
    if let Some(hit) = first(&Action::Deny, true) {
        return (false, ActionTaken::Deny, Some(hit));
    }
    if !applied.iter().any(|p| p.action == Action::Allow) {
        return (true, ActionTaken::NoAllowPolicies, None);
    }
    match first(&Action::Allow, false) {
        Some(hit) => (true, ActionTaken::Allow, Some(hit)),
        None => (false, ActionTaken::NoAllowMatched, None),
    }
}

fn rule_matches(rule: &Rule, req: &AuthzRequest, restrictive: bool) -> bool {
    let tcp = req.http.is_none();
    if tcp && !restrictive && !rule.http_fields().is_empty() {
        return false;
    }
    let principal = req
        .source_principal
        .as_ref()
        .map(|id| id.as_str().trim_start_matches("spiffe://").to_owned());
    let namespace = req
        .source_principal
        .as_ref()
        .and_then(|id| id.namespace().map(str::to_owned));
    let source_ip = canonical(req.source_ip);
    let remote_ip = req.remote_ip.map_or(source_ip, canonical);
    // On raw TCP, HTTP-only checks count as satisfied (reached only for restrictive rules).
    let http = |check: &dyn Fn() -> bool| tcp || check();
    let auth = req.auth.as_ref().filter(|_| !tcp);
    let request_principal = auth.and_then(|a| a.principal.clone());

    let from_ok = rule.from.is_empty()
        || rule.from.iter().any(|s| {
            strings(
                &s.principals,
                &s.not_principals,
                principal.as_deref(),
                false,
            ) && strings(
                &s.namespaces,
                &s.not_namespaces,
                namespace.as_deref(),
                false,
            ) && ips(&s.ip_blocks, &s.not_ip_blocks, source_ip)
                && ips(&s.remote_ip_blocks, &s.not_remote_ip_blocks, remote_ip)
                && http(&|| {
                    strings(
                        &s.request_principals,
                        &s.not_request_principals,
                        request_principal.as_deref(),
                        false,
                    )
                })
        });
    let to_ok = rule.to.is_empty()
        || rule.to.iter().any(|o| {
            ports(&o.ports, &o.not_ports, req.destination_port)
                && http(&|| {
                    let h = req.http.as_ref();
                    let path = h.map(|h| h.path.split('?').next().unwrap_or(""));
                    strings(&o.hosts, &o.not_hosts, h.map(|h| h.host.as_str()), true)
                        && strings(
                            &o.methods,
                            &o.not_methods,
                            h.map(|h| h.method.as_str()),
                            false,
                        )
                        && strings(&o.paths, &o.not_paths, path, false)
                })
        });
    from_ok
        && to_ok
        && rule.when.iter().all(|c| {
            condition(
                c,
                req,
                tcp,
                principal.as_deref(),
                namespace.as_deref(),
                source_ip,
                remote_ip,
            )
        })
}

fn condition(
    c: &Condition,
    req: &AuthzRequest,
    tcp: bool,
    principal: Option<&str>,
    namespace: Option<&str>,
    source_ip: IpAddr,
    remote_ip: IpAddr,
) -> bool {
    let (any, none) = (&c.values, &c.not_values);
    let auth = req.auth.as_ref();
    let text = |value: Option<&str>| many(any, none, value.into_iter().collect(), false);
    match &c.key {
        ConditionKey::SourceIp => ip_values(any, none, source_ip),
        ConditionKey::RemoteIp => ip_values(any, none, remote_ip),
        ConditionKey::DestinationIp => ip_values(any, none, canonical(req.destination_ip)),
        ConditionKey::DestinationPort => match (any, none) {
            (Values::Ports(a), Values::Ports(n)) => ports(a, n, req.destination_port),
            _ => false,
        },
        ConditionKey::SourceNamespace => text(namespace),
        ConditionKey::SourcePrincipal => text(principal),
        ConditionKey::ConnectionSni => text(req.sni.as_deref()),
        _ if tcp => true,
        ConditionKey::RequestHeader(name) => {
            let values: Vec<&str> = req
                .http
                .iter()
                .flat_map(|h| &h.headers)
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            let joined = values.join(",");
            many(
                any,
                none,
                if values.is_empty() {
                    vec![]
                } else {
                    vec![joined.as_str()]
                },
                true,
            )
        }
        ConditionKey::RequestPrincipal => text(auth.and_then(|a| a.principal.as_deref())),
        ConditionKey::RequestPresenter => text(auth.and_then(|a| a.presenter.as_deref())),
        ConditionKey::RequestAudiences => many(
            any,
            none,
            auth.map(|a| a.audiences.iter().map(String::as_str).collect())
                .unwrap_or_default(),
            false,
        ),
        ConditionKey::RequestClaim(path) => {
            let mut value = auth.map(|a| &a.claims);
            for p in path {
                value = value.and_then(|v| v.get(p));
            }
            let items: Vec<&str> = match value {
                Some(serde_json::Value::Array(items)) => {
                    items.iter().filter_map(|v| v.as_str()).collect()
                }
                Some(v) => v.as_str().into_iter().collect(),
                None => vec![],
            };
            many(any, none, items, false)
        }
        _ => false,
    }
}

/// Positive: some value matches some pattern; negative: no value matches any pattern.
fn many(any: &Values, none: &Values, values: Vec<&str>, header: bool) -> bool {
    let (Values::Strings(any), Values::Strings(none)) = (any, none) else {
        return false;
    };
    let hit = |patterns: &[StringPattern]| {
        values.iter().any(|v| {
            patterns
                .iter()
                .any(|p| p.matches(v, false) || (header && *p == StringPattern::Presence))
        })
    };
    (any.is_empty() || hit(any)) && !hit(none)
}

fn strings(
    any: &[StringPattern],
    none: &[StringPattern],
    value: Option<&str>,
    ignore_case: bool,
) -> bool {
    let hit = |patterns: &[StringPattern]| {
        value.is_some_and(|v| patterns.iter().any(|p| p.matches(v, ignore_case)))
    };
    (any.is_empty() || hit(any)) && !hit(none)
}

fn ips(any: &[IpNet], none: &[IpNet], ip: IpAddr) -> bool {
    (any.is_empty() || any.iter().any(|n| n.contains(&ip))) && !none.iter().any(|n| n.contains(&ip))
}

fn ip_values(any: &Values, none: &Values, ip: IpAddr) -> bool {
    match (any, none) {
        (Values::Ips(a), Values::Ips(n)) => ips(a, n, ip),
        _ => false,
    }
}

fn ports(any: &[u16], none: &[u16], port: u16) -> bool {
    (any.is_empty() || any.contains(&port)) && !none.contains(&port)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

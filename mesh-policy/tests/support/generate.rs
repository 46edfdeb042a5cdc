//! Generators shared by the property tests: Istio policy documents from a small vocabulary
//! (so rules often match) and requests, both from that vocabulary and from arbitrary values.

use std::net::IpAddr;

use mesh_policy::authz::{
    AuthorizationPolicy, AuthzRequest, HttpAttributes, RequestAuth, parse_policies,
};
use proptest::prelude::*;
use serde_json::json;

fn one_of(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(items).prop_map(str::to_owned)
}

fn list(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec(one_of(items), 1..3).prop_map(|v| {
        let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", quoted.join(", "))
    })
}

const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/shop/sa/web",
    "cluster.local/ns/ops/sa/admin",
    "cluster.local/ns/shop/*",
    "*/sa/admin",
    "*",
];
const NAMESPACES: &[&str] = &["shop", "ops", "s*", "*"];
const IPS: &[&str] = &["10.0.0.0/8", "10.1.2.3", "192.168.0.0/16", "::/0"];
const PORTS: &[&str] = &["80", "8080", "9090"];
const METHODS: &[&str] = &["GET", "POST", "*"];
const PATHS: &[&str] = &["/", "/api/*", "*.png", "/admin"];
const HOSTS: &[&str] = &["api.shop.svc", "*.svc", "API.*"];
const JWT: &[&str] = &["https://idp/alice", "https://idp/*", "*"];

/// One `source` with one or two fields.
fn source(custom: bool) -> impl Strategy<Value = String> {
    let identity = prop_oneof![
        list(PRINCIPALS).prop_map(|v| format!("principals: {v}")),
        list(PRINCIPALS).prop_map(|v| format!("notPrincipals: {v}")),
        list(NAMESPACES).prop_map(|v| format!("namespaces: {v}")),
        list(NAMESPACES).prop_map(|v| format!("notNamespaces: {v}")),
        list(JWT).prop_map(|v| format!("requestPrincipals: {v}")),
    ];
    let network = prop_oneof![
        list(IPS).prop_map(|v| format!("ipBlocks: {v}")),
        list(IPS).prop_map(|v| format!("notIpBlocks: {v}")),
        list(IPS).prop_map(|v| format!("remoteIpBlocks: {v}")),
    ];
    // CUSTOM policies may not test identities (Istio refuses them there).
    let field = if custom {
        network.boxed()
    } else {
        prop_oneof![identity, network].boxed()
    };
    proptest::collection::vec(field, 1..3).prop_map(|fields| {
        // One entry per field name: a YAML mapping cannot repeat a key.
        let mut by_name = std::collections::BTreeMap::new();
        for f in fields {
            by_name
                .entry(f.split(':').next().unwrap_or("").to_owned())
                .or_insert(f);
        }
        format!(
            "{{source: {{{}}}}}",
            by_name.into_values().collect::<Vec<_>>().join(", ")
        )
    })
}

fn operation() -> impl Strategy<Value = String> {
    prop_oneof![
        list(PORTS).prop_map(|v| format!("ports: {v}")),
        list(PORTS).prop_map(|v| format!("notPorts: {v}")),
        list(METHODS).prop_map(|v| format!("methods: {v}")),
        list(PATHS).prop_map(|v| format!("paths: {v}")),
        list(PATHS).prop_map(|v| format!("notPaths: {v}")),
        list(HOSTS).prop_map(|v| format!("hosts: {v}")),
    ]
    .prop_map(|f| format!("{{operation: {{{f}}}}}"))
}

fn condition(custom: bool) -> impl Strategy<Value = String> {
    let any = prop_oneof![
        list(IPS).prop_map(|v| format!("key: source.ip, values: {v}")),
        list(PORTS).prop_map(|v| format!("key: destination.port, notValues: {v}")),
        list(&["a", "b*", "*"]).prop_map(|v| format!("key: \"request.headers[x-k]\", values: {v}")),
        list(&["api.shop.svc", "*.svc"]).prop_map(|v| format!("key: connection.sni, values: {v}")),
    ];
    let identity = prop_oneof![
        list(NAMESPACES).prop_map(|v| format!("key: source.namespace, values: {v}")),
        list(&["dev", "ops"])
            .prop_map(|v| format!("key: \"request.auth.claims[groups]\", values: {v}")),
    ];
    let c = if custom {
        any.boxed()
    } else {
        prop_oneof![any, identity].boxed()
    };
    c.prop_map(|c| format!("{{{c}}}"))
}

fn rule(custom: bool) -> impl Strategy<Value = String> {
    let parts = (
        proptest::option::of(proptest::collection::vec(source(custom), 1..3)),
        proptest::option::of(proptest::collection::vec(operation(), 1..3)),
        proptest::option::of(proptest::collection::vec(condition(custom), 1..3)),
    );
    parts.prop_map(|(from, to, when)| {
        let mut fields = Vec::new();
        if let Some(from) = from {
            fields.push(format!("from: [{}]", from.join(", ")));
        }
        if let Some(to) = to {
            fields.push(format!("to: [{}]", to.join(", ")));
        }
        if let Some(when) = when {
            fields.push(format!("when: [{}]", when.join(", ")));
        }
        format!("{{{}}}", fields.join(", "))
    })
}

/// One policy document; `kind` picks the action (0 ALLOW, 1 DENY, 2 AUDIT, 3 CUSTOM, 4 dry-run
/// ALLOW, 5 dry-run DENY).
pub fn policy_with(kind: impl Strategy<Value = u8>) -> impl Strategy<Value = String> {
    (
        kind,
        one_of(&["shop", "shop", "istio-system", "other"]),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_flat_map(|(kind, ns, selector, id)| {
            let min_rules = usize::from(matches!(kind, 1 | 3 | 5));
            proptest::collection::vec(rule(kind == 3), min_rules..3).prop_map(move |rules| {
                let (action, dry) = match kind {
                    0 => ("ALLOW", false),
                    1 => ("DENY", false),
                    2 => ("AUDIT", false),
                    3 => ("CUSTOM, provider: {name: ext}", false),
                    4 => ("ALLOW", true),
                    _ => ("DENY", true),
                };
                let annotations = if dry {
                    ", annotations: {istio.io/dry-run: \"true\"}"
                } else {
                    ""
                };
                let selector = if selector {
                    "selector: {matchLabels: {app: api}}, "
                } else {
                    ""
                };
                format!(
                    "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                     metadata: {{name: p{id}, namespace: {ns}{annotations}}}\n\
                     spec: {{{selector}action: {action}, rules: [{}]}}\n",
                    rules.join(", ")
                )
            })
        })
}

pub fn policies() -> impl Strategy<Value = Vec<AuthorizationPolicy>> {
    proptest::collection::vec(policy_with(0u8..6), 0..6).prop_map(|docs| {
        parse_policies(&docs.concat())
            .unwrap_or_else(|e| panic!("generated invalid YAML: {e}\n{}", docs.concat()))
    })
}

pub fn deny_policy() -> impl Strategy<Value = AuthorizationPolicy> {
    policy_with(Just(1u8)).prop_map(|doc| parse_policies(&doc).unwrap().remove(0))
}

/// Requests from the policies' vocabulary, so that rules often match.
pub fn request() -> impl Strategy<Value = AuthzRequest> {
    let principal = proptest::option::of(one_of(&[
        "spiffe://cluster.local/ns/shop/sa/web",
        "spiffe://cluster.local/ns/ops/sa/admin",
        "spiffe://example.org/batch",
    ]));
    let ip = one_of(&[
        "10.1.2.3",
        "192.168.1.1",
        "8.8.8.8",
        "2001:db8::1",
        "::ffff:10.9.9.9",
    ]);
    let http = proptest::option::of((
        one_of(&["GET", "POST", "DELETE"]),
        one_of(&["/", "/api/x", "/a.png?q=1", "/admin"]),
        one_of(&["api.shop.svc", "API.other.svc", "x"]),
        proptest::option::of(one_of(&["a", "bc", ""])),
        proptest::option::of(one_of(&["dev", "ops"])),
    ));
    (
        principal,
        ip,
        one_of(&["80", "8080", "9090", "22"]),
        any::<bool>(),
        http,
    )
        .prop_map(|(principal, ip, port, sni, http)| {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            let mut req = AuthzRequest::tcp(ip, (ip, port.parse().unwrap_or(80)).into());
            if let Some(p) = principal {
                req = req.with_principal(p.parse().unwrap());
            }
            if sni {
                req = req.with_sni("api.shop.svc");
            }
            if let Some((method, path, host, header, group)) = http {
                let mut attrs = HttpAttributes::new(method, path, host);
                if let Some(h) = header {
                    attrs = attrs.with_header("X-K", h);
                }
                req = req.with_http(attrs);
                if let Some(group) = group {
                    req = req.with_auth(RequestAuth::from_claims(
                        json!({"iss": "https://idp", "sub": "alice", "groups": [group]}),
                    ));
                }
            }
            req
        })
}

/// Requests made of arbitrary values, for "never panics".
pub fn wild_request() -> impl Strategy<Value = AuthzRequest> {
    let http = proptest::option::of((
        ".*",
        ".*",
        ".*",
        proptest::collection::vec((".*", ".*"), 0..4),
    ));
    (
        any::<IpAddr>(),
        any::<IpAddr>(),
        any::<u16>(),
        proptest::option::of(".*"),
        http,
        ".*",
    )
        .prop_map(|(src, dst, port, sni, http, claim)| {
            let mut req = AuthzRequest::tcp(src, (dst, port).into()).with_remote_ip(dst);
            if let Some(sni) = sni {
                req = req.with_sni(sni);
            }
            if let Some((method, path, host, headers)) = http {
                let mut attrs = HttpAttributes::new(method, path, host);
                for (k, v) in headers {
                    attrs = attrs.with_header(k, v);
                }
                req = req.with_http(attrs).with_auth(RequestAuth::from_claims(
                    json!({"groups": claim, "realm": {"roles": [claim]}}),
                ));
            }
            req
        })
}

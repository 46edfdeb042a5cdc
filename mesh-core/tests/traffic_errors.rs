//! Every way a DestinationRule or VirtualService document can be refused names the document,
//! the resource and the field, and says whether the value is wrong or the feature unsupported.

use mesh_core::traffic::{TrafficErrorKind, TrafficErrors, parse_resources};

use TrafficErrorKind::{Invalid, Syntax, Unsupported};

fn dr(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: r, namespace: shop }}\nspec:\n{}",
        indent(spec)
    )
}

fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: r, namespace: shop }}\nspec:\n{}",
        indent(spec)
    )
}

fn indent(spec: &str) -> String {
    spec.lines().map(|l| format!("  {l}\n")).collect()
}

fn errors(yaml: &str) -> TrafficErrors {
    match parse_resources(yaml) {
        Ok(r) => panic!("accepted:\n{yaml}\n{r:?}"),
        Err(e) => e,
    }
}

/// Asserts the document fails with (at least) an error at `path` of `kind` mentioning `text`.
fn check(yaml: &str, path: &str, kind: TrafficErrorKind, text: &str) {
    let e = errors(yaml);
    let found = e.errors().iter().find(|e| e.path == path);
    let Some(found) = found else {
        panic!("no error at {path}:\n{e}\n---\n{yaml}");
    };
    assert_eq!(found.kind, kind, "{found}");
    assert!(found.to_string().contains(text), "{found} lacks {text:?}");
    assert!(found.to_string().contains(path), "{found}");
    if kind == Unsupported {
        assert!(found.to_string().contains("not supported"), "{found}");
    }
}

#[test]
fn document_level_errors() {
    check(
        "kind: DestinationRule\nmetadata: { name: r }\nspec: { host: r }\n",
        "apiVersion",
        Invalid,
        "networking.istio.io",
    );
    check(
        "apiVersion: networking.istio.io/v1\nmetadata: { name: r }\n",
        "kind",
        Invalid,
        "missing",
    );
    check(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: r }\n",
        "kind",
        Unsupported,
        "Deployment",
    );
    check("- a\n- b\n", ".", Syntax, "mapping");
    check("a: [\n", ".", Syntax, "");
    check(
        &dr("host: r").replace(
            "metadata: { name: r, namespace: shop }",
            "metadata: { namespace: shop }",
        ),
        "metadata.name",
        Invalid,
        "required",
    );
    check(
        &dr("host: r").replace("namespace: shop", "namespace: shop, owner: me"),
        "metadata.owner",
        Syntax,
        "unknown field `owner`",
    );
    check(
        &format!("{}extra: 1\n", dr("host: r")),
        "extra",
        Syntax,
        "unknown field `extra`",
    );
}

#[test]
fn resource_and_document_are_named() {
    let yaml = format!(
        "{}---\n{}",
        dr("host: r"),
        vs("hosts: [r]\nhttp: [{ route: [{ destination: { host: r } }], timeout: 0s }]")
    );
    let e = errors(&yaml);
    let err = &e.errors()[0];
    assert_eq!(err.document, 2);
    assert_eq!(err.resource.as_deref(), Some("VirtualService shop/r"));
    assert_eq!(err.path, "spec.http[0].timeout");
    assert!(
        err.to_string()
            .starts_with("document 2 (VirtualService shop/r): spec.http[0].timeout: "),
        "{err}"
    );
}

#[test]
fn destination_rule_field_errors() {
    let cases: &[(&str, &str, TrafficErrorKind, &str)] = &[
        (
            "trafficPolicy: { loadBalancer: { simple: PASSTHROUGH } }",
            "spec.trafficPolicy.loadBalancer.simple",
            Unsupported,
            "PASSTHROUGH",
        ),
        (
            "trafficPolicy: { loadBalancer: { simple: FASTEST } }",
            "spec.trafficPolicy.loadBalancer.simple",
            Syntax,
            "FASTEST",
        ),
        (
            "trafficPolicy: { loadBalancer: { simple: RANDOM, consistentHash: { useSourceIp: true } } }",
            "spec.trafficPolicy.loadBalancer",
            Invalid,
            "only one",
        ),
        (
            "trafficPolicy: { loadBalancer: { warmupDurationSecs: 10s } }",
            "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
            Unsupported,
            "warmup",
        ),
        (
            "trafficPolicy: { loadBalancer: { warmup: { duration: 10s } } }",
            "spec.trafficPolicy.loadBalancer.warmup",
            Unsupported,
            "warmup",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { ttl: 1s } } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
            Invalid,
            "required",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: a, ttl: 1x } } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl",
            Invalid,
            "unknown unit",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: a, attributes: [] } } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes",
            Unsupported,
            "",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: 'x user' } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName",
            Invalid,
            "header name",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: a, useSourceIp: true } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash",
            Invalid,
            "only one",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 1000 } } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            Invalid,
            "prime",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true, maglev: {} } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            Invalid,
            "must be set",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 7 }, ringHash: {} } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash",
            Invalid,
            "only one",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true, minimumRingSize: 5, ringHash: {} } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
            Invalid,
            "only one",
        ),
        (
            "trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true, ringHash: { minimumRingSize: 99999999 } } } }",
            "spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize",
            Invalid,
            "ring",
        ),
        (
            "trafficPolicy: { connectionPool: {} }",
            "spec.trafficPolicy.connectionPool",
            Invalid,
            "tcp or http",
        ),
        (
            "trafficPolicy: { connectionPool: { tcp: { maxConnections: -1 } } }",
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
            Syntax,
            "-1",
        ),
        (
            "trafficPolicy: { connectionPool: { tcp: { connectTimeout: 0s } } }",
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            Invalid,
            "1ms",
        ),
        (
            "trafficPolicy: { connectionPool: { tcp: { tcpKeepalive: { interval: 1500us } } } }",
            "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.interval",
            Invalid,
            "ms precision",
        ),
        (
            "trafficPolicy: { connectionPool: { tcp: { idleTimeout: soon } } }",
            "spec.trafficPolicy.connectionPool.tcp.idleTimeout",
            Invalid,
            "not a duration",
        ),
        (
            // Only the TCP idle timeout may be switched off with `0s`.
            "trafficPolicy: { connectionPool: { http: { idleTimeout: 0s } } }",
            "spec.trafficPolicy.connectionPool.http.idleTimeout",
            Invalid,
            "shorter than 1ms",
        ),
        (
            "trafficPolicy: { connectionPool: { tcp: { maxConnectionDuration: 0s } } }",
            "spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration",
            Invalid,
            "shorter than 1ms",
        ),
        (
            "trafficPolicy: { connectionPool: { tcp: { idleTimeout: 500us } } }",
            "spec.trafficPolicy.connectionPool.tcp.idleTimeout",
            Invalid,
            "shorter than 1ms",
        ),
        (
            "trafficPolicy: { connectionPool: { http: { maxRetries: many } } }",
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            Syntax,
            "many",
        ),
        (
            "trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: UPGRADE, useClientProtocol: true } } }",
            "spec.trafficPolicy.connectionPool.http.useClientProtocol",
            Invalid,
            "UPGRADE",
        ),
        (
            "trafficPolicy: { connectionPool: { http: { idleTimeout: -1s } } }",
            "spec.trafficPolicy.connectionPool.http.idleTimeout",
            Invalid,
            "negative",
        ),
        (
            "trafficPolicy: { outlierDetection: { consecutiveErrors: 5 } }",
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            Unsupported,
            "consecutive5xxErrors",
        ),
        (
            "trafficPolicy: { outlierDetection: { consecutiveLocalOriginFailures: 3 } }",
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            Invalid,
            "splitExternalLocalOriginErrors",
        ),
        (
            "trafficPolicy: { outlierDetection: { maxEjectionPercent: 101 } }",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            Invalid,
            "percentage",
        ),
        (
            "trafficPolicy: { outlierDetection: { minHealthPercent: 200 } }",
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
            Invalid,
            "percentage",
        ),
        (
            "trafficPolicy: { outlierDetection: { interval: 10 } }",
            "spec.trafficPolicy.outlierDetection.interval",
            Invalid,
            "missing unit",
        ),
        (
            "trafficPolicy: { outlierDetection: { baseEjectionTime: 0.5ms } }",
            "spec.trafficPolicy.outlierDetection.baseEjectionTime",
            Invalid,
            "1ms",
        ),
        (
            "trafficPolicy: { outlierDetection: { consecutive5xxError: 5 } }",
            "spec.trafficPolicy.outlierDetection.consecutive5xxError",
            Syntax,
            "unknown field `consecutive5xxError`",
        ),
        (
            "trafficPolicy: { tls: { mode: SIMPLE } }",
            "spec.trafficPolicy.tls.mode",
            Unsupported,
            "ISTIO_MUTUAL",
        ),
        (
            "trafficPolicy: { tls: { mode: MUTUAL, clientCertificate: /c.pem } }",
            "spec.trafficPolicy.tls.clientCertificate",
            Unsupported,
            "",
        ),
        (
            "trafficPolicy: { tls: { mode: ISTIO_MUTUAL, sni: a.b } }",
            "spec.trafficPolicy.tls.sni",
            Unsupported,
            "",
        ),
        (
            "trafficPolicy: { tls: { mode: ISTIO_MUTUAL, subjectAltNames: [a] } }",
            "spec.trafficPolicy.tls.subjectAltNames",
            Unsupported,
            "",
        ),
        (
            "trafficPolicy: { tunnel: { targetHost: a, targetPort: 1 } }",
            "spec.trafficPolicy.tunnel",
            Unsupported,
            "",
        ),
        (
            "trafficPolicy: { proxyProtocol: {} }",
            "spec.trafficPolicy.proxyProtocol",
            Unsupported,
            "PROXY",
        ),
        (
            "trafficPolicy: {}",
            "spec.trafficPolicy",
            Invalid,
            "at least one",
        ),
        (
            "trafficPolicy: { portLevelSettings: [{ loadBalancer: { simple: RANDOM } }] }",
            "spec.trafficPolicy.portLevelSettings[0].port",
            Invalid,
            "number",
        ),
        (
            "trafficPolicy: { portLevelSettings: [{ port: { number: 0 }, loadBalancer: { simple: RANDOM } }] }",
            "spec.trafficPolicy.portLevelSettings[0].port.number",
            Invalid,
            "1..65535",
        ),
        (
            "trafficPolicy: { portLevelSettings: [{ port: { number: 70000 }, tls: { mode: DISABLE } }] }",
            "spec.trafficPolicy.portLevelSettings[0].port.number",
            Invalid,
            "1..65535",
        ),
        (
            "trafficPolicy: { portLevelSettings: [{ port: { number: 80 } }] }",
            "spec.trafficPolicy.portLevelSettings[0]",
            Invalid,
            "at least one",
        ),
        (
            "trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, tls: {} }, { port: { number: 80 }, tls: {} }] }",
            "spec.trafficPolicy.portLevelSettings[1].port.number",
            Invalid,
            "portLevelSettings[0]",
        ),
        (
            "trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, portLevelSettings: [] }] }",
            "spec.trafficPolicy.portLevelSettings[0].portLevelSettings",
            Syntax,
            "unknown field `portLevelSettings`",
        ),
        (
            "trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, connectionPool: { tcp: { connectTimeout: 1h1x } } }] }",
            "spec.trafficPolicy.portLevelSettings[0].connectionPool.tcp.connectTimeout",
            Invalid,
            "unit",
        ),
        (
            "subsets: [{ name: v1 }, { name: v1 }]",
            "spec.subsets[1].name",
            Invalid,
            "duplicate subset name \"v1\"",
        ),
        (
            "subsets: [{ labels: { version: v1 } }]",
            "spec.subsets[0].name",
            Invalid,
            "required",
        ),
        (
            "subsets: [{ name: V1 }]",
            "spec.subsets[0].name",
            Invalid,
            "DNS label",
        ),
        (
            "subsets: [{ name: v1, labels: { 'bad key!': x } }]",
            "spec.subsets[0].labels.bad key!",
            Invalid,
            "label key",
        ),
        (
            "subsets: [{ name: v1, trafficPolicy: {} }]",
            "spec.subsets[0].trafficPolicy",
            Invalid,
            "at least one",
        ),
        (
            "subsets: [{ name: v1, trafficPolicy: { loadBalancer: { simple: PASSTHROUGH } } }]",
            "spec.subsets[0].trafficPolicy.loadBalancer.simple",
            Unsupported,
            "",
        ),
        (
            "subsets: [{ name: v1, version: v1 }]",
            "spec.subsets[0].version",
            Syntax,
            "unknown field `version`",
        ),
        ("exportTo: ['.']", "spec.exportTo", Unsupported, "exportTo"),
        (
            "workloadSelector: { matchLabels: { app: a } }",
            "spec.workloadSelector",
            Unsupported,
            "",
        ),
        (
            "trafficPolicy: { tls: { mode: DISABLE } }",
            "spec.host",
            Invalid,
            "required",
        ),
        ("host: Reviews", "spec.host", Invalid, "lowercase"),
        ("host: 'a.*.b'", "spec.host", Invalid, "wildcard"),
    ];
    for (spec, path, kind, text) in cases {
        let spec =
            if spec.starts_with("host:") || spec.contains("spec.host") || *path == "spec.host" {
                spec.to_string()
            } else {
                format!("host: r\n{spec}")
            };
        check(&dr(&spec), path, *kind, text);
    }
}

#[test]
fn every_problem_is_reported() {
    let yaml = format!(
        "{}---\n{}",
        dr(
            "host: r\ntrafficPolicy:\n  loadBalancer: { simple: PASSTHROUGH }\n  outlierDetection: { interval: 0s, maxEjectionPercent: 150 }\nsubsets: [{ name: a }, { name: a }]"
        ),
        vs("hosts: [r]\nhttp: [{ route: [{ destination: { host: r } }], fault: {} }]")
    );
    let e = errors(&yaml);
    let paths: Vec<(usize, &str)> = e
        .errors()
        .iter()
        .map(|e| (e.document, e.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            (1, "spec.trafficPolicy.loadBalancer.simple"),
            (1, "spec.trafficPolicy.outlierDetection.maxEjectionPercent"),
            (1, "spec.trafficPolicy.outlierDetection.interval"),
            (1, "spec.subsets[1].name"),
            (2, "spec.http[0].fault"),
        ]
    );
    assert_eq!(e.to_string().lines().count(), 5);
}

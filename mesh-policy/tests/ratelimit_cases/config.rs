//! The rate-limit config format: the documented example, and every refusal with its path.

use std::time::Duration;

use mesh_policy::{
    authz::StringPattern,
    ratelimit::{DEFAULT_MAX_KEYS, KeyPart, MissingKey, RateLimitConfig},
};

#[test]
fn documented_example_parses() {
    let yaml = r#"
rules:
  - name: per-caller
    key: [source_principal]
    limit: { max_tokens: 100, tokens_per_fill: 50, fill_interval: 1s }
  - name: api-writes-per-user
    match:
      path_prefixes: [/api/]
      methods: [POST, PUT, DELETE]
      destination_ports: [8080]
      source_namespaces: [shop]
      source_principals: ["spiffe://cluster.local/ns/shop/sa/*"]
      headers: { X-Tenant: "gold-*" }
    key: [{ header: X-User-Id }, method, destination_port, source_namespace]
    missing_key: skip
    max_keys: 500
    limit: { max_tokens: 10, fill_interval: 1m30s }
"#;
    let config = RateLimitConfig::from_yaml(yaml).unwrap();
    let [caller, writes] = &config.rules[..] else {
        panic!("two rules")
    };
    assert_eq!(caller.name, "per-caller");
    assert_eq!(caller.key, [KeyPart::SourcePrincipal]);
    assert_eq!(caller.limit.max_tokens(), 100);
    assert_eq!(caller.limit.tokens_per_fill(), 50);
    assert_eq!(caller.limit.fill_interval(), Duration::from_secs(1));
    assert_eq!(caller.max_keys, DEFAULT_MAX_KEYS);
    assert_eq!(caller.missing_key, MissingKey::Shared);
    assert!(caller.matcher.methods.is_empty());

    assert_eq!(writes.limit.tokens_per_fill(), 1, "Envoy's default");
    assert_eq!(writes.limit.fill_interval(), Duration::from_secs(90));
    assert_eq!(writes.max_keys, 500);
    assert_eq!(writes.missing_key, MissingKey::Skip);
    assert_eq!(
        writes.key,
        [
            KeyPart::Header("x-user-id".to_owned()),
            KeyPart::Method,
            KeyPart::DestinationPort,
            KeyPart::SourceNamespace
        ]
    );
    assert_eq!(writes.key[0].to_string(), "header:x-user-id");
    let m = &writes.matcher;
    assert_eq!(
        m.source_principals,
        [StringPattern::Prefix(
            "cluster.local/ns/shop/sa/".to_owned()
        )],
        "spiffe:// is dropped: principals compare in Istio form"
    );
    assert_eq!(
        m.headers,
        [(
            "x-tenant".to_owned(),
            StringPattern::Prefix("gold-".to_owned())
        )]
    );
    assert_eq!(m.destination_ports, [8080]);
    assert_eq!(
        RateLimitConfig::from_yaml("rules: []").unwrap().rules.len(),
        0
    );
}

fn assert_refused(yaml: &str, path: &str, reason_has: &str) {
    let err = match RateLimitConfig::from_yaml(yaml) {
        Ok(c) => panic!("accepted: {c:?}\n{yaml}"),
        Err(e) => e,
    };
    assert_eq!(err.path, path, "{err}\n{yaml}");
    assert!(
        err.reason.contains(reason_has),
        "{err}: wanted {reason_has:?}"
    );
    assert_eq!(err.to_string(), format!("{}: {}", err.path, err.reason));
}

/// One rule with `extra` fields added to a valid base.
fn rule(extra: &str) -> String {
    format!("rules:\n- {{name: r, limit: {{max_tokens: 1, fill_interval: 1s}}{extra}}}\n")
}

#[test]
fn unknown_fields_and_types_name_their_path() {
    assert_refused("", ".", "missing field `rules`");
    assert_refused("rule: []", "rule", "unknown field `rule`");
    assert_refused(
        &rule(", burst: 3"),
        "rules[0].burst",
        "unknown field `burst`",
    );
    assert_refused(
        "rules: [{name: r, limit: {max_tokens: 1, fill_interval: 1s, fill: 2}}]",
        "rules[0].limit.fill",
        "unknown field",
    );
    assert_refused(
        &rule(", match: {path: /a}"),
        "rules[0].match.path",
        "unknown field `path`",
    );
    assert_refused(
        "rules: [{name: r, limit: {max_tokens: -1, fill_interval: 1s}}]",
        "rules[0].limit.max_tokens",
        "expected u32",
    );
    assert_refused(
        &rule(", key: [user]"),
        "rules[0].key[0]",
        "unknown variant `user`",
    );
    assert_refused(
        &rule(", key: [{hedr: x}]"),
        "rules[0].key[0]",
        "unknown field `hedr`",
    );
    assert_refused(
        &rule(", key: [{header: x, method: y}]"),
        "rules[0].key[0]",
        "unknown field `method`",
    );
    assert_refused(&rule(", key: [7]"), "rules[0].key[0]", "invalid type");
    assert_refused(
        &rule(", missing_key: drop"),
        "rules[0].missing_key",
        "unknown variant",
    );
    assert_refused(
        &rule(", match: {destination_ports: [70000]}"),
        "rules[0].match.destination_ports[0]",
        "invalid value",
    );
    assert_refused(
        "rules: [{limit: {max_tokens: 1, fill_interval: 1s}}]",
        "rules[0]",
        "missing field `name`",
    );
}

#[test]
fn values_are_validated() {
    let limit = |l: &str| format!("rules: [{{name: r, limit: {{{l}}}}}]");
    assert_refused(
        &limit("max_tokens: 0, fill_interval: 1s"),
        "rules[0].limit.max_tokens",
        "at least 1",
    );
    assert_refused(
        &limit("max_tokens: 1, tokens_per_fill: 0, fill_interval: 1s"),
        "rules[0].limit.tokens_per_fill",
        "at least 1",
    );
    assert_refused(
        &limit("max_tokens: 1, fill_interval: \"1\""),
        "rules[0].limit.fill_interval",
        "such as \"1s\"",
    );
    assert_refused(
        &limit("max_tokens: 1, fill_interval: 0s"),
        "rules[0].limit.fill_interval",
        "between 1ms and 24h",
    );
    assert_refused(
        &limit("max_tokens: 1, fill_interval: 25h"),
        "rules[0].limit.fill_interval",
        "between 1ms and 24h",
    );

    assert_refused(
        "rules: [{name: 'has space', limit: {max_tokens: 1, fill_interval: 1s}}]",
        "rules[0].name",
        "not a rule name",
    );
    assert_refused(
        &(rule("") + "- {name: r, limit: {max_tokens: 2, fill_interval: 1s}}\n"),
        "rules[1].name",
        "must be unique",
    );
    assert_refused(
        &rule(", max_keys: 5"),
        "rules[0].max_keys",
        "only meaningful with a `key`",
    );
    assert_refused(
        &rule(", missing_key: skip"),
        "rules[0].missing_key",
        "only meaningful",
    );
    assert_refused(
        &rule(", key: [method], max_keys: 0"),
        "rules[0].max_keys",
        "between 1 and",
    );
    assert_refused(
        &rule(", key: [method], max_keys: 2000000"),
        "rules[0].max_keys",
        "between 1 and",
    );
    assert_refused(
        &rule(", key: [method, method]"),
        "rules[0].key[1]",
        "method is listed twice",
    );
    assert_refused(
        &rule(", key: [{header: X-A}, {header: x-a}]"),
        "rules[0].key[1]",
        "header:x-a is listed twice",
    );
    assert_refused(
        &rule(", key: [{header: ''}]"),
        "rules[0].key[0].header",
        "not a header name",
    );
    assert_refused(
        &rule(", key: [{header: 'a b'}]"),
        "rules[0].key[0].header",
        "not a header name",
    );

    assert_refused(
        &rule(", match: {path_prefixes: [api]}"),
        "rules[0].match.path_prefixes[0]",
        "starts with `/`",
    );
    assert_refused(
        &rule(", match: {methods: [get]}"),
        "rules[0].match.methods[0]",
        "upper-case",
    );
    assert_refused(
        &rule(", match: {destination_ports: [0]}"),
        "rules[0].match.destination_ports[0]",
        "port 0",
    );
    assert_refused(
        &rule(", match: {source_namespaces: ['']}"),
        "rules[0].match.source_namespaces[0]",
        "empty value",
    );
    assert_refused(
        &rule(", match: {source_principals: ['spiffe://']}"),
        "rules[0].match.source_principals[0]",
        "empty value",
    );
    assert_refused(
        &rule(", match: {headers: {x-a: ''}}"),
        "rules[0].match.headers.x-a",
        "empty value",
    );
    assert_refused(
        &rule(", match: {headers: {'x a': v}}"),
        "rules[0].match.headers.x a",
        "not a header name",
    );
}

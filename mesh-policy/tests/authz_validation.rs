//! Istio's AuthorizationPolicy validation, reproduced by the loader: each refusal names the
//! field and gives Istio's reason; features this mesh does not implement are refused as such.

mod support;

use mesh_policy::authz::{PolicyErrorKind, parse_policies};
use support::parse::{HEAD, assert_error, spec_error};

#[test]
fn bad_values_are_explained() {
    use PolicyErrorKind::{Invalid, Syntax};
    let src = |field: &str, value: &str| {
        spec_error(&format!(
            "  rules:\n  - from:\n    - source:\n        {field}: [{value}]\n"
        ))
    };
    let op = |field: &str, value: &str| {
        spec_error(&format!(
            "  rules:\n  - to:\n    - operation:\n        {field}: [{value}]\n"
        ))
    };
    let s = "spec.rules[0].from[0].source";
    let o = "spec.rules[0].to[0].operation";

    assert_error(
        &spec_error("  action: allow\n"),
        "spec.action",
        Syntax,
        "unknown variant `allow`",
    );
    assert_error(
        &src("ipBlocks", "10.0.0.0/8, 10.0.0.0/33"),
        &format!("{s}.ipBlocks[1]"),
        Invalid,
        "bad CIDR",
    );
    assert_error(
        &src("notRemoteIpBlocks", "nope"),
        &format!("{s}.notRemoteIpBlocks[0]"),
        Invalid,
        "bad IP",
    );
    assert_error(
        &op("ports", "\"http\""),
        &format!("{o}.ports[0]"),
        Invalid,
        "bad port \"http\"",
    );
    assert_error(
        &op("notPorts", "70000"),
        &format!("{o}.notPorts[0]"),
        Invalid,
        "0 to 65535",
    );
    assert_error(
        &op("ports", "true"),
        &format!("{o}.ports[0]"),
        Syntax,
        "string or an integer",
    );
    assert_error(
        &op("methods", "\"\""),
        &format!("{o}.methods[0]"),
        Invalid,
        "empty value",
    );
    assert_error(
        &src("principals", "\"spiffe://cluster.local/ns/a/sa/b\""),
        &format!("{s}.principals[0]"),
        Invalid,
        "write \"cluster.local/ns/a/sa/b\"",
    );
    assert_error(
        &spec_error("  rules: {}\n"),
        "spec.rules",
        Syntax,
        "expected a sequence",
    );
}

#[test]
fn empty_rule_parts_are_refused_as_istio_does() {
    use PolicyErrorKind::Invalid;
    let r = "spec.rules[0]";
    assert_error(
        &spec_error("  rules: [{from: []}]\n"),
        &format!("{r}.from"),
        Invalid,
        "`from` must not be empty",
    );
    assert_error(
        &spec_error("  rules: [{to: []}]\n"),
        &format!("{r}.to"),
        Invalid,
        "`to` must not be empty",
    );
    assert_error(
        &spec_error("  rules: [{from: [{}]}]\n"),
        &format!("{r}.from[0].source"),
        Invalid,
        "must not be nil",
    );
    assert_error(
        &spec_error("  rules: [{from: [{source: {}}]}]\n"),
        &format!("{r}.from[0].source"),
        Invalid,
        "must not be empty",
    );
    assert_error(
        &spec_error("  rules: [{from: [{source: {principals: []}}]}]\n"),
        &format!("{r}.from[0].source"),
        Invalid,
        "must not be empty",
    );
    assert_error(
        &spec_error("  rules: [{to: [{}]}]\n"),
        &format!("{r}.to[0].operation"),
        Invalid,
        "must not be nil",
    );
    assert_error(
        &spec_error("  rules: [{to: [{operation: {}}]}]\n"),
        &format!("{r}.to[0].operation"),
        Invalid,
        "must not be empty",
    );
    assert_error(
        &spec_error("  rules: [{when: [{key: source.ip}]}]\n"),
        &format!("{r}.when[0]"),
        Invalid,
        "at least one of `values` or `notValues`",
    );
    assert_error(
        &spec_error("  rules: [{when: [{values: [a]}]}]\n"),
        &format!("{r}.when[0].key"),
        Invalid,
        "must not be empty",
    );
}

#[test]
fn when_keys_and_values_are_checked() {
    use PolicyErrorKind::Invalid;
    let when = |key: &str, values: &str| {
        spec_error(&format!(
            "  rules:\n  - when:\n    - key: {key}\n      {values}\n"
        ))
    };
    let w = "spec.rules[0].when[0]";
    assert_error(
        &when("source.user", "values: [a]"),
        &format!("{w}.key"),
        Invalid,
        "unknown attribute",
    );
    assert_error(
        &when("request.headers", "values: [a]"),
        &format!("{w}.key"),
        Invalid,
        "name[value]",
    );
    assert_error(
        &when("destination.labels[app]", "values: [a]"),
        &format!("{w}.key"),
        Invalid,
        "workload selector",
    );
    assert_error(
        &when("source.ip", "values: [10.0.0.0/40]"),
        &format!("{w}.values[0]"),
        Invalid,
        "bad CIDR",
    );
    assert_error(
        &when("remote.ip", "notValues: [x]"),
        &format!("{w}.notValues[0]"),
        Invalid,
        "bad IP",
    );
    assert_error(
        &when("destination.ip", "values: [1.2.3.4, y]"),
        &format!("{w}.values[1]"),
        Invalid,
        "bad IP",
    );
    assert_error(
        &when("destination.port", "values: [\"80\", http]"),
        &format!("{w}.values[1]"),
        Invalid,
        "bad port",
    );
    assert_error(
        &when("source.principal", "values: [\"spiffe://td/x\"]"),
        &format!("{w}.values[0]"),
        Invalid,
        "without \"spiffe://\"",
    );
    assert_error(
        &when("connection.sni", "values: [\"\"]"),
        &format!("{w}.values[0]"),
        Invalid,
        "empty value",
    );
}

#[test]
fn action_rules_and_provider_combinations() {
    use PolicyErrorKind::Invalid;
    assert_error(
        &spec_error("  action: DENY\n"),
        "spec.rules",
        Invalid,
        "DENY action without `rules` is meaningless",
    );
    assert_error(
        &spec_error("  action: DENY\n  rules: []\n"),
        "spec.rules",
        Invalid,
        "meaningless",
    );
    assert_error(
        &spec_error("  action: CUSTOM\n  provider: {name: x}\n"),
        "spec.rules",
        Invalid,
        "CUSTOM action without `rules`",
    );
    assert_error(
        &spec_error("  action: CUSTOM\n  rules: [{}]\n"),
        "spec.provider.name",
        Invalid,
        "must not be empty",
    );
    assert_error(
        &spec_error("  action: CUSTOM\n  provider: {}\n  rules: [{}]\n"),
        "spec.provider.name",
        Invalid,
        "must not be empty",
    );
    assert_error(
        &spec_error("  provider: {name: x}\n  rules: [{}]\n"),
        "spec.provider",
        Invalid,
        "non CUSTOM action, found ALLOW",
    );
    assert_error(
        &spec_error(
            "  action: CUSTOM\n  provider: {name: x}\n  rules: [{from: [{source: {principals: [a]}}]}]\n",
        ),
        "spec.rules[0].from[0].source.principals",
        Invalid,
        "not supported with CUSTOM action",
    );
    assert_error(
        &spec_error(
            "  action: CUSTOM\n  provider: {name: x}\n  rules: [{when: [{key: \"request.auth.claims[x]\", values: [y]}]}]\n",
        ),
        "spec.rules[0].when[0].key",
        Invalid,
        "not supported with CUSTOM action",
    );
    // AUDIT and ALLOW without rules are legal (AUDIT never matches; ALLOW denies all).
    let audit = format!("{HEAD}spec: {{action: AUDIT}}\n");
    assert!(parse_policies(&audit).unwrap()[0].rules.is_empty());
}

#[test]
fn dry_run_annotation() {
    let doc = |value: &str, spec: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  \
             annotations: {{istio.io/dry-run: {value}}}\nspec: {spec}\n"
        )
    };
    assert!(parse_policies(&doc("\"true\"", "{}")).unwrap()[0].dry_run);
    assert!(parse_policies(&doc("\"True\"", "{}")).unwrap()[0].dry_run);
    assert!(!parse_policies(&doc("\"false\"", "{}")).unwrap()[0].dry_run);
    let err = parse_policies(&doc("\"yes\"", "{}")).unwrap_err();
    assert_error(
        &err,
        "metadata.annotations[istio.io/dry-run]",
        PolicyErrorKind::Invalid,
        "\"yes\"",
    );
    let err = parse_policies(&doc("\"true\"", "{action: AUDIT}")).unwrap_err();
    assert_error(
        &err,
        "metadata.annotations[istio.io/dry-run]",
        PolicyErrorKind::Invalid,
        "only supports action ALLOW/DENY",
    );
    assert_eq!(err.policy.as_ref().unwrap().to_string(), "default/p");
}

#[test]
fn unsupported_istio_features_are_refused_not_ignored() {
    use PolicyErrorKind::Unsupported;
    let err =
        spec_error("  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n");
    assert_error(&err, "spec.targetRef", Unsupported, "spec.selector");
    assert!(err.to_string().contains("not supported: "), "{err}");
    assert_eq!(err.policy.as_ref().unwrap().to_string(), "shop/p");
    let err = spec_error("  targetRefs: [{kind: Service, group: \"\", name: s}]\n");
    assert_error(&err, "spec.targetRefs", Unsupported, "waypoint");
    let err = spec_error("  rules: [{from: [{source: {serviceAccounts: [a/b]}}]}]\n");
    assert_error(
        &err,
        "spec.rules[0].from[0].source.serviceAccounts",
        Unsupported,
        "principals",
    );
    let err = spec_error("  rules: [{to: [{operation: {paths: [\"/a\", \"/v1/{*}/x\"]}}]}]\n");
    assert_error(
        &err,
        "spec.rules[0].to[0].operation.paths[1]",
        Unsupported,
        "path templates",
    );
}

#[test]
fn selector_refusals() {
    use PolicyErrorKind::Invalid;
    assert_error(
        &spec_error("  selector: {matchLabels: {app: \"web*\"}}\n"),
        "spec.selector.matchLabels[app]",
        Invalid,
        "wildcard",
    );
    assert_error(
        &spec_error("  selector: {matchLabels: {\"\": x}}\n"),
        "spec.selector.matchLabels[]",
        Invalid,
        "empty key",
    );
}

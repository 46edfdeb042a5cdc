//! Loading AuthorizationPolicy YAML: what is accepted, and how refusals name the document,
//! the policy and the field.

use mesh_policy::authz::{
    Action, ConditionKey, PolicyError, PolicyErrorKind, StringPattern, Values, parse_policies,
};

const HEAD: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                    metadata: {name: p, namespace: shop}\n";

/// Parses `spec` (YAML under `spec:`) as the second document of a file, after a valid one,
/// and returns the error, checking it points at document 2 and policy shop/p.
fn spec_error(spec: &str) -> PolicyError {
    let yaml = format!("{HEAD}spec: {{}}\n---\n{HEAD}spec:\n{spec}");
    let err = parse_policies(&yaml).expect_err("should be refused");
    assert_eq!(err.document, 2, "{err}");
    err
}

/// Asserts `err` is about `path`, of `kind`, with `needle` in its reason.
fn assert_error(err: &PolicyError, path: &str, kind: PolicyErrorKind, needle: &str) {
    assert_eq!(err.path, path, "{err}");
    assert_eq!(err.kind, kind, "{err}");
    assert!(err.reason.contains(needle), "{needle:?} not in: {err}");
}

#[test]
fn multi_document_file_in_order_skipping_empty_documents() {
    let yaml = r#"
---
# Istio docs: allow-nothing for the namespace.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: foo
spec: {}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
  annotations:
    istio.io/dry-run: "true"
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
        notNamespaces: ["foo"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/info*"]
        ports: ["8080", 9090]
        hosts: ["Example.COM"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
    - key: destination.port
      notValues: ["22"]
---
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: istio-system}
spec:
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
"#;
    let policies = parse_policies(yaml).unwrap();
    let ids: Vec<String> = policies.iter().map(|p| p.id.to_string()).collect();
    assert_eq!(
        ids,
        ["foo/allow-nothing", "foo/httpbin", "istio-system/ext-authz"]
    );

    let nothing = &policies[0];
    assert_eq!(nothing.action, Action::Allow);
    assert!(nothing.rules.is_empty() && !nothing.dry_run && nothing.selector.is_none());

    let httpbin = &policies[1];
    assert_eq!(httpbin.action, Action::Deny);
    assert!(httpbin.dry_run);
    assert_eq!(httpbin.selector.as_ref().unwrap()["version"], "v1");
    let rule = &httpbin.rules[0];
    assert_eq!(
        rule.from[0].principals,
        [StringPattern::Exact(
            "cluster.local/ns/default/sa/sleep".into()
        )]
    );
    assert_eq!(
        rule.from[0].not_namespaces,
        [StringPattern::Exact("foo".into())]
    );
    let op = &rule.to[0];
    assert_eq!(op.ports, [8080, 9090]);
    assert_eq!(op.paths, [StringPattern::Prefix("/info".into())]);
    assert_eq!(
        op.hosts,
        [StringPattern::Exact("example.com".into())],
        "hosts fold case"
    );
    assert_eq!(
        rule.when[0].key,
        ConditionKey::RequestClaim(vec!["iss".into()])
    );
    assert_eq!(rule.when[1].not_values, Values::Ports(vec![22]));

    assert_eq!(
        policies[2].action,
        Action::Custom {
            provider: "my-ext-authz".into()
        }
    );
}

#[test]
fn kubectl_output_bookkeeping_is_accepted() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: shop
  uid: 5b2c0a6e-0000-4000-8000-000000000000
  resourceVersion: "1234"
  generation: 3
  creationTimestamp: "2026-01-01T00:00:00Z"
  labels: {team: payments}
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: "{}"
  managedFields: [{manager: kubectl}]
spec:
  rules: [{}]
status: {}
"#;
    let policies = parse_policies(yaml).unwrap();
    assert_eq!(policies[0].rules.len(), 1);
}

#[test]
fn namespace_defaults_like_kubectl_and_name_is_required() {
    let yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n";
    assert_eq!(parse_policies(yaml).unwrap()[0].id.namespace, "default");
    let err = parse_policies(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {}\n",
    )
    .unwrap_err();
    assert_error(
        &err,
        "metadata.name",
        PolicyErrorKind::Invalid,
        "needs a name",
    );
}

#[test]
fn unknown_fields_name_their_path() {
    let err = spec_error("  rules:\n  - from:\n    - source:\n        notPrincipal: [a]\n");
    assert_error(
        &err,
        "spec.rules[0].from[0].source.notPrincipal",
        PolicyErrorKind::Syntax,
        "unknown field `notPrincipal`, expected one of",
    );
    assert!(
        err.reason.contains("at line 13"),
        "line of the whole file: {err}"
    );
    assert!(!err.reason.starts_with("spec."), "no repeated path: {err}");

    let err = spec_error("  selector:\n    matchExpressions: []\n");
    assert_error(
        &err,
        "spec.selector.matchExpressions",
        PolicyErrorKind::Syntax,
        "unknown field",
    );
    let err = spec_error("  rules:\n  - to:\n    - operation:\n        verbs: [GET]\n");
    assert_error(
        &err,
        "spec.rules[0].to[0].operation.verbs",
        PolicyErrorKind::Syntax,
        "unknown",
    );
    let err = spec_error("  rules:\n  - when:\n    - key: source.ip\n      value: [1.2.3.4]\n");
    assert_error(
        &err,
        "spec.rules[0].when[0].value",
        PolicyErrorKind::Syntax,
        "unknown",
    );
}

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
fn other_documents_and_broken_yaml() {
    let deployment = format!(
        "{HEAD}spec: {{}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\n"
    );
    let err = parse_policies(&deployment).unwrap_err();
    assert_eq!(err.document, 2);
    assert_error(
        &err,
        "kind",
        PolicyErrorKind::Unsupported,
        "Deployment (apps/v1)",
    );

    let alpha =
        "apiVersion: security.istio.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n";
    assert_error(
        &parse_policies(alpha).unwrap_err(),
        "apiVersion",
        PolicyErrorKind::Invalid,
        "security.istio.io/v1 or",
    );

    let err = parse_policies("kind: AuthorizationPolicy\nmetadata: {name: p}\n").unwrap_err();
    assert_error(&err, "apiVersion", PolicyErrorKind::Invalid, "\"\"");
    let err = parse_policies("just a string\n").unwrap_err();
    assert_error(&err, ".", PolicyErrorKind::Syntax, "must be a mapping");
    let err = parse_policies(&format!(
        "{HEAD}spec: {{}}\n---\n{HEAD}spec:\n  rules: [ {{from: [ }}\n"
    ))
    .unwrap_err();
    assert_eq!(err.document, 2);
    assert_error(&err, ".", PolicyErrorKind::Syntax, "at line 10");
    assert!(parse_policies("").unwrap().is_empty());
    assert!(parse_policies("---\n# nothing\n---\n").unwrap().is_empty());
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

#[test]
fn display_names_document_policy_and_field() {
    let err = spec_error("  rules: [{from: [{source: {ipBlocks: [bad]}}]}]\n");
    assert_eq!(
        err.to_string(),
        "document 2 (shop/p): spec.rules[0].from[0].source.ipBlocks[0]: bad IP address \"bad\": \
         expected an address or CIDR range"
    );
}

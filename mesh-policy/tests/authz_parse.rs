//! Loading AuthorizationPolicy YAML: multi-document files, what is accepted, and how syntax
//! errors and foreign documents name the document, the policy and the field.

mod support;

use mesh_policy::authz::{
    Action, ConditionKey, PolicyErrorKind, StringPattern, Values, parse_policies,
};
use support::parse::{HEAD, assert_error, spec_error};

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
fn display_names_document_policy_and_field() {
    let err = spec_error("  rules: [{from: [{source: {ipBlocks: [bad]}}]}]\n");
    assert_eq!(
        err.to_string(),
        "document 2 (shop/p): spec.rules[0].from[0].source.ipBlocks[0]: bad IP address \"bad\": \
         expected an address or CIDR range"
    );
}

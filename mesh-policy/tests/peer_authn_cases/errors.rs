//! Loading errors: unknown fields and bad types with their paths, istiod's validation rules,
//! other kinds and API versions.

use mesh_policy::authz::PolicyErrorKind;

use super::{doc, parse_err, timed};

fn assert_error(yaml: &str, document: usize, path: &str, kind: PolicyErrorKind, reason_has: &str) {
    let err = parse_err(yaml);
    assert_eq!(err.document, document, "{err}");
    assert_eq!(err.path, path, "{err}");
    assert_eq!(err.kind, kind, "{err}");
    assert!(
        err.reason.contains(reason_has),
        "{err}: wanted {reason_has:?}"
    );
}

#[test]
fn unknown_fields_and_bad_types_name_their_path() {
    use PolicyErrorKind::Syntax;
    assert_error(
        &doc("shop", "p", "mtls: {mod: STRICT}"),
        1,
        "spec.mtls.mod",
        Syntax,
        "unknown field `mod`",
    );
    assert_error(
        &doc("shop", "p", "mtls: {mode: strict}"),
        1,
        "spec.mtls.mode",
        Syntax,
        "unknown variant `strict`",
    );
    assert_error(
        &doc("shop", "p", "portLevelMTLS: {}"),
        1,
        "spec.portLevelMTLS",
        Syntax,
        "unknown field",
    );
    assert_error(
        &doc("shop", "p", "selector: {matchLabel: {a: b}}"),
        1,
        "spec.selector.matchLabel",
        Syntax,
        "unknown field",
    );
    assert_error(
        &doc(
            "shop",
            "p",
            "selector: {matchLabels: {app: web}}, portLevelMtls: {8080: {mode: STRICT, extra: 1}}",
        ),
        1,
        "spec.portLevelMtls.8080.extra",
        Syntax,
        "unknown field `extra`",
    );
    assert_error(
        &doc("shop", "p", "portLevelMtls: [8080]"),
        1,
        "spec.portLevelMtls",
        Syntax,
        "a map from port number",
    );
    assert_error(
        &doc("shop", "p", "rules: []"),
        1,
        "spec.rules",
        Syntax,
        "unknown field `rules`",
    );
    let yaml = doc("shop", "fine", "")
        + "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x, namespace: shop, owner: me}\n";
    assert_error(&yaml, 2, "metadata.owner", Syntax, "unknown field");
}

#[test]
fn istiod_validation_rules() {
    use PolicyErrorKind::Invalid;
    assert_error(
        &doc("shop", "p", "portLevelMtls: {8080: {mode: STRICT}}"),
        1,
        "spec.portLevelMtls",
        Invalid,
        "mesh/namespace peer authentication cannot have port level mTLS",
    );
    assert_error(
        &doc(
            "shop",
            "p",
            "selector: {matchLabels: {}}, portLevelMtls: {8080: {mode: STRICT}}",
        ),
        1,
        "spec.portLevelMtls",
        Invalid,
        "cannot have port level mTLS",
    );
    let sel = "selector: {matchLabels: {app: web}}";
    assert_error(
        &doc("shop", "p", &format!("{sel}, portLevelMtls: {{}}")),
        1,
        "spec.portLevelMtls",
        Invalid,
        "at least one element",
    );
    assert_error(
        &doc(
            "shop",
            "p",
            &format!("{sel}, portLevelMtls: {{0: {{mode: STRICT}}}}"),
        ),
        1,
        "spec.portLevelMtls.0",
        Invalid,
        "port cannot be 0",
    );
    assert_error(
        &doc(
            "shop",
            "p",
            &format!("{sel}, portLevelMtls: {{70000: {{mode: STRICT}}}}"),
        ),
        1,
        "spec.portLevelMtls.70000",
        Invalid,
        "1 to 65535",
    );
    assert_error(
        &doc(
            "shop",
            "p",
            &format!("{sel}, portLevelMtls: {{http: {{mode: STRICT}}}}"),
        ),
        1,
        "spec.portLevelMtls.http",
        Invalid,
        "bad port",
    );
    assert_error(
        &doc(
            "shop",
            "p",
            &format!(
                "{sel}, portLevelMtls: {{8080: {{mode: STRICT}}, \"8080\": {{mode: DISABLE}}}}"
            ),
        ),
        1,
        "spec.portLevelMtls.8080",
        Invalid,
        "port 8080 is listed twice",
    );
    assert_error(
        &doc("shop", "p", "selector: {matchLabels: {app: \"web*\"}}"),
        1,
        "spec.selector.matchLabels[app]",
        Invalid,
        "wildcard",
    );
    assert_error(
        &doc("shop", "", "mtls: {mode: STRICT}"),
        1,
        "metadata.name",
        Invalid,
        "needs a name",
    );
    let bad_time = timed("shop", "p", Some("yesterday"), "");
    let err = parse_err(&bad_time);
    assert_eq!(err.path, "metadata.creationTimestamp");
    assert_eq!(
        err.policy.as_ref().map(ToString::to_string).as_deref(),
        Some("shop/p")
    );
    assert!(
        err.to_string()
            .starts_with("document 1 (shop/p): metadata.creationTimestamp: "),
        "{err}"
    );
}

#[test]
fn other_kinds_and_versions_are_refused() {
    let authz =
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n";
    assert_error(
        authz,
        1,
        "kind",
        PolicyErrorKind::Unsupported,
        "only PeerAuthentication documents",
    );
    let old = "apiVersion: authentication.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: a}\n";
    assert_error(
        old,
        1,
        "apiVersion",
        PolicyErrorKind::Invalid,
        "security.istio.io/v1",
    );
    assert_error(
        "- a\n- b\n",
        1,
        ".",
        PolicyErrorKind::Syntax,
        "must be a mapping",
    );
    assert_error("kind: [\n", 1, ".", PolicyErrorKind::Syntax, "");
    let missing_kind = "apiVersion: security.istio.io/v1\nmetadata: {name: a}\n";
    assert_error(
        missing_kind,
        1,
        "kind",
        PolicyErrorKind::Invalid,
        "expected kind: PeerAuthentication",
    );
}

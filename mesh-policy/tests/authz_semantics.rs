//! Istio's documented AuthorizationPolicy semantics, case by case: evaluation order, the
//! edge cases, AUDIT and dry-run, CUSTOM delegation, raw TCP vs HTTP, and scoping.

use mesh_policy::authz::{
    ActionTaken, Authorizer, AuthzRequest, HttpAttributes, Reason, ReportKind, Verdict, Workload,
    parse_policies,
};

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ADMIN: &str = "spiffe://cluster.local/ns/ops/sa/admin";

/// A policy document in namespace `shop` with the given `spec` body (flow YAML).
fn doc(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: {name}, namespace: shop}}\nspec: {spec}\n"
    )
}

fn dry(name: &str, spec: &str) -> String {
    doc(name, spec).replace(
        "namespace: shop}",
        "namespace: shop, annotations: {istio.io/dry-run: \"true\"}}",
    )
}

fn authz(yaml: &str) -> Authorizer {
    let policies = parse_policies(yaml).unwrap();
    Authorizer::new(&policies, &Workload::new("shop").with_label("app", "api"))
}

/// A raw TCP tunnel to port 8080, from `principal` (None: plaintext).
fn tcp(principal: Option<&str>) -> AuthzRequest {
    let req = AuthzRequest::tcp(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2:8080".parse().unwrap(),
    );
    match principal {
        Some(p) => req.with_principal(p.parse().unwrap()),
        None => req,
    }
}

fn http(principal: Option<&str>, method: &str, path: &str) -> AuthzRequest {
    tcp(principal).with_http(HttpAttributes::new(method, path, "api.shop.svc"))
}

/// `(allowed, deciding policy name, rule index)`.
fn decide(authz: &Authorizer, req: &AuthzRequest) -> (bool, Option<String>, Option<usize>) {
    let d = authz.evaluate(req);
    (d.allowed, d.policy.map(|p| p.name.clone()), d.rule_index)
}

#[test]
fn no_policies_allow_everything() {
    let authz = authz("");
    let d = authz.evaluate(&tcp(None));
    assert!(d.allowed);
    assert_eq!(d.action_taken, ActionTaken::NoAllowPolicies);
    assert_eq!(d.reason, Reason::NoAllowPolicies);
    assert_eq!(d.verdict(), Verdict::Allow);
}

#[test]
fn allow_with_empty_spec_denies_everything() {
    let authz = authz(&doc("allow-nothing", "{}"));
    for req in [tcp(Some(WEB)), http(Some(WEB), "GET", "/")] {
        let d = authz.evaluate(&req);
        assert!(!d.allowed);
        assert_eq!(d.action_taken, ActionTaken::NoAllowMatched);
        assert_eq!(d.policy, None);
        assert!(matches!(
            d.reason,
            Reason::NoAllowRuleMatched {
                allow_policies: 1,
                ..
            }
        ));
    }
}

#[test]
fn allow_with_one_empty_rule_allows_everything() {
    let authz = authz(&doc("allow-all", "{rules: [{}]}"));
    assert_eq!(
        decide(&authz, &tcp(None)),
        (true, Some("allow-all".into()), Some(0))
    );
    assert!(decide(&authz, &http(Some(WEB), "DELETE", "/x")).0);
}

#[test]
fn deny_is_evaluated_before_allow() {
    let yaml = doc("allow-all", "{rules: [{}]}")
        + &doc(
            "deny-admin",
            "{action: DENY, rules: [{from: [{source: {namespaces: [ops]}}]}]}",
        );
    let authz = authz(&yaml);
    let d = authz.evaluate(&tcp(Some(ADMIN)));
    assert!(!d.allowed);
    assert_eq!(d.action_taken, ActionTaken::Deny);
    assert_eq!(d.policy.unwrap().to_string(), "shop/deny-admin");
    assert_eq!(
        decide(&authz, &tcp(Some(WEB))),
        (true, Some("allow-all".into()), Some(0))
    );
    // DENY rules: [{}] denies everything, whatever ALLOW says.
    let authz2 = self::authz(
        &(doc("allow-all", "{rules: [{}]}") + &doc("deny-all", "{action: DENY, rules: [{}]}")),
    );
    assert_eq!(
        decide(&authz2, &tcp(Some(WEB))),
        (false, Some("deny-all".into()), Some(0))
    );
}

#[test]
fn allow_needs_one_matching_rule_once_any_allow_applies() {
    let yaml = doc(
        "allow-web",
        "{rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]}",
    ) + &doc(
        "allow-get",
        "{rules: [{to: [{operation: {methods: [GET]}}]}, {to: [{operation: {ports: [\"9090\"]}}]}]}",
    );
    let authz = authz(&yaml);
    assert_eq!(
        decide(&authz, &tcp(Some(WEB))),
        (true, Some("allow-web".into()), Some(0))
    );
    assert_eq!(
        decide(&authz, &http(Some(ADMIN), "GET", "/")),
        (true, Some("allow-get".into()), Some(0))
    );
    assert!(!decide(&authz, &http(Some(ADMIN), "POST", "/")).0);
}

#[test]
fn audit_never_changes_the_decision_but_is_reported() {
    let yaml = doc(
        "audit-admin",
        "{action: AUDIT, rules: [{from: [{source: {namespaces: [ops]}}]}]}",
    );
    let authz = authz(&yaml);
    let d = authz.evaluate(&tcp(Some(ADMIN)));
    assert!(d.allowed);
    assert_eq!(
        d.action_taken,
        ActionTaken::NoAllowPolicies,
        "AUDIT is not an ALLOW policy"
    );
    assert_eq!(d.reported.len(), 1);
    assert_eq!(d.reported[0].kind, ReportKind::Audit);
    assert_eq!(
        d.reported[0].to_string(),
        "AUDIT policy shop/audit-admin rule 0 matched"
    );
    assert!(authz.evaluate(&tcp(Some(WEB))).reported.is_empty());
}

#[test]
fn dry_run_deny_is_reported_and_predicted_but_not_enforced() {
    let authz = authz(&dry(
        "deny-post",
        "{action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}",
    ));
    let d = authz.evaluate(&http(Some(WEB), "POST", "/"));
    assert!(d.allowed);
    assert_eq!(d.reported[0].kind, ReportKind::DryRunDeny);
    let would = d.dry_run.unwrap();
    assert!(!would.allowed);
    assert_eq!(would.policy.unwrap().name, "deny-post");
    assert_eq!(
        would.to_string(),
        "would DENY: DENY policy matched (shop/deny-post rule 0)"
    );
    let d = authz.evaluate(&http(Some(WEB), "GET", "/"));
    assert!(d.allowed && d.reported.is_empty() && d.dry_run.unwrap().allowed);
}

#[test]
fn dry_run_allow_is_reported_and_predicted_but_not_enforced() {
    let authz = authz(&dry(
        "allow-web",
        "{rules: [{from: [{source: {principals: [\"*/sa/web\"]}}]}]}",
    ));
    // Not enforced: no ALLOW policy applies, so everything is allowed.
    let admin = authz.evaluate(&tcp(Some(ADMIN)));
    assert!(admin.allowed);
    assert_eq!(admin.action_taken, ActionTaken::NoAllowPolicies);
    let would = admin.dry_run.unwrap();
    assert!(!would.allowed);
    assert_eq!(would.action_taken, ActionTaken::NoAllowMatched);
    let web = authz.evaluate(&tcp(Some(WEB)));
    assert_eq!(web.reported[0].kind, ReportKind::DryRunAllow);
    assert!(web.dry_run.unwrap().allowed);
    // Without dry-run policies there is no prediction.
    assert!(
        self::authz(&doc("allow-all", "{rules: [{}]}"))
            .evaluate(&tcp(None))
            .dry_run
            .is_none()
    );
}

#[test]
fn custom_delegates_to_its_provider_before_deny_and_allow() {
    let yaml = doc(
        "ext-admin",
        "{action: CUSTOM, provider: {name: opa}, rules: [{to: [{operation: {paths: [\"/admin/*\"]}}]}]}",
    ) + &doc(
        "ext-admin-2",
        "{action: CUSTOM, provider: {name: opa}, rules: [{to: [{operation: {paths: [\"/admin/x\"]}}]}]}",
    ) + &doc(
        "ext-all",
        "{action: CUSTOM, provider: {name: audit-svc}, rules: [{}]}",
    ) + &doc(
        "deny-delete",
        "{action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}",
    );
    let authz = authz(&yaml);
    let d = authz.evaluate(&http(Some(WEB), "GET", "/admin/x"));
    assert!(d.allowed);
    let providers: Vec<_> = d.delegate.iter().map(|d| d.provider).collect();
    assert_eq!(
        providers,
        ["opa", "audit-svc"],
        "one entry per provider, in policy order"
    );
    assert_eq!(d.delegate[0].policy.name, "ext-admin");
    assert!(matches!(d.verdict(), Verdict::AskProviders(list) if list.len() == 2));
    assert_eq!(
        d.delegate[0].to_string(),
        "provider \"opa\" (CUSTOM policy shop/ext-admin rule 0)"
    );

    let d = authz.evaluate(&http(Some(WEB), "GET", "/public"));
    assert_eq!(d.delegate.len(), 1);
    let d = authz.evaluate(&http(Some(WEB), "DELETE", "/admin/x"));
    assert_eq!(
        d.verdict(),
        Verdict::Deny,
        "a local DENY is final whatever the provider says"
    );
}

#[test]
fn raw_tcp_allow_rule_needing_http_cannot_match() {
    let yaml = doc(
        "allow-get",
        "{rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}], to: [{operation: {methods: [GET]}}]}]}",
    );
    let authz = authz(&yaml);
    let d = authz.evaluate(&tcp(Some(WEB)));
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        Reason::NoAllowRuleMatched {
            allow_policies: 1,
            skipped_http_rules: 1
        }
    );
    assert!(
        d.to_string().contains("1 ALLOW rule needs HTTP attributes"),
        "{d}"
    );
    assert!(authz.evaluate(&http(Some(WEB), "GET", "/")).allowed);
    // Rules built from connection attributes only still allow raw TCP.
    let ports = self::authz(&doc(
        "allow-8080",
        "{rules: [{to: [{operation: {ports: [\"8080\"]}}]}]}",
    ));
    assert!(ports.evaluate(&tcp(None)).allowed);
}

#[test]
fn raw_tcp_deny_rule_needing_http_is_judged_on_its_other_parts() {
    let yaml = doc(
        "deny-post",
        "{action: DENY, rules: [{from: [{source: {principals: [cluster.local/ns/ops/sa/admin]}}], \
         to: [{operation: {methods: [POST], paths: [\"/x\"]}}]}]}",
    );
    let authz = authz(&yaml);
    let d = authz.evaluate(&tcp(Some(ADMIN)));
    assert!(
        !d.allowed,
        "the HTTP conditions are assumed to match on raw TCP"
    );
    let Reason::RuleMatched { assumed_http } = d.reason else {
        panic!("{d}")
    };
    assert_eq!(
        assumed_http,
        ["to[0].operation.methods", "to[0].operation.paths"]
    );
    assert!(d.to_string().contains("as ztunnel does"), "{d}");
    assert!(
        authz.evaluate(&tcp(Some(WEB))).allowed,
        "its L4 part (principal) still decides"
    );
    assert!(
        authz.evaluate(&http(Some(ADMIN), "GET", "/x")).allowed,
        "HTTP gets full L7 evaluation"
    );
    assert!(!authz.evaluate(&http(Some(ADMIN), "POST", "/x")).allowed);

    // A DENY rule made only of HTTP conditions denies every raw TCP connection.
    let only_http = self::authz(&doc(
        "deny-hdr",
        "{action: DENY, rules: [{when: [{key: \"request.headers[x-debug]\", values: [\"1\"]}]}]}",
    ));
    assert!(!only_http.evaluate(&tcp(None)).allowed);
    assert!(only_http.evaluate(&http(None, "GET", "/")).allowed);
}

#[test]
fn scoping_by_namespace_selector_and_root_namespace() {
    let other_ns = doc("deny-all", "{action: DENY, rules: [{}]}")
        .replace("namespace: shop", "namespace: other");
    assert!(
        authz(&other_ns).evaluate(&tcp(None)).allowed,
        "policies of other namespaces do not apply"
    );
    let root = doc("deny-all", "{action: DENY, rules: [{}]}")
        .replace("namespace: shop", "namespace: istio-system");
    assert!(
        !authz(&root).evaluate(&tcp(None)).allowed,
        "root namespace policies are mesh-wide"
    );
    let selected = doc(
        "deny-api",
        "{selector: {matchLabels: {app: api}}, action: DENY, rules: [{}]}",
    );
    assert!(!authz(&selected).evaluate(&tcp(None)).allowed);
    let not_selected = doc(
        "deny-db",
        "{selector: {matchLabels: {app: db}}, action: DENY, rules: [{}]}",
    );
    let authz = authz(&not_selected);
    assert!(authz.evaluate(&tcp(None)).allowed);
    assert_eq!(authz.policies().count(), 0);
}

#[test]
fn first_match_is_in_policy_order_across_index_buckets() {
    // p1 is filed under nothing (prefix principal), p2 under an exact principal, p3 under a
    // port, p4 under a namespace: all match, and p1 must win, then p2, ...
    let yaml = doc(
        "p1",
        "{action: DENY, rules: [{from: [{source: {principals: [\"cluster.local/*\"]}}]}]}",
    ) + &doc(
        "p2",
        "{action: DENY, rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]}",
    ) + &doc(
        "p3",
        "{action: DENY, rules: [{to: [{operation: {ports: [\"8080\"]}}]}]}",
    ) + &doc(
        "p4",
        "{action: DENY, rules: [{from: [{source: {namespaces: [shop]}}]}]}",
    );
    let policies = parse_policies(&yaml).unwrap();
    let workload = Workload::new("shop");
    for skip in 0..4 {
        let kept: Vec<_> = policies.iter().skip(skip).collect();
        let authz = Authorizer::new(kept, &workload);
        let d = authz.evaluate(&tcp(Some(WEB)));
        assert_eq!(d.policy.unwrap().name, format!("p{}", skip + 1));
    }
}

#[test]
fn decision_display_reads_as_an_explanation() {
    let authz = authz(&doc(
        "allow-web",
        "{rules: [{to: [{operation: {ports: [\"1\"]}}]}, {from: [{source: {namespaces: [shop]}}]}]}",
    ));
    assert_eq!(
        authz.evaluate(&tcp(Some(WEB))).to_string(),
        "ALLOW: ALLOW policy matched (shop/allow-web rule 1): every part of the rule matched"
    );
    assert_eq!(
        authz.evaluate(&tcp(Some(ADMIN))).to_string(),
        "DENY: no ALLOW policy matched: 1 ALLOW policy applies to this workload and no rule matched"
    );
}

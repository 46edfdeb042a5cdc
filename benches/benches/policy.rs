//! Authorization decision cost: `mesh_policy::authz::Authorizer::evaluate` with 1, 10, 100 and
//! 1,000 AuthorizationPolicies, for raw TCP (L4) and HTTP (L7) requests.
//!
//! The policies are a realistic mix, generated for one workload (`app: web` in `shop`): every
//! tenth is a DENY (a blocked caller's principal, an admin path prefix with a method, and a
//! `when` on a header), the others ALLOW policies with two rules each — an L4 rule (one client
//! identity: principal and namespace, port 8080) and an L7 rule (a source `ipBlocks` CIDR,
//! methods, an exact, a prefix and a suffix path, and a `when` on a tenant header). Requests,
//! aimed at the ALLOW policy in the middle of the list:
//!
//! - `l4_allow`: a raw TCP tunnel from that policy's client identity;
//! - `l7_allow`: an HTTP request from that policy's CIDR that its L7 rule allows (method,
//!   prefix path, tenant header);
//! - `l7_deny_no_match`: an HTTP request from an unknown caller that no rule matches, refused
//!   after every candidate rule was considered.
//!
//! Baseline in the same group, `baseline/hand_written`: what a service would write by hand for
//! the `l7_allow` decision of one rule — a CIDR check of the source address, a method
//! comparison, a path prefix check and a header comparison. The ratio `policy / baseline` is
//! the price of Istio's semantics over many policies (indexing, the explained decision, AUDIT
//! and dry-run reporting).
//!
//! Goals (issue 5): <= 200 ns with 10 rules (the rows for 5 policies), <= 1 us with 1,000
//! policies, and cost growing slowly with the number of policies.
//!
//! `cargo bench --bench policy -- --quick` (filter with a regular expression after `--`).

use std::{
    collections::HashSet,
    fmt::Write as _,
    hint::black_box,
    net::{IpAddr, SocketAddr},
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh_policy::authz::{
    ActionTaken, Authorizer, AuthzRequest, HttpAttributes, Workload, parse_policies,
};

/// Policy counts. Each ALLOW policy has two rules and every tenth policy is a DENY with one:
/// 5 policies are the goal's 10 rules, 10 policies are 19 rules.
const SIZES: [usize; 5] = [1, 5, 10, 100, 1_000];

/// `n` policies for workload `app: web` in namespace `shop`, as YAML.
fn policies_yaml(n: usize) -> String {
    let mut yaml = String::new();
    for i in 0..n {
        let (a, b) = (i >> 8, i & 0xff);
        if i % 10 == 9 {
            write!(
                yaml,
                r#"---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{ name: deny-{i}, namespace: shop }}
spec:
  selector: {{ matchLabels: {{ app: web }} }}
  action: DENY
  rules:
  - from: [{{ source: {{ principals: ["cluster.local/ns/blocked/sa/bot-{i}"] }} }}]
    to: [{{ operation: {{ paths: ["/admin-{i}/*"], methods: [DELETE] }} }}]
    when:
    - key: request.headers[x-debug]
      values: ["on-{i}"]
"#
            )
        } else {
            write!(
                yaml,
                r#"---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{ name: allow-{i}, namespace: shop }}
spec:
  selector: {{ matchLabels: {{ app: web }} }}
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/team-{i}/sa/client-{i}"]
        namespaces: ["team-{i}"]
    to: [{{ operation: {{ ports: ["8080"] }} }}]
  - from: [{{ source: {{ ipBlocks: ["10.{a}.{b}.0/24"] }} }}]
    to:
    - operation:
        methods: [GET, POST]
        paths: ["/api/v{i}/*", "*/items-{i}", "/health-{i}"]
    when:
    - key: request.headers[x-tenant]
      values: ["tenant-{i}", "gold-*"]
"#
            )
        }
        .expect("writing to a String");
    }
    yaml
}

fn principal(i: usize) -> mesh_core::SpiffeId {
    format!("spiffe://cluster.local/ns/team-{i}/sa/client-{i}")
        .parse()
        .expect("valid SPIFFE ID")
}

struct Requests {
    l4_allow: AuthzRequest,
    l7_allow: AuthzRequest,
    l7_deny: AuthzRequest,
}

/// The `/24` of ALLOW policy `i`'s L7 rule.
fn block(i: usize) -> [u8; 3] {
    [10, (i >> 8) as u8, (i & 0xff) as u8]
}

/// Requests aimed at policy `target` (an ALLOW policy).
fn requests(target: usize) -> Requests {
    let destination: SocketAddr = ([10, 200, 0, 2], 8080).into();
    let [a, b, c] = block(target);
    let in_block: IpAddr = [a, b, c, 7].into();
    let allowed = HttpAttributes::new("GET", format!("/api/v{target}/orders?page=2"), "web")
        .with_header("x-tenant", format!("tenant-{target}"))
        .with_header("user-agent", "bench");
    let refused = HttpAttributes::new("PUT", "/unknown/path", "web")
        .with_header("x-tenant", "nobody")
        .with_header("user-agent", "bench");
    let stranger = "spiffe://cluster.local/ns/elsewhere/sa/stranger"
        .parse()
        .expect("valid SPIFFE ID");
    Requests {
        l4_allow: AuthzRequest::tcp([192, 168, 0, 7].into(), destination)
            .with_principal(principal(target)),
        l7_allow: AuthzRequest::tcp(in_block, destination).with_http(allowed),
        l7_deny: AuthzRequest::tcp([192, 168, 0, 7].into(), destination)
            .with_principal(stranger)
            .with_http(refused),
    }
}

/// The hand-written equivalent of one L7 ALLOW rule: source CIDR, method, path prefix, header.
struct HandWritten {
    block: [u8; 3],
    methods: HashSet<&'static str>,
    path_prefix: String,
    tenant: String,
}

impl HandWritten {
    fn allows(&self, request: &AuthzRequest) -> bool {
        let IpAddr::V4(source) = request.source_ip else {
            return false;
        };
        let Some(http) = &request.http else {
            return false;
        };
        source.octets()[..3] == self.block
            && self.methods.contains(http.method.as_str())
            && http.url_path().starts_with(&self.path_prefix)
            && http.header("x-tenant").is_some_and(|t| *t == *self.tenant)
    }
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("authz_decision");
    let workload = Workload::new("shop").with_label("app", "web");

    let target = 0;
    let hand = HandWritten {
        block: block(target),
        methods: ["GET", "POST"].into(),
        path_prefix: format!("/api/v{target}/"),
        tenant: format!("tenant-{target}"),
    };
    let r = requests(target);
    assert!(hand.allows(&r.l7_allow) && !hand.allows(&r.l7_deny));
    group.bench_function("baseline/hand_written", |b| {
        b.iter(|| black_box(hand.allows(black_box(&r.l7_allow))));
    });

    for n in SIZES {
        let policies = parse_policies(&policies_yaml(n)).expect("generated policies load");
        assert_eq!(policies.len(), n);
        let authz = Authorizer::new(&policies, &workload);
        // The ALLOW policy in the middle of the list (policy 0 when there is one).
        let target = (n / 2) - (n / 2) % 10;
        let r = requests(target);
        let expect = [
            ("l4_allow", &r.l4_allow, ActionTaken::Allow),
            ("l7_allow", &r.l7_allow, ActionTaken::Allow),
            ("l7_deny_no_match", &r.l7_deny, ActionTaken::NoAllowMatched),
        ];
        for (name, request, action) in expect {
            let decision = authz.evaluate(request);
            assert_eq!(decision.action_taken, action, "{name} with {n} policies");
            if action == ActionTaken::Allow {
                let id = decision.policy.expect("an allow names its policy");
                assert_eq!(id.name, format!("allow-{target}"));
            }
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| black_box(authz.evaluate(black_box(request)).allowed));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);

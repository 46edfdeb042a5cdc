//! The authorizer: the policies that apply to one workload, compiled, and Istio's evaluation.

use super::{
    compile::{
        index::{RuleGroup, TcpMode},
        rule::CompiledRule,
    },
    decision::{ActionTaken, Decision, Delegation, DryRunVerdict, Reason, Report, ReportKind},
    model::{Action, AuthorizationPolicy, PolicyId},
    request::AuthzRequest,
    view::View,
    workload::Workload,
};

/// Decides requests to one workload with Istio AuthorizationPolicy semantics.
///
/// Built once from every loaded policy and the workload's namespace and labels, keeping only
/// the policies that apply; rebuild it when policies change (it is immutable, so a new one can
/// be swapped in while the old one finishes in-flight requests).
///
/// Evaluation follows Istio:
///
/// 1. CUSTOM policies that match are returned as [`Decision::delegate`]: the caller asks those
///    providers, and a provider's deny is final.
/// 2. If any DENY policy matches, the request is denied.
/// 3. If no ALLOW policy applies to the workload, the request is allowed.
/// 4. If any ALLOW policy matches, it is allowed; otherwise denied. An ALLOW policy without
///    rules (`spec: {}`) applies but never matches, so it denies everything.
///
/// AUDIT and dry-run policies are evaluated and reported, never enforced.
///
/// On a raw TCP connection (`request.http` is `None`) rules that need HTTP attributes are
/// judged as ztunnel judges them: an ALLOW rule cannot match, while a DENY, CUSTOM or AUDIT
/// rule is evaluated on its other parts, its HTTP conditions assumed to match. Either way the
/// error is a refusal, never an unintended admission.
///
/// ```
/// use mesh_policy::authz::{Authorizer, AuthzRequest, Workload, parse_policies};
/// let policies = parse_policies(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: { name: allow-web, namespace: shop }
/// spec:
///   rules:
///   - from: [{ source: { principals: ["cluster.local/ns/shop/sa/web"] } }]
/// "#)?;
/// let authz = Authorizer::new(&policies, &Workload::new("shop"));
/// let web = "spiffe://cluster.local/ns/shop/sa/web".parse()?;
/// let request = AuthzRequest::tcp("10.0.0.1".parse()?, "10.0.0.2:8080".parse()?)
///     .with_principal(web);
/// let decision = authz.evaluate(&request);
/// assert!(decision.allowed);
/// assert_eq!(decision.policy.unwrap().to_string(), "shop/allow-web");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Authorizer {
    policies: Vec<Applied>,
    custom: RuleGroup,
    deny: RuleGroup,
    allow: RuleGroup,
    audit: RuleGroup,
    dry_deny: RuleGroup,
    dry_allow: RuleGroup,
}

/// A policy that applies to the workload.
#[derive(Debug)]
struct Applied {
    id: PolicyId,
    /// The CUSTOM provider, for CUSTOM policies.
    provider: Option<String>,
}

impl Authorizer {
    /// Compiles the policies in `policies` that apply to `workload` (see
    /// [`Workload::is_selected_by`]), in the order given.
    pub fn new<'p>(
        policies: impl IntoIterator<Item = &'p AuthorizationPolicy>,
        workload: &Workload,
    ) -> Self {
        let mut authz = Self::default();
        for policy in policies.into_iter().filter(|p| workload.is_selected_by(p)) {
            let index = authz.policies.len();
            let group = match (&policy.action, policy.dry_run) {
                (Action::Allow, false) => &mut authz.allow,
                (Action::Allow, true) => &mut authz.dry_allow,
                (Action::Deny, false) => &mut authz.deny,
                (Action::Deny, true) => &mut authz.dry_deny,
                (Action::Audit, _) => &mut authz.audit,
                (Action::Custom { .. }, _) => &mut authz.custom,
            };
            group.add_policy(index, &policy.rules);
            authz.policies.push(Applied {
                id: policy.id.clone(),
                provider: match &policy.action {
                    Action::Custom { provider } => Some(provider.clone()),
                    _ => None,
                },
            });
        }
        authz
    }

    /// The policies that apply to the workload, in evaluation order.
    pub fn policies(&self) -> impl Iterator<Item = &PolicyId> {
        self.policies.iter().map(|p| &p.id)
    }

    /// Decides `request`. Never fails: every request gets a decision and its explanation.
    pub fn evaluate(&self, request: &AuthzRequest) -> Decision<'_> {
        let v = View::new(request);
        let tcp = v.http.is_none();
        let deny = self.deny.first_match(&v, TcpMode::Assume);
        let allow = match deny {
            None if self.allow.policies > 0 => self.allow.first_match(&v, TcpMode::Skip),
            _ => None,
        };
        let (action_taken, rule) = self.outcome(deny, allow, self.allow.policies);
        let reason = match (action_taken, rule) {
            (_, Some(rule)) => Reason::RuleMatched {
                assumed_http: self.assumed(rule, tcp),
            },
            (ActionTaken::NoAllowPolicies, None) => Reason::NoAllowPolicies,
            _ => Reason::NoAllowRuleMatched {
                allow_policies: self.allow.policies,
                skipped_http_rules: if tcp { self.allow.http_rules } else { 0 },
            },
        };
        let mut reported = Vec::new();
        let groups = [
            (&self.audit, ReportKind::Audit, TcpMode::Assume),
            (&self.dry_deny, ReportKind::DryRunDeny, TcpMode::Assume),
            (&self.dry_allow, ReportKind::DryRunAllow, TcpMode::Skip),
        ];
        for (group, kind, mode) in groups {
            if group.is_empty() {
                continue;
            }
            for rule in group.first_match_per_policy(&v, mode) {
                reported.push(Report {
                    kind,
                    policy: self.id(rule),
                    rule_index: rule.rule_index,
                    assumed_http: self.assumed(rule, tcp),
                });
            }
        }
        Decision {
            allowed: matches!(
                action_taken,
                ActionTaken::Allow | ActionTaken::NoAllowPolicies
            ),
            action_taken,
            policy: rule.map(|r| self.id(r)),
            rule_index: rule.map(|r| r.rule_index),
            reason,
            delegate: self.delegations(&v),
            dry_run: self.dry_run(&v, deny, allow),
            reported,
        }
    }

    /// Which step decides, given the first DENY and ALLOW matches.
    fn outcome<'g>(
        &self,
        deny: Option<&'g CompiledRule>,
        allow: Option<&'g CompiledRule>,
        allow_policies: usize,
    ) -> (ActionTaken, Option<&'g CompiledRule>) {
        match (deny, allow) {
            (Some(rule), _) => (ActionTaken::Deny, Some(rule)),
            (None, Some(rule)) => (ActionTaken::Allow, Some(rule)),
            (None, None) if allow_policies == 0 => (ActionTaken::NoAllowPolicies, None),
            (None, None) => (ActionTaken::NoAllowMatched, None),
        }
    }

    /// The decision with the dry-run policies enforced too.
    fn dry_run(
        &self,
        v: &View<'_>,
        deny: Option<&CompiledRule>,
        allow: Option<&CompiledRule>,
    ) -> Option<DryRunVerdict<'_>> {
        if self.dry_deny.policies + self.dry_allow.policies == 0 {
            return None;
        }
        let deny = deny.or_else(|| self.dry_deny.first_match(v, TcpMode::Assume));
        let allow_policies = self.allow.policies + self.dry_allow.policies;
        let allow = match deny {
            None => allow.or_else(|| self.dry_allow.first_match(v, TcpMode::Skip)),
            Some(_) => None,
        };
        let (action_taken, rule) = self.outcome(deny, allow, allow_policies);
        Some(DryRunVerdict {
            allowed: matches!(
                action_taken,
                ActionTaken::Allow | ActionTaken::NoAllowPolicies
            ),
            action_taken,
            policy: rule.map(|r| self.id(r)),
            rule_index: rule.map(|r| r.rule_index),
        })
    }

    /// The providers of the matching CUSTOM policies, first match per provider.
    fn delegations(&self, v: &View<'_>) -> Vec<Delegation<'_>> {
        let mut out: Vec<Delegation<'_>> = Vec::new();
        if self.custom.is_empty() {
            return out;
        }
        for rule in self.custom.first_match_per_policy(v, TcpMode::Assume) {
            let applied = self.policies.get(rule.policy);
            let Some(provider) = applied.and_then(|a| a.provider.as_deref()) else {
                continue;
            };
            if out.iter().all(|d| d.provider != provider) {
                out.push(Delegation {
                    provider,
                    policy: self.id(rule),
                    rule_index: rule.rule_index,
                });
            }
        }
        out
    }

    /// The HTTP fields a restrictive rule had assumed on raw TCP.
    fn assumed<'g>(&self, rule: &'g CompiledRule, tcp: bool) -> &'g [String] {
        if tcp { &rule.http_fields } else { &[] }
    }

    fn id(&self, rule: &CompiledRule) -> &PolicyId {
        // Every compiled rule was filed with the index of the policy pushed alongside it.
        self.policies.get(rule.policy).map_or(&UNKNOWN, |p| &p.id)
    }
}

/// Never shown: only reachable if a rule pointed outside the policy list.
static UNKNOWN: PolicyId = PolicyId {
    namespace: String::new(),
    name: String::new(),
};

#[cfg(test)]
mod tests {
    use super::Authorizer;

    #[test]
    fn can_be_shared_across_connection_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Authorizer>();
    }
}

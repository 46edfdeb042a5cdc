//! Properties of the engine over generated policies and requests.
//!
//! Policies are generated as Istio YAML from a small vocabulary (so rules often match and the
//! loader is exercised as well); requests are generated both from the same vocabulary and
//! from arbitrary strings and addresses.

mod support;

use mesh_policy::authz::{
    ActionTaken, AuthorizationPolicy, Authorizer, AuthzRequest, Workload, parse_policies,
};
use proptest::prelude::*;
use support::generate::{deny_policy, policies, policy_with, request, wild_request};

fn workload() -> Workload {
    Workload::new("shop").with_label("app", "api")
}

/// `(allowed, action_taken)` for `policies` on `req`.
fn decide(policies: &[&AuthorizationPolicy], req: &AuthzRequest) -> (bool, ActionTaken) {
    let authz = Authorizer::new(policies.iter().copied(), &workload());
    let d = authz.evaluate(req);
    (d.allowed, d.action_taken)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn evaluation_never_panics_and_is_consistent(policies in policies(), req in prop_oneof![request(), wild_request()]) {
        let authz = Authorizer::new(&policies, &workload());
        let d = authz.evaluate(&req);
        prop_assert_eq!(d.allowed, matches!(d.action_taken, ActionTaken::Allow | ActionTaken::NoAllowPolicies));
        prop_assert_eq!(d.policy.is_some(), d.rule_index.is_some());
        prop_assert_eq!(d.policy.is_some(), matches!(d.action_taken, ActionTaken::Allow | ActionTaken::Deny));
        let _ = d.to_string();
    }

    #[test]
    fn the_engine_agrees_with_a_naive_reference(policies in policies(), req in prop_oneof![3 => request(), 1 => wild_request()]) {
        // Indexed sets, prefix-free lists, CIDR tables and the cross-rule index must give the
        // answer a plain reading of Istio's documentation gives.
        let authz = Authorizer::new(&policies, &workload());
        let d = authz.evaluate(&req);
        let (allowed, action, hit) = support::reference::decide(&policies, &workload(), &req);
        prop_assert_eq!((d.allowed, d.action_taken), (allowed, action));
        prop_assert_eq!(d.policy.cloned().zip(d.rule_index), hit);
    }

    #[test]
    fn adding_a_deny_policy_never_allows_what_was_denied(
        policies in policies(), deny in deny_policy(), at in any::<prop::sample::Index>(), req in request()
    ) {
        let before: Vec<&AuthorizationPolicy> = policies.iter().collect();
        let mut after = before.clone();
        after.insert(at.index(after.len() + 1), &deny);
        let (was_allowed, _) = decide(&before, &req);
        let (now_allowed, _) = decide(&after, &req);
        prop_assert!(was_allowed || !now_allowed);
        // And a DENY that matches on its own always wins.
        if decide(&[&deny], &req).1 == ActionTaken::Deny {
            prop_assert!(!now_allowed);
        }
    }

    #[test]
    fn without_allow_policies_everything_not_denied_is_allowed(policies in policies(), req in request()) {
        let is_allow = |p: &&AuthorizationPolicy| {
            p.action == mesh_policy::authz::Action::Allow && !p.dry_run
        };
        let rest: Vec<&AuthorizationPolicy> = policies.iter().filter(|p| !is_allow(p)).collect();
        let (allowed, action) = decide(&rest, &req);
        prop_assert_eq!(allowed, action != ActionTaken::Deny);
    }

    #[test]
    fn audit_and_dry_run_policies_never_change_the_decision(policies in policies(), req in request()) {
        let all: Vec<&AuthorizationPolicy> = policies.iter().collect();
        let enforced: Vec<&AuthorizationPolicy> = policies
            .iter()
            .filter(|p| !p.dry_run && p.action != mesh_policy::authz::Action::Audit)
            .collect();
        let a = Authorizer::new(all, &workload());
        let b = Authorizer::new(enforced, &workload());
        let (da, db) = (a.evaluate(&req), b.evaluate(&req));
        prop_assert_eq!((da.allowed, da.action_taken, da.policy, da.rule_index), (db.allowed, db.action_taken, db.policy, db.rule_index));
    }

    #[test]
    fn the_deciding_policy_is_the_first_that_decides_alone(policies in policies(), req in request()) {
        // The index visits rules out of file order internally; the answer must not show it.
        let all: Vec<&AuthorizationPolicy> = policies.iter().collect();
        let authz = Authorizer::new(all.iter().copied(), &workload());
        let d = authz.evaluate(&req);
        if let (Some(id), ActionTaken::Deny | ActionTaken::Allow) = (d.policy, d.action_taken) {
            let first = all.iter().find(|p| {
                Authorizer::new([**p], &workload()).evaluate(&req).action_taken == d.action_taken
            });
            prop_assert_eq!(first.map(|p| &p.id), Some(id));
        }
    }

    #[test]
    fn loading_arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = parse_policies(&text);
    }

    #[test]
    fn loading_mangled_policies_never_panics(doc in policy_with(0u8..6), cut in any::<prop::sample::Index>(), junk in "[-:{}\\[\\],\"'* a-z0-9\n]{0,8}") {
        let at = cut.index(doc.len() + 1);
        let at = (0..=at).rev().find(|i| doc.is_char_boundary(*i)).unwrap_or(0);
        let mangled = format!("{}{junk}{}", &doc[..at], &doc[at..]);
        let _ = parse_policies(&mangled);
    }
}

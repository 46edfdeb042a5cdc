//! Feeds arbitrary UTF-8 to `mesh_policy::parse_security_policies` (AuthorizationPolicy,
//! RequestAuthentication and PeerAuthentication documents in one file).
//!
//! Parsing must never panic. What it accepts is compiled for a few workloads and exercised:
//! - AuthorizationPolicy: a handful of L4 (raw TCP) and L7 (HTTP, with and without a JWT
//!   principal) requests are decided, and each decision must agree with the engine's rules
//!   checked from the outside: `allowed` matches the action taken; a DENY decision names a
//!   DENY policy that denies the request on its own as well; an ALLOW decision names an ALLOW
//!   policy that allows on its own; "no ALLOW matched" means no applying ALLOW policy allows
//!   on its own; the DENY policies alone never allow what the full set denies by DENY; and the
//!   decision does not depend on the order of the policies (only which of several matching
//!   policies is named may).
//! - RequestAuthentication: a request without a token passes unauthenticated and a junk token
//!   is refused, never accepted.
//! - PeerAuthentication: every port gets a mode, with no panic.

#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use mesh_core::clock::Timestamp;
use mesh_policy::{
    authn::{Authenticator, JwksStore},
    authz::{
        Action, ActionTaken, AuthorizationPolicy, Authorizer, AuthzRequest, HttpAttributes,
        RequestAuth, Workload,
    },
    parse_security_policies,
    peer_authn::PeerAuthenticator,
};

/// At most this many AuthorizationPolicies are checked one by one (each builds an authorizer).
const MAX_SINGLE: usize = 12;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policies = match parse_security_policies(text) {
        Ok(policies) => policies,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let workloads = [
        Workload::new("shop").with_label("app", "web"),
        Workload::new("default"),
        Workload::new("istio-system"),
        Workload::new("shop")
            .with_label("app", "db")
            .with_root_namespace("mesh-root"),
    ];
    let requests = requests();
    for workload in &workloads {
        check_authorization(&policies.authorization, workload, &requests);

        let authn =
            Authenticator::new(&policies.request_authentication, workload, JwksStore::new());
        let _ = authn.remote_jwks();
        let now = Timestamp::from_nanos(1_700_000_000_000_000_000);
        let plain = http::Request::get("/orders?x=1").body(()).expect("valid");
        let outcome = authn
            .authenticate(&plain.into_parts().0, now)
            .expect("a request without a token passes authentication");
        assert!(outcome.auth.is_none());
        let junk = http::Request::get("/orders?access_token=a.b.c")
            .header(
                "authorization",
                "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
            )
            .body(())
            .expect("valid");
        if let Ok(outcome) = authn.authenticate(&junk.into_parts().0, now) {
            assert!(outcome.auth.is_none(), "an unsigned token was accepted");
        }

        let peer = PeerAuthenticator::new(&policies.peer_authentication, workload);
        for port in [0, 80, 8080, 9090, 15008, 65535] {
            let decision = peer.mode(port);
            assert_eq!(decision.port, port);
            let _ = decision.to_string();
        }
    }
});

fn requests() -> Vec<AuthzRequest> {
    let src: IpAddr = [10, 0, 0, 1].into();
    let dst: SocketAddr = ([10, 0, 0, 2], 8080).into();
    let web = "spiffe://cluster.local/ns/shop/sa/web"
        .parse()
        .expect("valid ID");
    let other = "spiffe://example.org/ns/default/sa/bot"
        .parse()
        .expect("valid ID");
    let get = HttpAttributes::new("GET", "/api/v1/items?id=1", "shop.example.com")
        .with_header("x-user", "alice")
        .with_header("user-agent", "curl/8");
    let post = HttpAttributes::new("POST", "/admin/delete", "shop.example.com:8080");
    let auth = RequestAuth::from_claims(serde_json::json!({
        "iss": "https://issuer.example",
        "sub": "alice",
        "aud": ["shop"],
        "groups": ["admin", "dev"],
    }));
    vec![
        AuthzRequest::tcp(src, dst),
        AuthzRequest::tcp(src, dst).with_principal(web),
        AuthzRequest::tcp([192, 168, 1, 9].into(), ([10, 0, 0, 2], 9090).into())
            .with_principal(other),
        AuthzRequest::tcp(src, dst)
            .with_principal(
                "spiffe://cluster.local/ns/shop/sa/web"
                    .parse()
                    .expect("valid"),
            )
            .with_http(get.clone()),
        AuthzRequest::tcp(src, dst)
            .with_http(post)
            .with_auth(auth.clone())
            .with_sni("shop.example.com"),
        AuthzRequest::tcp(
            "fd00::1".parse().expect("valid"),
            ([10, 0, 0, 2], 80).into(),
        )
        .with_remote_ip([203, 0, 113, 5].into())
        .with_http(get)
        .with_auth(auth),
    ]
}

fn check_authorization(
    policies: &[AuthorizationPolicy],
    workload: &Workload,
    requests: &[AuthzRequest],
) {
    let full = Authorizer::new(policies, workload);
    let reversed = Authorizer::new(policies.iter().rev(), workload);
    let enforced_deny: Vec<&AuthorizationPolicy> = policies
        .iter()
        .filter(|p| p.action == Action::Deny && !p.dry_run)
        .collect();
    let deny_only = Authorizer::new(enforced_deny.iter().copied(), workload);
    let applies: Vec<&AuthorizationPolicy> = policies
        .iter()
        .filter(|p| workload.is_selected_by(p))
        .take(MAX_SINGLE)
        .collect();
    let singles: Vec<(&AuthorizationPolicy, Authorizer)> = applies
        .iter()
        .map(|p| (*p, Authorizer::new([*p], workload)))
        .collect();

    for request in requests {
        let decision = full.evaluate(request);
        let _ = format!("{decision:?}");
        assert_eq!(
            decision.allowed,
            matches!(
                decision.action_taken,
                ActionTaken::Allow | ActionTaken::NoAllowPolicies
            )
        );
        assert_eq!(
            reversed.evaluate(request).allowed,
            decision.allowed,
            "the order of policies changed the decision for {request:?}"
        );
        let by_deny = deny_only.evaluate(request);
        match decision.action_taken {
            ActionTaken::Deny => {
                assert_eq!(by_deny.action_taken, ActionTaken::Deny);
                let id = decision.policy.expect("a DENY decision names its policy");
                assert!(
                    named(policies, id).any(|p| p.action == Action::Deny
                        && !p.dry_run
                        && !Authorizer::new([p], workload).evaluate(request).allowed),
                    "{id} does not deny {request:?} on its own"
                );
            }
            ActionTaken::Allow => {
                assert!(by_deny.allowed, "allowed although a DENY policy denies");
                let id = decision.policy.expect("an ALLOW decision names its policy");
                assert!(
                    named(policies, id).any(|p| p.action == Action::Allow
                        && !p.dry_run
                        && Authorizer::new([p], workload)
                            .evaluate(request)
                            .action_taken
                            == ActionTaken::Allow),
                    "{id} does not allow {request:?} on its own"
                );
            }
            // No ALLOW policy, or none matched.
            _ => {
                assert!(
                    by_deny.allowed,
                    "DENY policies alone deny what the set did not"
                );
            }
        }
        let no_allow_policies = decision.action_taken == ActionTaken::NoAllowPolicies;
        for (policy, alone) in &singles {
            let single = alone.evaluate(request);
            let enforced_allow = policy.action == Action::Allow && !policy.dry_run;
            if enforced_allow {
                assert!(
                    !no_allow_policies,
                    "an ALLOW policy applies: {:?}",
                    policy.id
                );
            }
            if enforced_allow && single.action_taken == ActionTaken::Allow {
                assert!(
                    decision.allowed || decision.action_taken == ActionTaken::Deny,
                    "{:?} allows on its own but the set denied without a DENY",
                    policy.id
                );
            }
            if policy.action == Action::Deny && !policy.dry_run && !single.allowed {
                assert_eq!(
                    decision.action_taken,
                    ActionTaken::Deny,
                    "{:?} denies on its own but the set did not deny",
                    policy.id
                );
            }
        }
    }
}

/// The loaded policies with this id (names may repeat across documents).
fn named<'p>(
    policies: &'p [AuthorizationPolicy],
    id: &'p mesh_policy::authz::PolicyId,
) -> impl Iterator<Item = &'p AuthorizationPolicy> {
    policies.iter().filter(move |p| &p.id == id)
}

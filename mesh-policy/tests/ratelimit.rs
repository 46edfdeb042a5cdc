//! Local rate limiting: the config format (strict, field-path errors) and the limiter's
//! decisions on a ManualClock.

use std::{
    future::Future,
    net::SocketAddr,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use mesh_core::{
    SpiffeId,
    clock::{Clock, ManualClock},
};
use mesh_policy::{
    authz::{AuthzRequest, HttpAttributes},
    ratelimit::{
        Decision, KeyPart, LocalRateLimiter, MissingKey, RateLimitConfig, RateLimiter, Verdict,
        rule_key,
    },
};

#[path = "ratelimit_cases/config.rs"]
mod config;

fn limiter(yaml: &str) -> LocalRateLimiter {
    LocalRateLimiter::new(RateLimitConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}")))
}

fn tcp(port: u16) -> AuthzRequest {
    let dst: SocketAddr = ([10, 0, 0, 2], port).into();
    AuthzRequest::tcp([10, 0, 0, 1].into(), dst)
}

fn from(principal: &str) -> AuthzRequest {
    tcp(8080).with_principal(format!("spiffe://{principal}").parse::<SpiffeId>().unwrap())
}

fn http(method: &str, path: &str) -> AuthzRequest {
    tcp(8080).with_http(HttpAttributes::new(method, path, "svc"))
}

fn with_header(request: AuthzRequest, name: &str, value: &str) -> AuthzRequest {
    let http = request
        .http
        .clone()
        .unwrap_or_default()
        .with_header(name, value);
    request.with_http(http)
}

/// Admitted count of `n` checks at the clock's current time.
fn burst(
    limiter: &LocalRateLimiter,
    request: &AuthzRequest,
    clock: &ManualClock,
    n: usize,
) -> usize {
    (0..n)
        .filter(|_| limiter.decide(request, clock.now()).is_allowed())
        .count()
}

#[test]
fn one_bucket_burst_refill_and_headers() {
    let limiter = limiter(
        "rules: [{name: all, limit: {max_tokens: 3, tokens_per_fill: 1, fill_interval: 200ms}}]",
    );
    let clock = ManualClock::new();
    let request = tcp(80);
    let first = limiter.decide(&request, clock.now());
    assert_eq!(first.verdict, Verdict::Allowed);
    assert_eq!(first.rule.as_deref(), Some("all"));
    assert_eq!(
        first.response_headers(),
        [
            ("x-ratelimit-limit", "3".to_owned()),
            ("x-ratelimit-remaining", "2".to_owned()),
            ("x-ratelimit-reset", "1".to_owned()),
        ]
    );
    assert_eq!(burst(&limiter, &request, &clock, 5), 2);
    let refused = limiter.decide(&request, clock.now());
    assert_eq!(
        refused.verdict,
        Verdict::Limited {
            retry_after: Duration::from_millis(200)
        }
    );
    assert_eq!(refused.http_status(), Some(429));
    assert_eq!(refused.quota.map(|q| q.remaining), Some(0));
    assert_eq!(
        refused.quota.map(|q| q.reset_after),
        Some(Duration::from_millis(600))
    );
    assert!(
        refused
            .response_headers()
            .contains(&("retry-after", "1".to_owned()))
    );
    assert_eq!(
        refused.to_string(),
        "limited by rule all (retry after 200ms; 0 of 3 left)"
    );

    clock.advance(Duration::from_millis(199));
    assert!(!limiter.decide(&request, clock.now()).is_allowed());
    clock.advance(Duration::from_millis(1));
    assert!(limiter.decide(&request, clock.now()).is_allowed());
    // Refused checks consumed nothing: exactly one token per 200ms.
    clock.advance(Duration::from_millis(400));
    assert_eq!(burst(&limiter, &request, &clock, 10), 2);
    // Idle for long: back to the burst, not more.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(burst(&limiter, &request, &clock, 10), 3);
}

#[test]
fn per_principal_buckets_and_missing_keys() {
    let limiter = limiter(
        "rules:\n- {name: per-caller, key: [source_principal], limit: {max_tokens: 2, fill_interval: 1s}}\n",
    );
    let clock = ManualClock::new();
    let a = from("cluster.local/ns/shop/sa/a");
    let b = from("cluster.local/ns/shop/sa/b");
    assert_eq!(burst(&limiter, &a, &clock, 5), 2);
    assert_eq!(burst(&limiter, &b, &clock, 5), 2, "b has its own bucket");
    // Plaintext peers (no principal) share one bucket by default.
    assert_eq!(burst(&limiter, &tcp(8080), &clock, 5), 2);
    assert_eq!(burst(&limiter, &tcp(9090), &clock, 5), 0);
    assert_eq!(limiter.keys_in_use("per-caller"), Some(3));
    assert_eq!(limiter.keys_in_use("nope"), None);

    let skip = limiter_skip();
    assert_eq!(
        burst(&skip, &tcp(8080), &clock, 5),
        5,
        "skip: the rule ignores them"
    );
    let decision = skip.decide(&tcp(8080), clock.now());
    assert_eq!(decision.rule, None);
    assert_eq!(decision.to_string(), "allowed (no rule matched)");
    assert!(decision.response_headers().is_empty());
}

fn limiter_skip() -> LocalRateLimiter {
    limiter(
        "rules:\n- name: per-user\n  key: [{header: X-User}]\n  missing_key: skip\n  limit: {max_tokens: 1, fill_interval: 1s}\n",
    )
}

#[test]
fn header_keys_and_match_conditions() {
    let limiter = limiter(
        r#"
rules:
  - name: writes
    match:
      path_prefixes: [/api/]
      methods: [POST]
      destination_ports: [8080]
      source_namespaces: [shop]
      headers: { x-tenant: "gold-*" }
    key: [{ header: x-user }]
    limit: { max_tokens: 1, fill_interval: 1m }
"#,
    );
    let clock = ManualClock::new();
    let base = http("POST", "/api/orders?x=1").with_principal(
        "spiffe://cluster.local/ns/shop/sa/web"
            .parse::<SpiffeId>()
            .unwrap(),
    );
    let user = |u: &str| with_header(with_header(base.clone(), "X-Tenant", "gold-1"), "x-user", u);
    assert_eq!(burst(&limiter, &user("alice"), &clock, 3), 1);
    assert_eq!(burst(&limiter, &user("bob"), &clock, 3), 1);
    // Each condition that fails takes the request out of the rule.
    let cases = [
        (
            "GET",
            with_header(
                with_header(http("GET", "/api/x"), "x-tenant", "gold-1"),
                "x-user",
                "alice",
            ),
        ),
        (
            "path",
            with_header(
                with_header(http("POST", "/apix"), "x-tenant", "gold-1"),
                "x-user",
                "alice",
            ),
        ),
        ("tenant", with_header(base.clone(), "x-user", "alice")),
        ("tcp", tcp(8080)),
    ];
    for (what, request) in cases {
        let request = request.with_principal(
            "spiffe://cluster.local/ns/shop/sa/web"
                .parse::<SpiffeId>()
                .unwrap(),
        );
        assert_eq!(burst(&limiter, &request, &clock, 3), 3, "{what}");
    }
    let other_ns = user("alice").with_principal(
        "spiffe://cluster.local/ns/x/sa/web"
            .parse::<SpiffeId>()
            .unwrap(),
    );
    assert_eq!(burst(&limiter, &other_ns, &clock, 3), 3);
    let mut other_port = user("alice");
    other_port.destination_port = 9090;
    assert_eq!(burst(&limiter, &other_port, &clock, 3), 3);

    // rule_key shows what a global limiter would count under.
    let rule = limiter.rules().next().unwrap();
    assert_eq!(rule.key, [KeyPart::Header("x-user".to_owned())]);
    assert_eq!(rule.missing_key, MissingKey::Shared);
    assert_eq!(
        rule_key(rule, &user("carol")),
        Some(vec![Some("carol".to_owned())])
    );
    assert_eq!(rule_key(rule, &tcp(8080)), None);
}

#[test]
fn every_matching_rule_must_have_a_token_and_refusals_take_none() {
    let limiter = limiter(
        "rules:\n\
         - {name: global, limit: {max_tokens: 3, fill_interval: 1s}}\n\
         - {name: per-caller, key: [source_principal], limit: {max_tokens: 2, fill_interval: 1s}}\n",
    );
    let clock = ManualClock::new();
    let a = from("td/ns/n/sa/a");
    let b = from("td/ns/n/sa/b");
    let d = limiter.decide(&a, clock.now());
    assert_eq!(
        d.rule.as_deref(),
        Some("per-caller"),
        "fewest left decides: {d}"
    );
    assert!(limiter.decide(&a, clock.now()).is_allowed());
    // a's own bucket is empty: refused, and the global bucket keeps its token.
    let refused = limiter.decide(&a, clock.now());
    assert_eq!(refused.rule.as_deref(), Some("per-caller"));
    assert!(!refused.is_allowed());
    assert!(
        limiter.decide(&b, clock.now()).is_allowed(),
        "global still had a token for b"
    );
    let refused = limiter.decide(&b, clock.now());
    assert_eq!(refused.rule.as_deref(), Some("global"), "{refused}");
}

#[test]
fn rotating_keys_cannot_grow_memory_or_reset_active_buckets() {
    let limiter = limiter(
        "rules:\n- {name: per-user, key: [{header: x-user}], max_keys: 50, limit: {max_tokens: 2, fill_interval: 10s}}\n",
    );
    let clock = ManualClock::new();
    let victim = with_header(http("GET", "/"), "x-user", "victim");
    assert_eq!(burst(&limiter, &victim, &clock, 2), 2);
    let mut admitted = 0;
    for i in 0..10_000 {
        let attacker = with_header(http("GET", "/"), "x-user", &format!("k{i}"));
        admitted += usize::from(limiter.decide(&attacker, clock.now()).is_allowed());
    }
    assert_eq!(limiter.keys_in_use("per-user"), Some(50));
    // 49 fresh keys got slots (one request each); the rest shared one overflow bucket.
    assert_eq!(admitted, 49 + 2);
    assert_eq!(limiter.overflowed(), 10_000 - 49);
    // The victim's bucket was not reset by the churn.
    assert!(!limiter.decide(&victim, clock.now()).is_allowed());
    // Once buckets have refilled they are forgotten for new keys, losslessly.
    clock.advance(Duration::from_secs(20));
    let newcomer = with_header(http("GET", "/"), "x-user", "newcomer");
    assert_eq!(burst(&limiter, &newcomer, &clock, 5), 2);
    assert_eq!(limiter.keys_in_use("per-user"), Some(50));
}

#[test]
fn concurrent_checks_admit_exactly_the_burst() {
    let limiter = Arc::new(limiter(
        "rules: [{name: all, limit: {max_tokens: 1000, fill_interval: 1h}}]",
    ));
    let clock = ManualClock::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (limiter, now) = (Arc::clone(&limiter), clock.now());
            std::thread::spawn(move || {
                (0..500)
                    .filter(|_| limiter.decide(&tcp(1), now).is_allowed())
                    .count()
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(admitted, 1000);
}

#[test]
fn clock_going_backwards_refills_nothing() {
    let limiter = limiter("rules: [{name: all, limit: {max_tokens: 1, fill_interval: 1s}}]");
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(10));
    assert!(limiter.decide(&tcp(1), clock.now()).is_allowed());
    clock.set(mesh_core::clock::Timestamp::ZERO);
    assert!(!limiter.decide(&tcp(1), clock.now()).is_allowed());
    clock.set(mesh_core::clock::Timestamp::from_nanos(11_000_000_000));
    assert!(limiter.decide(&tcp(1), clock.now()).is_allowed());
}

/// Polls a future once with a no-op waker: local limiters must be ready at once.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = pin!(future);
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn used_through_the_trait_like_the_inbound_path() {
    let shared: Arc<dyn RateLimiter> = Arc::new(limiter(
        "rules: [{name: all, limit: {max_tokens: 1, fill_interval: 1s}}]",
    ));
    let clock = ManualClock::new();
    let request = tcp(1);
    let first = shared.check(&request, clock.now()).into_ready().unwrap();
    assert!(first.is_allowed());
    let Poll::Ready(second) = poll_once(shared.check(&request, clock.now())) else {
        panic!("a local check is ready at once");
    };
    assert_eq!(second.http_status(), Some(429));
    let boxed: Box<dyn RateLimiter> = Box::new(Arc::clone(&shared));
    let Poll::Ready(third): Poll<Decision> = poll_once(boxed.check(&request, clock.now())) else {
        panic!("ready");
    };
    assert!(!third.is_allowed());
}

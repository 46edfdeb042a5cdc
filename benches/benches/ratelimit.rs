//! Local rate limiting: `mesh_policy::ratelimit::LocalRateLimiter::decide` (token buckets keyed
//! by request descriptors) against bare token buckets, in the same run.
//!
//! Rows of group `ratelimit_local`:
//!
//! - `baseline/token_bucket`: one `TokenBucket::check` (refill to now, take a token): the
//!   arithmetic every decision contains;
//! - `baseline/hashmap_bucket`: a hand-written keyed limiter — a `Mutex<HashMap<String,
//!   TokenBucket>>` looked up by the caller's principal, then `check` — what a service writes
//!   by hand for "N requests per caller";
//! - `one_rule`: one unkeyed rule matching every request;
//! - `per_principal`: one rule keyed by `source_principal` (the hand-written baseline's job),
//!   one caller;
//! - `per_principal_10k_callers`: the same with 10,000 callers in rotation (a full key table;
//!   each check finds its caller's bucket among 10,000);
//! - `three_rules_http`: an HTTP request matched by three rules (a global one, one keyed by
//!   principal, and one matching path prefix and method keyed by a header and the method),
//!   all checked and charged atomically;
//! - `no_rule_matches`: an HTTP request no rule matches (the cost of having limits configured
//!   for other traffic).
//!
//! Every row is admitted: buckets are large and time advances 1 ms per check, so refill keeps
//! up; each row's first decision is checked before it is timed. The ratio
//! `per_principal / baseline/hashmap_bucket` is what the configurable engine costs over the
//! hand-written equivalent.
//!
//! `cargo bench --bench ratelimit -- --quick` (filter with a regular expression after `--`).

use std::{collections::HashMap, hint::black_box, net::SocketAddr, sync::Mutex, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_core::{SpiffeId, clock::Timestamp};
use mesh_policy::{
    authz::{AuthzRequest, HttpAttributes},
    ratelimit::{BucketParams, LocalRateLimiter, RateLimitConfig, TokenBucket},
};

const CALLERS: usize = 10_000;

/// A big bucket refilled fast, so that every timed check is admitted.
const LIMIT: &str = "{ max_tokens: 1000000, tokens_per_fill: 1000000, fill_interval: 1s }";

fn limiter(rules: &str) -> LocalRateLimiter {
    let yaml = format!("rules:\n{rules}");
    LocalRateLimiter::new(RateLimitConfig::from_yaml(&yaml).expect("the bench config loads"))
}

fn caller(i: usize) -> SpiffeId {
    format!("spiffe://cluster.local/ns/shop/sa/caller-{i}")
        .parse()
        .expect("valid SPIFFE ID")
}

fn tcp_from(i: usize) -> AuthzRequest {
    let destination: SocketAddr = ([10, 0, 0, 2], 8080).into();
    AuthzRequest::tcp([10, 0, 0, 1].into(), destination).with_principal(caller(i))
}

/// A clock that moves 1 ms per check.
struct Ticks(u64);

impl Ticks {
    fn next(&mut self) -> Timestamp {
        self.0 += 1_000_000;
        Timestamp::from_nanos(self.0)
    }
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_local");
    let params = BucketParams::new(1_000_000, 1_000_000, Duration::from_secs(1)).expect("valid");

    let mut ticks = Ticks(0);
    let mut bucket = TokenBucket::full(&params, ticks.next());
    group.bench_function("baseline/token_bucket", |b| {
        b.iter(|| black_box(bucket.check(&params, ticks.next()).0));
    });

    let table: Mutex<HashMap<String, TokenBucket>> = Mutex::new(HashMap::new());
    let one = tcp_from(0);
    let mut ticks = Ticks(0);
    group.bench_function("baseline/hashmap_bucket", |b| {
        b.iter(|| {
            let now = ticks.next();
            let request = black_box(&one);
            let key = request
                .source_principal
                .as_ref()
                .map_or("", SpiffeId::as_str);
            let mut table = table.lock().expect("not poisoned");
            let admitted = match table.get_mut(key) {
                Some(bucket) => bucket.check(&params, now).0,
                None => {
                    let mut bucket = TokenBucket::full(&params, now);
                    let admitted = bucket.check(&params, now).0;
                    table.insert(key.to_owned(), bucket);
                    admitted
                }
            };
            black_box(admitted)
        });
    });

    let global = format!("  - {{ name: global, limit: {LIMIT} }}\n");
    let per_principal =
        format!("  - {{ name: per-caller, key: [source_principal], limit: {LIMIT} }}\n");
    let by_header = format!(
        "  - name: writes\n    match: {{ path_prefixes: [/api/], methods: [POST] }}\n    \
         key: [{{ header: x-user-id }}, method]\n    limit: {LIMIT}\n"
    );
    let http = tcp_from(0).with_http(
        HttpAttributes::new("POST", "/api/orders", "shop")
            .with_header("x-user-id", "u-42")
            .with_header("content-type", "application/json"),
    );

    let mut rows: Vec<(&str, LocalRateLimiter, Vec<AuthzRequest>)> = vec![
        ("one_rule", limiter(&global), vec![one.clone()]),
        ("per_principal", limiter(&per_principal), vec![one.clone()]),
        (
            "per_principal_10k_callers",
            limiter(&format!(
                "  - {{ name: per-caller, key: [source_principal], max_keys: {CALLERS}, limit: {LIMIT} }}\n"
            )),
            (0..CALLERS).map(tcp_from).collect(),
        ),
        (
            "three_rules_http",
            limiter(&format!("{global}{per_principal}{by_header}")),
            vec![http],
        ),
        (
            "no_rule_matches",
            limiter(&by_header),
            vec![tcp_from(0).with_http(HttpAttributes::new("GET", "/health", "shop"))],
        ),
    ];
    for (name, limiter, requests) in &mut rows {
        let mut ticks = Ticks(0);
        // Warm: every caller's bucket exists, and the first decision is what it should be.
        for request in requests.iter() {
            let decision = limiter.decide(request, ticks.next());
            assert!(decision.is_allowed(), "{name}: {decision:?}");
        }
        if *name == "no_rule_matches" {
            assert!(
                limiter
                    .decide(&requests[0], ticks.next())
                    .response_headers()
                    .is_empty()
            );
        }
        if *name == "per_principal_10k_callers" {
            assert_eq!(limiter.keys_in_use("per-caller"), Some(CALLERS));
        }
        let mut i = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                i = if i + 1 == requests.len() { 0 } else { i + 1 };
                let decision = limiter.decide(black_box(&requests[i]), ticks.next());
                black_box(decision.is_allowed())
            });
        });
        assert_eq!(
            limiter.overflowed(),
            0,
            "{name}: every key had a bucket of its own"
        );
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);

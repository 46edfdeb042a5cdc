//! Global rate limits against a real Redis (Debian's `redis-server`, started per test on a
//! free loopback port): limiters and processes sharing one limit, refill, atomic multi-rule
//! checks, Redis killed or frozen mid-test (fail-open, fail-closed, timeouts, recovery), and
//! Redis down at startup.
//!
//! Skipped with a message when `redis-server` is missing, unless `CI` is set (then they fail).

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use mesh_client::ratelimit::{GlobalRateLimitError, GlobalRateLimiter, RedisLimiterSettings};
use mesh_core::{
    SpiffeId,
    clock::{Clock, SystemClock},
};
use mesh_policy::{
    authz::AuthzRequest,
    ratelimit::{Decision, FailureMode, RateLimitConfig, RateLimiter, Verdict},
};

mod redis_server;

use redis_server::RedisServer;

/// Every test's overall limit.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The per-call timeout the limiters use here.
const CALL_TIMEOUT: Duration = Duration::from_millis(200);

async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test took longer than its overall timeout");
}

fn config(yaml: &str) -> RateLimitConfig {
    RateLimitConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn settings(redis: &RedisServer, prefix: &str) -> RedisLimiterSettings {
    RedisLimiterSettings::new(redis.url())
        .with_timeout(CALL_TIMEOUT)
        .with_key_prefix(prefix)
        .with_backoff(Duration::from_millis(300))
}

fn limiter(settings: RedisLimiterSettings, yaml: &str) -> GlobalRateLimiter {
    GlobalRateLimiter::new(settings, config(yaml)).expect("limiter")
}

fn from(principal: &str) -> AuthzRequest {
    let dst: SocketAddr = ([10, 0, 0, 2], 8080).into();
    AuthzRequest::tcp([10, 0, 0, 1].into(), dst).with_principal(
        format!("spiffe://cluster.local/ns/shop/sa/{principal}")
            .parse::<SpiffeId>()
            .unwrap(),
    )
}

async fn check(limiter: &GlobalRateLimiter, request: &AuthzRequest) -> Decision {
    limiter.check(request, SystemClock.now()).await
}

fn backend_error(decision: &Decision) -> &GlobalRateLimitError {
    let failure = decision
        .backend_failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a backend failure: {decision}"));
    failure
        .error
        .downcast_ref::<GlobalRateLimitError>()
        .expect("a GlobalRateLimitError")
}

const PER_CALLER: &str = "rules: [{name: per-caller, key: [source_principal], \
                          limit: {max_tokens: 5, tokens_per_fill: 1, fill_interval: 60s}}]";

#[tokio::test]
async fn two_limiters_share_one_limit() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let a = limiter(settings(&redis, "t1:"), PER_CALLER);
        let b = limiter(settings(&redis, "t1:"), PER_CALLER);
        let web = from("web");
        let mut remaining = Vec::new();
        for i in 0..8 {
            let limiter = if i % 2 == 0 { &a } else { &b };
            let decision = check(limiter, &web).await;
            assert!(decision.backend_failure.is_none(), "{decision}");
            if decision.is_allowed() {
                remaining.push(decision.quota.unwrap().remaining);
            } else {
                assert_eq!(decision.http_status(), Some(429));
                let Verdict::Limited { retry_after } = decision.verdict else {
                    unreachable!()
                };
                assert!(
                    retry_after > Duration::from_secs(50) && retry_after <= Duration::from_secs(60),
                    "{decision}"
                );
                let headers = decision.response_headers();
                assert!(
                    headers.contains(&("x-ratelimit-remaining", "0".to_owned())),
                    "{headers:?}"
                );
                assert!(
                    headers.contains(&("x-ratelimit-limit", "5".to_owned())),
                    "{headers:?}"
                );
            }
        }
        assert_eq!(
            remaining,
            [4, 3, 2, 1, 0],
            "five admitted in all, counted across both"
        );
        // Another caller has its own counter; another prefix is another limit.
        assert!(check(&b, &from("db")).await.is_allowed());
        let other_prefix = limiter(settings(&redis, "t1-other:"), PER_CALLER);
        assert!(check(&other_prefix, &web).await.is_allowed());
        assert_eq!(a.stats().ok + b.stats().ok, 6);
        assert_eq!(a.stats().over_limit + b.stats().over_limit, 3);
        assert_eq!(a.stats().error, 0);
        // The counter in Redis has the documented name and expires when full again.
        let ttl: i64 = redis
            .command("PTTL t1:per-caller:28=cluster.local/ns/shop/sa/web")
            .trim_start_matches(':')
            .parse()
            .unwrap();
        assert!(ttl > 250_000 && ttl <= 300_000, "pttl {ttl}");
    })
    .await;
}

/// Run as a child process by `two_processes_share_one_limit`; does nothing otherwise.
#[tokio::test]
async fn child_process_helper() {
    let Some(url) = std::env::var_os("MESH_RL_CHILD_REDIS_URL") else {
        return;
    };
    let settings = RedisLimiterSettings::new(url.to_string_lossy()).with_key_prefix("t2:");
    let limiter = limiter(settings, PER_CALLER);
    let mut admitted = 0;
    for _ in 0..20 {
        let decision = check(&limiter, &from("web")).await;
        assert!(decision.backend_failure.is_none(), "{decision}");
        admitted += usize::from(decision.is_allowed());
    }
    println!("admitted={admitted}");
}

#[tokio::test]
async fn two_processes_share_one_limit() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let limiter = limiter(settings(&redis, "t2:"), PER_CALLER);
        let web = from("web");
        // This process takes 3 of the 5 tokens, another process (this test binary, run for
        // `child_process_helper`) tries 20 times and gets the other 2, and then none is left
        // here either.
        for left in [4, 3, 2] {
            assert_eq!(check(&limiter, &web).await.quota.unwrap().remaining, left);
        }
        let child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MESH_RL_CHILD_REDIS_URL", redis.url())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run the child process");
        let stdout = String::from_utf8_lossy(&child.stdout);
        assert!(
            child.status.success(),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&child.stderr)
        );
        let there: usize = stdout
            .split("admitted=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("child printed no count:\n{stdout}"))
            .parse()
            .unwrap();
        assert_eq!(there, 2, "the other process got what was left");
        let d = check(&limiter, &web).await;
        assert_eq!(d.http_status(), Some(429), "{d}");
    })
    .await;
}

#[tokio::test]
async fn limit_refills_after_retry_after_and_resets_when_full() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let limiter = limiter(
            settings(&redis, "t3:"),
            "rules: [{name: all, limit: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 400ms}}]",
        );
        let request = from("web");
        assert!(check(&limiter, &request).await.is_allowed());
        assert!(check(&limiter, &request).await.is_allowed());
        let refused = check(&limiter, &request).await;
        let Verdict::Limited { retry_after } = refused.verdict else { panic!("{refused}") };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(400), "{refused}");
        let reset_after = refused.quota.unwrap().reset_after;
        assert!(reset_after > Duration::from_millis(400) && reset_after <= Duration::from_millis(800));
        // The server says when a token is back; it is (margin for the two clocks).
        tokio::time::sleep(retry_after + Duration::from_millis(30)).await;
        assert!(check(&limiter, &request).await.is_allowed());
        assert!(!check(&limiter, &request).await.is_allowed());
        // After the reset time the bucket is full (and the key gone: forgetting was lossless).
        let state = check(&limiter, &request).await;
        tokio::time::sleep(state.quota.unwrap().reset_after + Duration::from_millis(30)).await;
        assert_eq!(redis.command("EXISTS t3:all"), ":0");
        assert!(check(&limiter, &request).await.is_allowed());
        assert!(check(&limiter, &request).await.is_allowed());
        assert!(!check(&limiter, &request).await.is_allowed());
    })
    .await;
}

#[tokio::test]
async fn every_matching_rule_is_checked_atomically() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let limiter = limiter(
            settings(&redis, "t4:"),
            "rules:\n\
             - {name: all, limit: {max_tokens: 3, fill_interval: 60s}}\n\
             - {name: per-caller, key: [source_principal], limit: {max_tokens: 1, fill_interval: 60s}}\n",
        );
        let a = check(&limiter, &from("a")).await;
        assert_eq!(a.rule.as_deref(), Some("per-caller"), "fewest left decides: {a}");
        // a is over its own limit; refusing it must not spend the shared token.
        let again = check(&limiter, &from("a")).await;
        assert_eq!(again.rule.as_deref(), Some("per-caller"));
        assert!(!again.is_allowed());
        assert!(check(&limiter, &from("b")).await.is_allowed());
        assert!(check(&limiter, &from("c")).await.is_allowed());
        let d = check(&limiter, &from("d")).await;
        assert_eq!((d.is_allowed(), d.rule.as_deref()), (false, Some("all")), "{d}");
        assert_eq!(redis.command("EXISTS t4:per-caller:26=cluster.local/ns/shop/sa/d"), ":0", "refused: nothing written");
    })
    .await;
}

#[tokio::test]
async fn redis_killed_mid_test_fails_open_or_closed_and_recovers() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let open = limiter(settings(&redis, "t5:"), PER_CALLER);
        let closed = limiter(
            settings(&redis, "t5:").with_failure_mode(FailureMode::FailClosed),
            PER_CALLER,
        );
        let request = from("web");
        assert!(check(&open, &request).await.is_allowed());
        assert!(check(&closed, &request).await.is_allowed());

        redis.kill();
        let started = Instant::now();
        let d = check(&open, &request).await;
        assert!(started.elapsed() < CALL_TIMEOUT + Duration::from_millis(500));
        assert!(d.is_allowed(), "fail-open admits: {d}");
        assert!(
            matches!(
                backend_error(&d),
                GlobalRateLimitError::Redis(_) | GlobalRateLimitError::Timeout(_)
            ),
            "{d}"
        );
        assert!(d.to_string().starts_with("allowed (fail-open: "), "{d}");
        let d = check(&closed, &request).await;
        assert_eq!(d.verdict, Verdict::Unavailable, "{d}");
        assert_eq!(d.http_status(), Some(500));
        // Within the backoff, Redis is not asked again: answered at once.
        let started = Instant::now();
        let d = check(&closed, &request).await;
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(
            matches!(backend_error(&d), GlobalRateLimitError::Backoff { .. }),
            "{d}"
        );
        let stats = closed.stats();
        assert_eq!(
            (stats.error, stats.skipped, stats.failure_mode_denied),
            (1, 1, 2),
            "{stats:?}"
        );
        assert_eq!(open.stats().failure_mode_allowed, 1);

        // Back up (empty: nothing was persisted): checks reach Redis again after the backoff.
        redis.restart();
        for (limiter, left) in [(&open, 4), (&closed, 3)] {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let d = check(limiter, &request).await;
                if d.backend_failure.is_none() {
                    assert!(d.is_allowed());
                    assert_eq!(d.quota.unwrap().remaining, left, "a fresh, shared counter");
                    break;
                }
                assert!(Instant::now() < deadline, "no recovery: {d}");
                tokio::time::sleep(limiter.settings().backoff).await;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn frozen_redis_times_out_each_call() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let closed = limiter(
            settings(&redis, "t6:")
                .with_failure_mode(FailureMode::FailClosed)
                .with_backoff(Duration::ZERO),
            PER_CALLER,
        );
        let request = from("web");
        assert!(check(&closed, &request).await.is_allowed());
        redis.pause();
        for _ in 0..2 {
            let started = Instant::now();
            let d = check(&closed, &request).await;
            let took = started.elapsed();
            assert!(
                took >= CALL_TIMEOUT && took < CALL_TIMEOUT + Duration::from_millis(500),
                "{took:?}"
            );
            assert!(backend_error(&d).is_timeout(), "{d}");
            assert_eq!(d.verdict, Verdict::Unavailable);
        }
        let err = closed.try_check(&request).await.unwrap_err();
        assert!(err.is_timeout());
        assert!(
            err.to_string().contains("did not answer within 200ms"),
            "{err}"
        );
        assert_eq!((closed.stats().timeout, closed.stats().error), (2, 2));
        redis.resume();
        let d = check(&closed, &request).await;
        assert!(d.is_allowed() && d.backend_failure.is_none(), "{d}");
    })
    .await;
}

#[tokio::test]
async fn redis_down_at_startup_applies_the_failure_mode() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    bounded(async {
        let mut down = RedisServer::start().expect("second server");
        let url = down.url();
        down.kill();
        let open = GlobalRateLimiter::new(
            RedisLimiterSettings::new(url).with_timeout(CALL_TIMEOUT),
            config(PER_CALLER),
        )
        .expect("built without connecting");
        let started = Instant::now();
        let d = check(&open, &from("web")).await;
        assert!(started.elapsed() < CALL_TIMEOUT + Duration::from_millis(500));
        assert!(d.is_allowed());
        assert!(matches!(backend_error(&d), GlobalRateLimitError::Redis(_) | GlobalRateLimitError::Timeout(_)), "{d}");
        // A request no rule counts never touches Redis.
        let none = limiter(settings(&redis, "t7:"), "rules: [{name: x, match: {destination_ports: [1]}, limit: {max_tokens: 1, fill_interval: 1s}}]");
        assert!(none.try_check(&from("web")).await.unwrap().rule.is_none());
    })
    .await;
}

#[tokio::test]
async fn unusable_settings_are_refused() {
    let bad = [
        RedisLimiterSettings::new("http://127.0.0.1:1"),
        RedisLimiterSettings::new("redis://127.0.0.1:1").with_timeout(Duration::ZERO),
        RedisLimiterSettings::new("redis://127.0.0.1:1").with_backoff(Duration::from_secs(3600)),
        RedisLimiterSettings::new("redis://127.0.0.1:1").with_key_prefix("x".repeat(300)),
    ];
    for settings in bad {
        let err = GlobalRateLimiter::new(settings.clone(), config(PER_CALLER)).unwrap_err();
        assert!(
            matches!(err, GlobalRateLimitError::Settings(_)),
            "{settings:?}: {err}"
        );
        assert!(
            err.to_string()
                .starts_with("invalid global rate-limit settings: "),
            "{err}"
        );
    }
}

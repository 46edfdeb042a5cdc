//! [`GlobalRateLimiter`]: the rate-limit rules enforced across replicas through Redis.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use mesh_core::clock::Timestamp;
use mesh_policy::{
    authz::AuthzRequest,
    ratelimit::{
        CheckFuture, Decision, Quota, RateLimitConfig, RateLimitRule, RateLimiter, Verdict,
        rule_key,
    },
};
use redis::{
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::{
    GlobalRateLimitError, RedisLimiterSettings,
    script::{GCRA_LUA, counter_name, gcra_args, parse_reply},
};

/// Counts of what a [`GlobalRateLimiter`] decided, named like Envoy's ratelimit filter stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GlobalLimiterStats {
    /// Checks Redis admitted.
    pub ok: u64,
    /// Checks Redis refused (over a limit).
    pub over_limit: u64,
    /// Checks for which asking Redis failed (timeouts included).
    pub error: u64,
    /// Of those, the ones that timed out.
    pub timeout: u64,
    /// Checks answered by the failure mode during the backoff, without asking Redis.
    pub skipped: u64,
    /// Requests admitted because Redis could not answer (fail-open).
    pub failure_mode_allowed: u64,
    /// Requests refused because Redis could not answer (fail-closed).
    pub failure_mode_denied: u64,
}

#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    over_limit: AtomicU64,
    error: AtomicU64,
    timeout: AtomicU64,
    skipped: AtomicU64,
    failure_mode_allowed: AtomicU64,
    failure_mode_denied: AtomicU64,
}

#[derive(Debug)]
struct GlobalRule {
    rule: RateLimitRule,
    name: Arc<str>,
    interval_us: String,
    burst: u32,
}

/// Rate-limit rules whose buckets live in Redis, shared by every process using the same
/// server and key prefix: one limit for all replicas of a service.
///
/// The same [`RateLimitConfig`] as the local limiter, and the same meaning: each bucket holds
/// `max_tokens` and refills at `tokens_per_fill / fill_interval`. In Redis that is GCRA (one
/// timestamp per counter, updated by a Lua script that checks every matching rule and
/// consumes from all of them or none, atomically), chosen over a fixed window because a
/// window lets twice the limit through around its boundary and resets abruptly, while GCRA
/// gives token-bucket behaviour exactly, in O(1) memory per key, with an exact `retry-after`.
/// Time is the Redis server's, so replicas with different clocks agree; the `now` argument
/// of [`RateLimiter::check`] only times the failure backoff. Per-key counters expire once
/// full, so Redis memory follows active keys (`max_keys` is a local-limiter setting).
///
/// Every check has a timeout ([`RedisLimiterSettings::timeout`]); when Redis cannot answer,
/// [`RateLimiter::check`] applies the failure mode (fail-open by default), records the
/// [`GlobalRateLimitError`] in the decision and counts it ([`stats`](Self::stats)).
/// [`try_check`](Self::try_check) returns the error instead.
///
/// Build it inside a tokio runtime: it connects lazily (Redis may be down at startup) and
/// reconnects after failures on that runtime.
#[derive(Debug)]
pub struct GlobalRateLimiter {
    rules: Vec<GlobalRule>,
    settings: RedisLimiterSettings,
    connection: ConnectionManager,
    script: Script,
    counters: Counters,
    /// Nanoseconds (caller's clock) of the last failure, plus one; 0 = none.
    failed_at: AtomicU64,
}

impl GlobalRateLimiter {
    /// A limiter for `config`'s rules, with counters in the Redis server of `settings`.
    ///
    /// Does not connect yet: the first check does, so a limiter can be built while Redis is
    /// down. Fails only for unusable settings (bad URL, zero timeout, ...).
    pub fn new(
        settings: RedisLimiterSettings,
        config: RateLimitConfig,
    ) -> Result<Self, GlobalRateLimitError> {
        settings.validate()?;
        let client = Client::open(settings.url.as_str()).map_err(|e| {
            GlobalRateLimitError::Settings(format!(
                "url {:?}: {e} (expected redis://host:port[/db])",
                settings.url
            ))
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            // One attempt per reconnect: our timeout and backoff decide the pace.
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        let rules = (config.rules.into_iter())
            .map(|rule| {
                let (interval_us, burst) = gcra_args(&rule.limit);
                GlobalRule {
                    name: Arc::from(rule.name.as_str()),
                    rule,
                    interval_us,
                    burst,
                }
            })
            .collect();
        Ok(Self {
            rules,
            settings,
            connection,
            script: Script::new(GCRA_LUA),
            counters: Counters::default(),
            failed_at: AtomicU64::new(0),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &RedisLimiterSettings {
        &self.settings
    }

    /// What the limiter has decided so far.
    pub fn stats(&self) -> GlobalLimiterStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GlobalLimiterStats {
            ok: load(&c.ok),
            over_limit: load(&c.over_limit),
            error: load(&c.error),
            timeout: load(&c.timeout),
            skipped: load(&c.skipped),
            failure_mode_allowed: load(&c.failure_mode_allowed),
            failure_mode_denied: load(&c.failure_mode_denied),
        }
    }

    /// Asks Redis, within the timeout and ignoring the backoff, and returns its decision or
    /// the error (no failure mode applied, nothing counted).
    pub async fn try_check(
        &self,
        request: &AuthzRequest,
    ) -> Result<Decision, GlobalRateLimitError> {
        let mut matched: Vec<(&GlobalRule, String)> = Vec::new();
        for rule in &self.rules {
            if let Some(values) = rule_key(&rule.rule, request) {
                let name = counter_name(&self.settings.key_prefix, &rule.rule.name, &values);
                matched.push((rule, name));
            }
        }
        if matched.is_empty() {
            return Ok(Decision::unlimited());
        }
        let mut invocation = self.script.prepare_invoke();
        for (rule, name) in &matched {
            invocation.key(name.as_str());
            invocation.arg(rule.interval_us.as_str()).arg(rule.burst);
        }
        let mut connection = self.connection.clone();
        let timeout = self.settings.timeout;
        let reply: Vec<i64> =
            tokio::time::timeout(timeout, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| GlobalRateLimitError::Timeout(timeout))?
                .map_err(|e| {
                    // The connection's own response timeout (set to the same value) may fire
                    // first: report it as the timeout it is.
                    if e.is_timeout() {
                        GlobalRateLimitError::Timeout(timeout)
                    } else {
                        GlobalRateLimitError::Redis(e)
                    }
                })?;
        let (admitted, states) =
            parse_reply(&reply, matched.len()).map_err(GlobalRateLimitError::BadReply)?;
        // The deciding rule, as locally: fewest left when admitted, furthest retry if not.
        let mut decider = 0;
        for (i, state) in states.iter().enumerate() {
            let best = &states[decider];
            let better = if admitted {
                state.remaining < best.remaining
            } else {
                state.retry_after > best.retry_after
            };
            if better {
                decider = i;
            }
        }
        let (rule, _) = matched[decider];
        let state = states[decider];
        let verdict = if admitted {
            Verdict::Allowed
        } else {
            Verdict::Limited {
                retry_after: state.retry_after.max(Duration::from_micros(1)),
            }
        };
        let quota = Quota {
            limit: u64::from(rule.burst),
            remaining: state.remaining,
            reset_after: state.reset_after,
        };
        Ok(Decision::by_rule(verdict, Arc::clone(&rule.name), quota))
    }

    /// [`RateLimiter::check`] with the failure backoff timed by `now`.
    async fn check_at(&self, request: &AuthzRequest, now: Timestamp) -> Decision {
        let failed_at = self.failed_at.load(Ordering::Relaxed);
        if failed_at != 0 && !self.settings.backoff.is_zero() {
            let ago = now.saturating_duration_since(Timestamp::from_nanos(failed_at - 1));
            if ago < self.settings.backoff {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                let error = GlobalRateLimitError::Backoff {
                    ago,
                    backoff: self.settings.backoff,
                };
                return self.failure(error);
            }
        }
        match self.try_check(request).await {
            Ok(decision) => {
                self.failed_at.store(0, Ordering::Relaxed);
                let counter = match decision.verdict {
                    Verdict::Allowed if decision.rule.is_none() => None,
                    Verdict::Allowed => Some(&self.counters.ok),
                    _ => Some(&self.counters.over_limit),
                };
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                decision
            }
            Err(error) => {
                self.counters.error.fetch_add(1, Ordering::Relaxed);
                if error.is_timeout() {
                    self.counters.timeout.fetch_add(1, Ordering::Relaxed);
                }
                self.failed_at
                    .store(now.as_nanos().saturating_add(1), Ordering::Relaxed);
                tracing::warn!(%error, mode = %self.settings.failure_mode, "global rate limit unavailable");
                self.failure(error)
            }
        }
    }

    fn failure(&self, error: GlobalRateLimitError) -> Decision {
        let decision = Decision::backend_failed(self.settings.failure_mode, Arc::new(error));
        let counter = if decision.is_allowed() {
            &self.counters.failure_mode_allowed
        } else {
            &self.counters.failure_mode_denied
        };
        counter.fetch_add(1, Ordering::Relaxed);
        decision
    }
}

impl RateLimiter for GlobalRateLimiter {
    fn check<'a>(&'a self, request: &'a AuthzRequest, now: Timestamp) -> CheckFuture<'a> {
        CheckFuture::pending(self.check_at(request, now))
    }
}

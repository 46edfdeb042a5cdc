//! The [`RateLimiter`] trait shared by local and global limiters, and the local one.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use mesh_core::clock::Timestamp;

use super::{
    bucket::{BucketStatus, TokenBucket},
    config::RateLimitConfig,
    decision::{Decision, Quota, Verdict},
    keyed::{KeyHasher, KeyedBuckets, Slot},
    rule::{Attributes, RateLimitRule},
};
use crate::authz::AuthzRequest;

/// A rate limiter as the inbound path uses it: local and global (Redis) limiters alike.
///
/// `check` counts the request if it is admitted and says whether it is. The request is the
/// same [`AuthzRequest`] the authorizer takes; `now` is the caller's clock
/// ([`mesh_core::clock`]), which local limiters run on (global ones use the shared backend's
/// clock so that every replica agrees). The returned [`CheckFuture`] is ready at once for
/// local limiters (no allocation, no await point) and does I/O for global ones:
///
/// ```
/// # use mesh_policy::{authz::AuthzRequest, ratelimit::{RateLimiter, Decision}};
/// # use mesh_core::clock::{Clock, SystemClock};
/// async fn admit(limiter: &dyn RateLimiter, request: &AuthzRequest) -> Option<u16> {
///     let decision: Decision = limiter.check(request, SystemClock.now()).await;
///     decision.http_status() // None: proceed; Some(429) or Some(500): answer with it
/// }
/// ```
pub trait RateLimiter: Send + Sync {
    /// Decides `request` at `now`, consuming a token from every matching rule if admitted.
    fn check<'a>(&'a self, request: &'a AuthzRequest, now: Timestamp) -> CheckFuture<'a>;
}

impl<T: RateLimiter + ?Sized> RateLimiter for Arc<T> {
    fn check<'a>(&'a self, request: &'a AuthzRequest, now: Timestamp) -> CheckFuture<'a> {
        (**self).check(request, now)
    }
}

impl<T: RateLimiter + ?Sized> RateLimiter for Box<T> {
    fn check<'a>(&'a self, request: &'a AuthzRequest, now: Timestamp) -> CheckFuture<'a> {
        (**self).check(request, now)
    }
}

/// The future a [`RateLimiter::check`] returns: either an immediate decision or boxed I/O.
#[must_use = "a rate-limit check does nothing unless awaited"]
pub struct CheckFuture<'a>(Inner<'a>);

enum Inner<'a> {
    Ready(Option<Decision>),
    Pending(Pin<Box<dyn Future<Output = Decision> + Send + 'a>>),
}

impl<'a> CheckFuture<'a> {
    /// A decision already made (local limiters).
    pub fn ready(decision: Decision) -> Self {
        Self(Inner::Ready(Some(decision)))
    }

    /// A decision still to be made by `future` (global limiters).
    pub fn pending(future: impl Future<Output = Decision> + Send + 'a) -> Self {
        Self(Inner::Pending(Box::pin(future)))
    }

    /// The decision without awaiting, if it is already made; the future back otherwise.
    pub fn into_ready(self) -> Result<Decision, Self> {
        match self.0 {
            Inner::Ready(Some(decision)) => Ok(decision),
            other => Err(Self(other)),
        }
    }
}

impl Future for CheckFuture<'_> {
    type Output = Decision;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Decision> {
        match &mut self.get_mut().0 {
            // Polled again after completion: answer "allowed" rather than panic.
            Inner::Ready(decision) => {
                Poll::Ready(decision.take().unwrap_or_else(Decision::unlimited))
            }
            Inner::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl std::fmt::Debug for CheckFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Ready(d) => f.debug_tuple("CheckFuture::Ready").field(d).finish(),
            Inner::Pending(_) => f.write_str("CheckFuture::Pending"),
        }
    }
}

/// In-process token buckets for a [`RateLimitConfig`]: the state machine, free of I/O.
///
/// Each rule has one bucket, or with a `key` one bucket per distinct key value, kept in a
/// table of at most `max_keys` entries: a new key takes a free slot or the least recently
/// used bucket once that bucket has refilled completely (forgetting a full bucket changes
/// nothing); when every slot still remembers recent traffic, new keys share one overflow
/// bucket instead. Memory is therefore bounded, and a caller rotating keys can neither grow
/// it nor reset anyone else's bucket ([`overflowed`](Self::overflowed) counts such checks).
///
/// A request is admitted only if every matching rule has a token, and then takes one from
/// each; a refused request takes none. Rules are locked in file order, so concurrent checks
/// never deadlock and each check is atomic across its rules.
#[derive(Debug)]
pub struct LocalRateLimiter {
    rules: Vec<LocalRule>,
    hasher: KeyHasher,
    overflowed: AtomicU64,
}

#[derive(Debug)]
struct LocalRule {
    rule: RateLimitRule,
    name: Arc<str>,
    /// Created at the first check (buckets start full at that moment).
    state: Mutex<Option<Buckets>>,
}

#[derive(Debug)]
enum Buckets {
    Single(TokenBucket),
    Keyed(KeyedBuckets),
}

/// A matched rule during one check: its lock, and where its token comes from.
struct Held<'l> {
    rule: &'l LocalRule,
    state: MutexGuard<'l, Option<Buckets>>,
    slot: Slot,
}

impl Held<'_> {
    fn bucket(&mut self) -> Option<&mut TokenBucket> {
        match self.state.as_mut()? {
            Buckets::Single(bucket) => Some(bucket),
            Buckets::Keyed(table) => Some(table.bucket(self.slot)),
        }
    }
}

impl LocalRateLimiter {
    /// A limiter enforcing `config`'s rules.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            rules: (config.rules.into_iter())
                .map(|rule| LocalRule {
                    name: Arc::from(rule.name.as_str()),
                    rule,
                    state: Mutex::new(None),
                })
                .collect(),
            hasher: KeyHasher::default(),
            overflowed: AtomicU64::new(0),
        }
    }

    /// Decides `request` at `now` (see [`LocalRateLimiter`]): the synchronous form of
    /// [`RateLimiter::check`], for callers that hold the local limiter itself. (A different
    /// name, so that `check` on an `Arc<LocalRateLimiter>` is never ambiguous.)
    pub fn decide(&self, request: &AuthzRequest, now: Timestamp) -> Decision {
        let attributes = Attributes::new(request);
        let mut held: Vec<Held<'_>> = Vec::new();
        for rule in &self.rules {
            if !rule.rule.matches_attributes(&attributes) {
                continue;
            }
            let Some(values) = rule.rule.key_values(&attributes) else {
                continue;
            };
            let mut state = rule.state.lock().unwrap_or_else(PoisonError::into_inner);
            let params = &rule.rule.limit;
            let buckets = state.get_or_insert_with(|| {
                if rule.rule.key.is_empty() {
                    Buckets::Single(TokenBucket::full(params, now))
                } else {
                    Buckets::Keyed(KeyedBuckets::new(rule.rule.max_keys, params, now))
                }
            });
            let slot = match buckets {
                Buckets::Single(_) => Slot::Overflow,
                Buckets::Keyed(table) => {
                    let digest = self.hasher.digest(values.iter().map(|v| v.as_deref()));
                    let slot = table.slot(digest, params, now);
                    if slot == Slot::Overflow {
                        self.overflowed.fetch_add(1, Ordering::Relaxed);
                    }
                    slot
                }
            };
            let mut entry = Held { rule, state, slot };
            if let Some(bucket) = entry.bucket() {
                bucket.refill(params, now);
            }
            held.push(entry);
        }
        if held.is_empty() {
            return Decision::unlimited();
        }
        let admitted = held.iter_mut().all(|h| {
            let params = h.rule.rule.limit;
            h.bucket().is_some_and(|b| b.has_token(&params))
        });
        // The deciding rule: when admitted, the one with the fewest tokens left after taking;
        // when refused, the one whose next token is furthest away.
        let mut decider: Option<(&LocalRule, BucketStatus)> = None;
        for h in &mut held {
            let params = h.rule.rule.limit;
            let Some(bucket) = h.bucket() else { continue };
            if admitted {
                bucket.take(&params);
            }
            let status = bucket.status(&params);
            let better = match &decider {
                None => true,
                Some((_, best)) if admitted => status.remaining < best.remaining,
                Some((_, best)) => status.retry_after > best.retry_after,
            };
            if better {
                decider = Some((h.rule, status));
            }
        }
        let Some((rule, status)) = decider else {
            return Decision::unlimited();
        };
        let verdict = if admitted {
            Verdict::Allowed
        } else {
            Verdict::Limited {
                retry_after: status.retry_after.max(Duration::from_nanos(1)),
            }
        };
        let quota = Quota {
            limit: u64::from(rule.rule.limit.max_tokens()),
            remaining: status.remaining,
            reset_after: status.reset_after,
        };
        Decision::by_rule(verdict, Arc::clone(&rule.name), quota)
    }

    /// The rules enforced, in order.
    pub fn rules(&self) -> impl Iterator<Item = &RateLimitRule> {
        self.rules.iter().map(|r| &r.rule)
    }

    /// Per-key buckets currently held by the rule named `rule` (0 for unkeyed rules);
    /// `None` if there is no such rule.
    pub fn keys_in_use(&self, rule: &str) -> Option<usize> {
        let rule = self.rules.iter().find(|r| r.rule.name == rule)?;
        let state = rule.state.lock().unwrap_or_else(PoisonError::into_inner);
        Some(match state.as_ref() {
            Some(Buckets::Keyed(table)) => table.len(),
            _ => 0,
        })
    }

    /// Checks that found their rule's key table full of buckets still in use and were
    /// counted against the shared overflow bucket (a sign of key rotation or a too small
    /// `max_keys`).
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

impl RateLimiter for LocalRateLimiter {
    fn check<'a>(&'a self, request: &'a AuthzRequest, now: Timestamp) -> CheckFuture<'a> {
        CheckFuture::ready(self.decide(request, now))
    }
}

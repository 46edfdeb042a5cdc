//! What a limiter answers, and the HTTP status and headers that go with it.

use std::{error::Error, fmt, sync::Arc, time::Duration};

/// Whether a request may proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within every matching limit (or no limit applies, or the backend failed open).
    Allowed,
    /// Over a limit: answer 429 with `retry-after`.
    Limited {
        /// When a retry can succeed, if nothing else consumes the tokens first.
        retry_after: Duration,
    },
    /// The shared backend could not be asked and the limiter fails closed: refuse the
    /// request (Envoy answers 500 here by default; see [`Decision::http_status`]).
    Unavailable,
}

/// What to do when a shared backend (Redis) cannot answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FailureMode {
    /// Admit the request (Envoy's default, `failure_mode_deny: false`): an outage of the
    /// limiter must not become an outage of the service.
    #[default]
    FailOpen,
    /// Refuse the request ([`Verdict::Unavailable`]): for limits that protect something
    /// that must never be overrun.
    FailClosed,
}

impl fmt::Display for FailureMode {
    /// `fail-open` or `fail-closed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FailOpen => "fail-open",
            Self::FailClosed => "fail-closed",
        })
    }
}

/// The state of the deciding limit, for `x-ratelimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// The burst (`max_tokens`).
    pub limit: u64,
    /// Requests left right now.
    pub remaining: u64,
    /// Time until the limit is back to `limit` requests.
    pub reset_after: Duration,
}

/// A backend failure behind a fail-open or fail-closed decision.
#[derive(Clone, Debug)]
pub struct BackendFailure {
    /// The mode that was applied.
    pub mode: FailureMode,
    /// The error (downcast it to the backend's own type, such as mesh-client's
    /// `GlobalRateLimitError`, for details).
    pub error: Arc<dyn Error + Send + Sync>,
}

/// A rate-limit decision: the verdict, the rule that decided and the quota for headers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Decision {
    /// Proceed, limited, or refused because the backend is unavailable.
    pub verdict: Verdict,
    /// The deciding rule: the one that limited, or when allowed the matching rule with the
    /// fewest requests left. `None` when no rule matched (or the backend failed).
    pub rule: Option<Arc<str>>,
    /// That rule's quota; `None` when no rule matched or the backend could not say.
    pub quota: Option<Quota>,
    /// Set when the verdict comes from the failure mode instead of the backend.
    pub backend_failure: Option<BackendFailure>,
}

impl Decision {
    /// Allowed because no rule counts the request.
    pub fn unlimited() -> Self {
        Self {
            verdict: Verdict::Allowed,
            rule: None,
            quota: None,
            backend_failure: None,
        }
    }

    /// A decision by `rule`.
    pub fn by_rule(verdict: Verdict, rule: Arc<str>, quota: Quota) -> Self {
        Self {
            verdict,
            rule: Some(rule),
            quota: Some(quota),
            backend_failure: None,
        }
    }

    /// The failure mode's decision after a backend error: allowed (fail-open) or
    /// [`Verdict::Unavailable`] (fail-closed).
    pub fn backend_failed(mode: FailureMode, error: Arc<dyn Error + Send + Sync>) -> Self {
        Self {
            verdict: match mode {
                FailureMode::FailOpen => Verdict::Allowed,
                FailureMode::FailClosed => Verdict::Unavailable,
            },
            rule: None,
            quota: None,
            backend_failure: Some(BackendFailure { mode, error }),
        }
    }

    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allowed
    }

    /// The status to answer a refused request with: 429 when limited, 500 when the backend
    /// failed closed (Envoy's `status_on_error` default); `None` when allowed.
    pub fn http_status(&self) -> Option<u16> {
        match self.verdict {
            Verdict::Allowed => None,
            Verdict::Limited { .. } => Some(429),
            Verdict::Unavailable => Some(500),
        }
    }

    /// Response headers to add (lower-case names): `x-ratelimit-limit`,
    /// `x-ratelimit-remaining` and `x-ratelimit-reset` (seconds, rounded up) when a rule
    /// decided, as Envoy's `DRAFT_VERSION_03` headers; `retry-after` (whole seconds, at least
    /// 1) when limited.
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(4);
        if let Some(quota) = &self.quota {
            headers.push(("x-ratelimit-limit", quota.limit.to_string()));
            headers.push(("x-ratelimit-remaining", quota.remaining.to_string()));
            headers.push((
                "x-ratelimit-reset",
                ceil_secs(quota.reset_after).to_string(),
            ));
        }
        if let Verdict::Limited { retry_after } = self.verdict {
            headers.push(("retry-after", ceil_secs(retry_after).max(1).to_string()));
        }
        headers
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl fmt::Display for Decision {
    /// One line for logs: `limited by rule per-user (retry after 250ms; 0 of 10 left)`,
    /// `allowed by rule api (7 of 10 left)`, `allowed (no rule matched)`,
    /// `allowed (fail-open: redis timed out)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Allowed => "allowed",
            Verdict::Limited { .. } => "limited",
            Verdict::Unavailable => "refused",
        };
        f.write_str(verdict)?;
        if let Some(failure) = &self.backend_failure {
            return write!(f, " ({}: {})", failure.mode, failure.error);
        }
        let Some(rule) = &self.rule else {
            return f.write_str(" (no rule matched)");
        };
        write!(f, " by rule {rule} (")?;
        if let Verdict::Limited { retry_after } = self.verdict {
            write!(f, "retry after {retry_after:?}; ")?;
        }
        match &self.quota {
            Some(q) => write!(f, "{} of {} left)", q.remaining, q.limit),
            None => f.write_str("no quota)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::{Decision, FailureMode, Quota, Verdict};

    #[test]
    fn headers_and_status() {
        let quota = Quota {
            limit: 10,
            remaining: 0,
            reset_after: Duration::from_millis(1500),
        };
        let limited = Decision::by_rule(
            Verdict::Limited {
                retry_after: Duration::from_millis(100),
            },
            Arc::from("api"),
            quota,
        );
        assert_eq!(limited.http_status(), Some(429));
        assert_eq!(
            limited.response_headers(),
            [
                ("x-ratelimit-limit", "10".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", "2".to_owned()),
                ("retry-after", "1".to_owned()),
            ]
        );
        assert_eq!(
            limited.to_string(),
            "limited by rule api (retry after 100ms; 0 of 10 left)"
        );
        let open = Decision::backend_failed(FailureMode::FailOpen, Arc::new(std::fmt::Error));
        assert!(open.is_allowed());
        assert!(open.response_headers().is_empty());
        let closed = Decision::backend_failed(FailureMode::FailClosed, Arc::new(std::fmt::Error));
        assert_eq!(closed.http_status(), Some(500));
        assert_eq!(
            closed.to_string(),
            "refused (fail-closed: an error occurred when formatting an argument)"
        );
        assert_eq!(
            Decision::unlimited().to_string(),
            "allowed (no rule matched)"
        );
        assert_eq!(Decision::unlimited().http_status(), None);
    }
}

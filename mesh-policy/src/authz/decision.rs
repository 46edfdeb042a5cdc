//! What the engine decided, and why: every decision names the policy and rule behind it.

use std::fmt;

use super::model::PolicyId;

/// The outcome of [`Authorizer::evaluate`](super::Authorizer::evaluate).
///
/// `allowed` is the verdict of the DENY and ALLOW policies. When [`delegate`](Self::delegate)
/// is not empty, CUSTOM policies matched and Istio asks their providers first: the request is
/// allowed only if every provider allows it *and* `allowed` is true. [`Decision::verdict`]
/// combines the two.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision<'a> {
    /// Whether the DENY/ALLOW evaluation lets the request through.
    pub allowed: bool,
    /// Which step of the evaluation decided.
    pub action_taken: ActionTaken,
    /// The policy whose rule decided (`None` for the default outcomes).
    pub policy: Option<&'a PolicyId>,
    /// The index of the deciding rule in that policy's `rules`.
    pub rule_index: Option<usize>,
    /// Why, with the details an operator needs (see its `Display`).
    pub reason: Reason<'a>,
    /// CUSTOM policies that matched: the providers to ask, one entry per provider.
    pub delegate: Vec<Delegation<'a>>,
    /// AUDIT and dry-run policies that matched. They never change the decision.
    pub reported: Vec<Report<'a>>,
    /// What the decision would be if the dry-run policies were enforced too; `None` when no
    /// dry-run policy applies to the workload.
    pub dry_run: Option<DryRunVerdict<'a>>,
}

/// The step of Istio's evaluation order (CUSTOM, DENY, ALLOW) that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionTaken {
    /// A DENY policy matched: denied.
    Deny,
    /// An ALLOW policy matched: allowed.
    Allow,
    /// No ALLOW policy applies to the workload and nothing denied: allowed.
    NoAllowPolicies,
    /// ALLOW policies apply to the workload but none matched: denied.
    NoAllowMatched,
}

/// The explanation of a decision beyond policy and rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason<'a> {
    /// A rule matched. `assumed_http` lists the HTTP-only fields of a DENY rule that a raw TCP
    /// connection cannot show and that were therefore assumed to match (empty otherwise).
    RuleMatched {
        /// The fields assumed, as `to[0].operation.methods`.
        assumed_http: &'a [String],
    },
    /// No ALLOW policy applies to this workload.
    NoAllowPolicies,
    /// ALLOW policies apply and none of their rules matched.
    NoAllowRuleMatched {
        /// How many ALLOW policies apply.
        allow_policies: usize,
        /// On raw TCP, how many ALLOW rules were skipped because they need HTTP attributes.
        skipped_http_rules: usize,
    },
}

/// A CUSTOM policy's match: ask `provider` before letting the request through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delegation<'a> {
    /// The extension provider to ask.
    pub provider: &'a str,
    /// The first CUSTOM policy for that provider that matched.
    pub policy: &'a PolicyId,
    /// Its matching rule.
    pub rule_index: usize,
}

/// An AUDIT or dry-run policy that matched; for logs only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report<'a> {
    /// What kind of policy matched.
    pub kind: ReportKind,
    /// The policy.
    pub policy: &'a PolicyId,
    /// Its first matching rule.
    pub rule_index: usize,
    /// HTTP-only fields assumed to match on raw TCP (restrictive kinds only).
    pub assumed_http: &'a [String],
}

/// The kinds of [`Report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportKind {
    /// An AUDIT policy matched: the request should be audit-logged.
    Audit,
    /// A dry-run DENY policy matched: enforced, it would deny.
    DryRunDeny,
    /// A dry-run ALLOW policy matched.
    DryRunAllow,
}

/// The decision with dry-run policies enforced alongside the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DryRunVerdict<'a> {
    /// Whether the request would be allowed.
    pub allowed: bool,
    /// Which step would decide.
    pub action_taken: ActionTaken,
    /// The deciding policy, if a rule decided.
    pub policy: Option<&'a PolicyId>,
    /// The deciding rule.
    pub rule_index: Option<usize>,
}

/// The final answer once CUSTOM providers are taken into account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'d, 'a> {
    /// Let the request through.
    Allow,
    /// Refuse it.
    Deny,
    /// Let it through only if each of these providers allows it.
    AskProviders(&'d [Delegation<'a>]),
}

impl<'a> Decision<'a> {
    /// Combines the local verdict with CUSTOM delegation. A local deny needs no provider: the
    /// request is refused whatever they say (Envoy would still call them first).
    pub fn verdict(&self) -> Verdict<'_, 'a> {
        match (self.allowed, self.delegate.is_empty()) {
            (false, _) => Verdict::Deny,
            (true, true) => Verdict::Allow,
            (true, false) => Verdict::AskProviders(&self.delegate),
        }
    }
}

impl fmt::Display for ActionTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Deny => "DENY policy matched",
            Self::Allow => "ALLOW policy matched",
            Self::NoAllowPolicies => "no ALLOW policy applies",
            Self::NoAllowMatched => "no ALLOW policy matched",
        })
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RuleMatched { assumed_http: [] } => f.write_str("every part of the rule matched"),
            Self::RuleMatched { assumed_http } => write!(
                f,
                "raw TCP connection: the rule's HTTP conditions ({}) cannot be checked without \
                 HTTP and were assumed to match, as ztunnel does",
                assumed_http.join(", ")
            ),
            Self::NoAllowPolicies => {
                f.write_str("no ALLOW policy applies to this workload and no DENY policy matched")
            }
            Self::NoAllowRuleMatched {
                allow_policies,
                skipped_http_rules,
            } => {
                write!(
                    f,
                    "{allow_policies} ALLOW polic{} to this workload and no rule matched",
                    if *allow_policies == 1 {
                        "y applies"
                    } else {
                        "ies apply"
                    }
                )?;
                if *skipped_http_rules > 0 {
                    write!(
                        f,
                        "; {skipped_http_rules} ALLOW rule{} need{} HTTP attributes and cannot \
                         match a raw TCP connection",
                        if *skipped_http_rules == 1 { "" } else { "s" },
                        if *skipped_http_rules == 1 { "s" } else { "" }
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Decision<'_> {
    /// One line: `ALLOW|DENY: <step> [<policy> rule <n>]: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.allowed { "ALLOW" } else { "DENY" };
        write!(f, "{word}: {}", self.action_taken)?;
        if let (Some(policy), Some(rule)) = (self.policy, self.rule_index) {
            write!(f, " ({policy} rule {rule})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Audit => "AUDIT",
            Self::DryRunDeny => "dry-run DENY",
            Self::DryRunAllow => "dry-run ALLOW",
        })
    }
}

impl fmt::Display for Report<'_> {
    /// `AUDIT policy ns/name rule 0 matched`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} policy {} rule {} matched",
            self.kind, self.policy, self.rule_index
        )?;
        if !self.assumed_http.is_empty() {
            write!(
                f,
                " (HTTP conditions assumed on raw TCP: {})",
                self.assumed_http.join(", ")
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for DryRunVerdict<'_> {
    /// `would DENY: DENY policy matched (ns/name rule 0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.allowed { "ALLOW" } else { "DENY" };
        write!(f, "would {word}: {}", self.action_taken)?;
        if let (Some(policy), Some(rule)) = (self.policy, self.rule_index) {
            write!(f, " ({policy} rule {rule})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Delegation<'_> {
    /// `provider "x" (CUSTOM policy ns/name rule 0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "provider {:?} (CUSTOM policy {} rule {})",
            self.provider, self.policy, self.rule_index
        )
    }
}

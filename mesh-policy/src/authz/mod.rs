//! Istio `AuthorizationPolicy` (`security.istio.io/v1` and `v1beta1`), as a pure decision
//! engine.
//!
//! 1. [`parse_policies`] reads policy documents from YAML as written for Istio, strictly:
//!    unknown fields, values Istio would refuse and Istio features this mesh does not implement
//!    are errors naming the document and field ([`PolicyError`]).
//! 2. [`Authorizer::new`] keeps the policies that apply to one [`Workload`] (namespace, root
//!    namespace, `selector.matchLabels`) and compiles them into indexed matchers.
//! 3. [`Authorizer::evaluate`] decides an [`AuthzRequest`] (a raw TCP tunnel or an HTTP
//!    request) with Istio's semantics and returns a [`Decision`] that names the policy and
//!    rule that decided, the CUSTOM providers to consult, and the AUDIT and dry-run matches.
//!
//! Scope and differences from Istio, all deliberate:
//!
//! - Policies bind to workloads by selector only: `targetRef`/`targetRefs` (gateways,
//!   waypoints) are refused as unsupported, as are `serviceAccounts` and path templates.
//! - `source.namespace` / `namespaces` are read from Istio-form principals
//!   (`<td>/ns/<ns>/sa/<sa>`), as ztunnel does; other SPIFFE IDs have no namespace.
//! - Trust-domain aliases are not expanded: a principal matches its own trust domain only.
//! - Principals written with `spiffe://` are refused (Istio accepts them but they never match).
//! - `ports` and `when` values may be written as integers as well as strings.
//! - Raw TCP connections follow ztunnel's rule for HTTP-only attributes (see [`Authorizer`]);
//!   `remoteIpBlocks` and `connection.sni` are connection attributes here, the remote IP
//!   falling back to the peer's address as in Envoy.

mod compile;
mod condition;
mod decision;
mod engine;
mod error;
pub(crate) mod load;
mod model;
mod pattern;
mod request;
mod view;
mod workload;

pub use condition::{Condition, ConditionKey, Values};
pub use decision::{
    ActionTaken, Decision, Delegation, DryRunVerdict, Reason, Report, ReportKind, Verdict,
};
pub use engine::Authorizer;
pub use error::{PolicyError, PolicyErrorKind};
pub use load::{API_VERSIONS, parse_policies};
pub use model::{Action, AuthorizationPolicy, Operation, PolicyId, Rule, Source};
pub use pattern::StringPattern;
pub use request::{AuthzRequest, HttpAttributes, RequestAuth};
pub use workload::{DEFAULT_ROOT_NAMESPACE, Workload};

/// The annotation that turns a policy into a dry run: evaluated and reported, not enforced.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

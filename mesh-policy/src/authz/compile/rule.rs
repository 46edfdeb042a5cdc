//! One rule compiled for evaluation: its sources, operations and conditions as indexed sets.
//!
//! HTTP-only parts (methods, paths, hosts, headers, request principals, `request.auth.*`)
//! count as satisfied when the request has no HTTP attributes. The engine only lets that
//! happen for restrictive actions (DENY, CUSTOM, AUDIT), where assuming a match errs on the
//! side of refusing, as ztunnel does; ALLOW rules that need HTTP are skipped on raw TCP.

use std::net::IpAddr;

use super::{
    cidr::{CidrSet, PortSet},
    strings::StringSet,
};
use crate::authz::{
    condition::{Condition, ConditionKey, Values},
    model::{Operation, Rule, Source},
    pattern::StringPattern,
    view::{HttpView, View},
};

/// A rule ready to match, with where it came from.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    /// Index of the policy in the authorizer's list.
    pub(crate) policy: usize,
    /// Index of the rule in the policy's `rules`.
    pub(crate) rule_index: usize,
    from: Vec<SourceMatcher>,
    to: Vec<OperationMatcher>,
    when: Vec<ConditionMatcher>,
    /// Where the rule needs HTTP attributes; empty if raw TCP can satisfy it.
    pub(crate) http_fields: Box<[String]>,
}

impl CompiledRule {
    pub(crate) fn new(policy: usize, rule_index: usize, rule: &Rule) -> Self {
        Self {
            policy,
            rule_index,
            from: rule.from.iter().map(SourceMatcher::new).collect(),
            to: rule.to.iter().map(OperationMatcher::new).collect(),
            when: rule.when.iter().map(ConditionMatcher::new).collect(),
            http_fields: rule.http_fields().into_boxed_slice(),
        }
    }

    /// Whether the rule matches: some source, some operation, and every condition.
    pub(crate) fn matches(&self, v: &View<'_>) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(v)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(v)))
            && self.when.iter().all(|c| c.matches(v))
    }
}

/// A field's "any of these" and "none of these" sets. A missing attribute matches no value:
/// the positive side fails, the negative side holds (`notPrincipals` admits plaintext peers).
#[derive(Debug, Default)]
struct Field<S> {
    any: Option<S>,
    none: Option<S>,
}

type StrField = Field<StringSet>;

impl StrField {
    fn strings(any: &[StringPattern], none: &[StringPattern], ignore_case: bool) -> Self {
        let compile = |p: &[StringPattern]| (!p.is_empty()).then(|| StringSet::new(p, ignore_case));
        Self {
            any: compile(any),
            none: compile(none),
        }
    }

    /// For attributes with several values (audiences, list claims): "any" needs one value to
    /// match, "none" needs every value not to.
    fn check_all<'a>(
        &self,
        values: impl Iterator<Item = &'a str> + Clone,
        empty_present: bool,
    ) -> bool {
        let hit = |set: &StringSet| values.clone().any(|v| set.matches(v, empty_present));
        self.any.as_ref().is_none_or(hit) && !self.none.as_ref().is_some_and(hit)
    }

    fn check(&self, value: Option<&str>) -> bool {
        self.check_all(value.into_iter(), false)
    }

    /// [`check`](Self::check) for a value derived on demand: an unconstrained field never
    /// asks for it.
    fn check_lazy<'a>(&self, value: impl FnOnce() -> Option<&'a str>) -> bool {
        if self.any.is_none() && self.none.is_none() {
            return true;
        }
        self.check(value())
    }
}

impl Field<CidrSet> {
    fn ips(any: &[ipnet::IpNet], none: &[ipnet::IpNet]) -> Self {
        let compile = |b: &[ipnet::IpNet]| (!b.is_empty()).then(|| CidrSet::new(b));
        Self {
            any: compile(any),
            none: compile(none),
        }
    }

    fn check(&self, ip: IpAddr) -> bool {
        self.any.as_ref().is_none_or(|s| s.contains(ip))
            && !self.none.as_ref().is_some_and(|s| s.contains(ip))
    }
}

impl Field<PortSet> {
    fn ports(any: &[u16], none: &[u16]) -> Self {
        let compile = |p: &[u16]| (!p.is_empty()).then(|| PortSet::new(p));
        Self {
            any: compile(any),
            none: compile(none),
        }
    }

    fn check(&self, port: u16) -> bool {
        self.any.as_ref().is_none_or(|s| s.contains(port))
            && !self.none.as_ref().is_some_and(|s| s.contains(port))
    }
}

/// `from[].source`.
#[derive(Debug)]
struct SourceMatcher {
    principals: StrField,
    request_principals: StrField,
    namespaces: StrField,
    ip_blocks: Field<CidrSet>,
    remote_ip_blocks: Field<CidrSet>,
}

impl SourceMatcher {
    fn new(s: &Source) -> Self {
        Self {
            principals: StrField::strings(&s.principals, &s.not_principals, false),
            request_principals: StrField::strings(
                &s.request_principals,
                &s.not_request_principals,
                false,
            ),
            namespaces: StrField::strings(&s.namespaces, &s.not_namespaces, false),
            ip_blocks: Field::ips(&s.ip_blocks, &s.not_ip_blocks),
            remote_ip_blocks: Field::ips(&s.remote_ip_blocks, &s.not_remote_ip_blocks),
        }
    }

    fn matches(&self, v: &View<'_>) -> bool {
        self.principals.check(v.principal)
            && self.namespaces.check_lazy(|| v.namespace())
            && self.ip_blocks.check(v.source_ip)
            && self.remote_ip_blocks.check(v.remote_ip)
            && http_or_assumed(v, |h| {
                self.request_principals
                    .check(h.auth.and_then(|a| a.principal.as_deref()))
            })
    }
}

/// `to[].operation`.
#[derive(Debug)]
struct OperationMatcher {
    hosts: StrField,
    ports: Field<PortSet>,
    methods: StrField,
    paths: StrField,
}

impl OperationMatcher {
    fn new(o: &Operation) -> Self {
        Self {
            hosts: StrField::strings(&o.hosts, &o.not_hosts, true),
            ports: Field::ports(&o.ports, &o.not_ports),
            methods: StrField::strings(&o.methods, &o.not_methods, false),
            paths: StrField::strings(&o.paths, &o.not_paths, false),
        }
    }

    fn matches(&self, v: &View<'_>) -> bool {
        self.ports.check(v.port)
            && http_or_assumed(v, |h| {
                self.hosts.check(Some(&h.attributes.host))
                    && self.methods.check(Some(&h.attributes.method))
                    && self.paths.check(Some(h.path))
            })
    }
}

/// One `when` entry.
#[derive(Debug)]
enum ConditionMatcher {
    Strings(ConditionKey, StrField),
    Ips(ConditionKey, Field<CidrSet>),
    Ports(Field<PortSet>),
}

impl ConditionMatcher {
    fn new(c: &Condition) -> Self {
        let key = c.key.clone();
        match (&c.values, &c.not_values) {
            (Values::Ips(any), Values::Ips(none)) => Self::Ips(key, Field::ips(any, none)),
            (Values::Ports(any), Values::Ports(none)) => Self::Ports(Field::ports(any, none)),
            (Values::Strings(any), Values::Strings(none)) => {
                Self::Strings(key, StrField::strings(any, none, false))
            }
            // The loader gives both lists the kind of the key; an empty list of another kind
            // cannot occur, but if it did, "no values" is the faithful reading.
            (any, none) => Self::Strings(
                key,
                StrField::strings(&strings_of(any), &strings_of(none), false),
            ),
        }
    }

    fn matches(&self, v: &View<'_>) -> bool {
        match self {
            Self::Ports(field) => field.check(v.port),
            Self::Ips(key, field) => field.check(match key {
                ConditionKey::RemoteIp => v.remote_ip,
                ConditionKey::DestinationIp => v.destination_ip,
                _ => v.source_ip,
            }),
            Self::Strings(key, field) => match key {
                ConditionKey::SourceNamespace => field.check(v.namespace()),
                ConditionKey::SourcePrincipal => field.check(v.principal),
                ConditionKey::ConnectionSni => field.check(v.sni),
                ConditionKey::RequestHeader(name) => http_or_assumed(v, |h| {
                    let value = h.attributes.header(name);
                    field.check_all(value.as_deref().into_iter(), true)
                }),
                _ => http_or_assumed(v, |h| auth_check(key, field, h)),
            },
        }
    }
}

/// `request.auth.*` keys.
fn auth_check(key: &ConditionKey, field: &StrField, h: &HttpView<'_>) -> bool {
    let auth = h.auth;
    match key {
        ConditionKey::RequestPrincipal => field.check(auth.and_then(|a| a.principal.as_deref())),
        ConditionKey::RequestPresenter => field.check(auth.and_then(|a| a.presenter.as_deref())),
        ConditionKey::RequestAudiences => {
            let audiences = auth.map(|a| a.audiences.as_slice()).unwrap_or_default();
            field.check_all(audiences.iter().map(String::as_str), false)
        }
        ConditionKey::RequestClaim(path) => {
            let claim = auth.and_then(|a| path.iter().try_fold(&a.claims, |v, p| v.get(p)));
            // A string claim is one value; a list claim matches through any string in it.
            let items: &[serde_json::Value] = match claim {
                Some(serde_json::Value::Array(items)) => items,
                Some(single) => std::slice::from_ref(single),
                None => &[],
            };
            field.check_all(items.iter().filter_map(serde_json::Value::as_str), false)
        }
        _ => false,
    }
}

/// Runs an HTTP-only check, or assumes it holds on raw TCP (see the module docs).
fn http_or_assumed(v: &View<'_>, check: impl FnOnce(&HttpView<'_>) -> bool) -> bool {
    v.http.as_ref().is_none_or(check)
}

fn strings_of(values: &Values) -> Vec<StringPattern> {
    match values {
        Values::Strings(s) => s.clone(),
        Values::Ips(ips) => ips
            .iter()
            .map(|i| StringPattern::Exact(i.to_string()))
            .collect(),
        Values::Ports(ports) => ports
            .iter()
            .map(|p| StringPattern::Exact(p.to_string()))
            .collect(),
    }
}

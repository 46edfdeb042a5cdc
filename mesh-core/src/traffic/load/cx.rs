//! The converter's context: where it is, what it found wrong, how hosts are read.

use std::time::Duration;

use crate::{
    model::ServiceName,
    traffic::{HostPattern, TrafficErrorKind, duration::parse_duration_or_zero, parse_duration},
};

/// One problem, at a path relative to what is being converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Written with Istio's field names; the mesh config loader translates it.
    pub(crate) path: String,
    pub(crate) kind: TrafficErrorKind,
    pub(crate) reason: String,
}

/// How host names are read.
#[derive(Clone, Debug)]
pub(crate) enum Hosts {
    /// Istio documents: short names expand in the resource's namespace; names are validated
    /// as istiod does (lowercase RFC 1123).
    Istio {
        namespace: String,
        domain_suffix: String,
    },
    /// The mesh config: service names as its `host` fields take them (case-insensitive).
    MeshConfig,
}

/// Collects problems while converting, so one pass reports all of them.
#[derive(Debug)]
pub(crate) struct Cx {
    pub(crate) problems: Vec<Problem>,
    pub(crate) hosts: Hosts,
}

/// `base.field`, or `field` at the top.
pub(crate) fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_owned()
    } else {
        format!("{base}.{field}")
    }
}

impl Cx {
    pub(crate) fn new(hosts: Hosts) -> Self {
        Self {
            problems: Vec::new(),
            hosts,
        }
    }

    fn push(&mut self, path: String, kind: TrafficErrorKind, reason: String) {
        self.problems.push(Problem { path, kind, reason });
    }

    /// A value Istio would refuse.
    pub(crate) fn invalid(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.push(path.into(), TrafficErrorKind::Invalid, reason.into());
    }

    /// A valid Istio feature this mesh does not implement.
    pub(crate) fn unsupported(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.push(path.into(), TrafficErrorKind::Unsupported, reason.into());
    }

    /// Refuses `field` of `base` when it is set.
    pub(crate) fn refuse<T>(&mut self, base: &str, field: &str, value: &Option<T>, reason: &str) {
        if value.is_some() {
            self.unsupported(join(base, field), reason);
        }
    }

    /// An Istio duration (at least 1 ms, whole milliseconds).
    pub(crate) fn duration(&mut self, path: String, text: &Option<String>) -> Option<Duration> {
        let text = text.as_ref()?;
        parse_duration(text)
            .map_err(|e| self.invalid(path, e.to_string()))
            .ok()
    }

    /// An Istio duration where `0s` is also valid (it switches the setting off).
    pub(crate) fn duration_or_zero(
        &mut self,
        path: String,
        text: &Option<String>,
    ) -> Option<Duration> {
        let text = text.as_ref()?;
        parse_duration_or_zero(text)
            .map_err(|e| self.invalid(path, e.to_string()))
            .ok()
    }

    /// A port number from `port: { number: N }` or `port: N`.
    pub(crate) fn port(&mut self, path: String, number: Option<u32>) -> Option<u16> {
        match number {
            None => {
                self.invalid(path, "a port number is required");
                None
            }
            Some(n) => match u16::try_from(n) {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    self.invalid(
                        path,
                        format!("port number {n} must be in the range 1..65535"),
                    );
                    None
                }
            },
        }
    }

    /// The host a rule applies to (wildcards allowed).
    pub(crate) fn host_pattern(&mut self, path: String, host: &str) -> Option<HostPattern> {
        match &self.hosts {
            Hosts::Istio {
                namespace,
                domain_suffix,
            } => {
                let expanded = HostPattern::expand_short_name(host, namespace, domain_suffix);
                HostPattern::parse(&expanded)
                    .map_err(|e| self.invalid(path, e.to_string()))
                    .ok()
            }
            Hosts::MeshConfig => ServiceName::new(host)
                .map(|n| HostPattern::exact(&n))
                .map_err(|e| self.invalid(path, e.to_string()))
                .ok(),
        }
    }

    /// A route's destination host: one service, no wildcard.
    pub(crate) fn destination_host(&mut self, path: String, host: &str) -> Option<String> {
        let pattern = self.host_pattern(path.clone(), host)?;
        if pattern.is_wildcard() {
            self.unsupported(
                path,
                format!("{host:?}: a route destination must be one service, not a wildcard"),
            );
            return None;
        }
        Some(pattern.as_str().to_owned())
    }
}

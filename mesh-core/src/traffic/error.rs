//! Why traffic documents were refused.

use std::fmt;

use thiserror::Error;

/// What kind of problem a [`TrafficError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrafficErrorKind {
    /// Not YAML, a field Istio does not have, or a value of the wrong type.
    Syntax,
    /// A value Istio would refuse (zero duration, bad host, duplicate subset, ...).
    Invalid,
    /// Valid Istio, but a feature this mesh does not implement. Refused rather than ignored,
    /// so no traffic behaves differently from what its author wrote.
    Unsupported,
}

/// A traffic document could not be loaded.
///
/// Names the document (1-based, in file order), the resource when its metadata was readable,
/// and the field path (`spec.trafficPolicy.portLevelSettings[0].port.number`). Prefix the file
/// name when showing it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub struct TrafficError {
    /// Position of the document in its file, counting from 1.
    pub document: usize,
    /// `DestinationRule shop/reviews`, when the metadata could be read.
    pub resource: Option<String>,
    /// The offending field, or `.` for the document as a whole.
    pub path: String,
    /// What kind of problem it is.
    pub kind: TrafficErrorKind,
    /// What is wrong and, where possible, what would be accepted.
    pub reason: String,
}

impl TrafficError {
    pub(crate) fn new(
        document: usize,
        path: impl Into<String>,
        kind: TrafficErrorKind,
        reason: impl Into<String>,
    ) -> Self {
        let path = path.into();
        Self {
            document,
            resource: None,
            path: if path.is_empty() {
                ".".to_owned()
            } else {
                path
            },
            kind,
            reason: reason.into(),
        }
    }

    /// The reason with `not supported: ` in front for [`TrafficErrorKind::Unsupported`], as
    /// the error displays it.
    pub fn message(&self) -> String {
        match self.kind {
            TrafficErrorKind::Unsupported => format!("not supported: {}", self.reason),
            TrafficErrorKind::Syntax | TrafficErrorKind::Invalid => self.reason.clone(),
        }
    }
}

impl fmt::Display for TrafficError {
    /// `document 2 (DestinationRule shop/reviews): spec.host: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(resource) = &self.resource {
            write!(f, " ({resource})")?;
        }
        write!(f, ": {}: {}", self.path, self.message())
    }
}

/// Every problem found in a file of traffic documents (at least one).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub struct TrafficErrors(pub Vec<TrafficError>);

impl TrafficErrors {
    /// The problems, in file order.
    pub fn errors(&self) -> &[TrafficError] {
        &self.0
    }
}

impl fmt::Display for TrafficErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Which kind of resource a [`ReferenceError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A DestinationRule.
    DestinationRule,
    /// A VirtualService.
    VirtualService,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DestinationRule => "DestinationRule",
            Self::VirtualService => "VirtualService",
        })
    }
}

/// Resources that are each valid but do not fit together: a route naming a subset no
/// DestinationRule defines, two rules for one host.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{kind} {namespace}/{name}: {path}: {reason}")]
#[non_exhaustive]
pub struct ReferenceError {
    /// The kind of the resource at fault.
    pub kind: ResourceKind,
    /// Its position in the list it was given in.
    pub index: usize,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The field, relative to the resource's spec (`http[0].route[1].destination.subset`,
    /// `host`, `hosts[0]`).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

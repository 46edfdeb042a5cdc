//! Why a policy document was refused.

use std::fmt;

use thiserror::Error;

use super::model::PolicyId;

/// What kind of problem a [`PolicyError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// Not YAML, a field Istio does not have, or a value of the wrong type.
    Syntax,
    /// A value Istio would refuse (bad CIDR, empty source, DENY without rules, ...).
    Invalid,
    /// Valid Istio, but a feature this mesh does not implement (`targetRef`, path templates,
    /// ...). Refused rather than ignored, so no policy is weaker than its author meant.
    Unsupported,
}

/// A policy document could not be loaded.
///
/// Names the document (1-based, in file order), the policy when its metadata was readable, and
/// the field path in the form `spec.rules[0].from[1].source.ipBlocks[2]`. Files are the
/// caller's business: prefix the file name when showing it (`policy.yaml: document 2: ...`).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub struct PolicyError {
    /// Position of the document in the file, counting from 1 (documents are separated by
    /// `---`).
    pub document: usize,
    /// `namespace/name`, when the metadata could be read.
    pub policy: Option<PolicyId>,
    /// The offending field, or `.` for the document as a whole.
    pub path: String,
    /// What kind of problem it is.
    pub kind: PolicyErrorKind,
    /// What is wrong and, where possible, what would be accepted.
    pub reason: String,
}

impl PolicyError {
    /// An error about `path` in document `document` (1-based).
    pub(crate) fn new(
        document: usize,
        path: impl Into<String>,
        kind: PolicyErrorKind,
        reason: impl Into<String>,
    ) -> Self {
        let path = path.into();
        Self {
            document,
            policy: None,
            path: if path.is_empty() {
                ".".to_owned()
            } else {
                path
            },
            kind,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    /// `document 2 (shop/allow-web): spec.rules[0].to[0].operation.ports[0]: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(id) = &self.policy {
            write!(f, " ({id})")?;
        }
        let kind = match self.kind {
            PolicyErrorKind::Unsupported => "not supported: ",
            PolicyErrorKind::Syntax | PolicyErrorKind::Invalid => "",
        };
        write!(f, ": {}: {kind}{}", self.path, self.reason)
    }
}

use thiserror::Error;

/// A configuration document is invalid. The message names the field path and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid YAML/JSON, or a field is unknown or has the wrong type.
    #[error("{path}: {reason}")]
    Syntax {
        /// Where (`services[0].ports[1].port`, or `.` for the document itself).
        path: String,
        /// What the parser said, including the line and column when known.
        reason: String,
    },
    /// A field parsed but its value is not acceptable.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where.
        path: String,
        /// Why, and what would be accepted.
        reason: String,
    },
    /// A valid setting (as Istio defines it) that this mesh does not implement; refused rather
    /// than ignored.
    #[error("{path}: not supported: {reason}")]
    Unsupported {
        /// Where.
        path: String,
        /// What is not implemented, and what to do instead.
        reason: String,
    },
}

impl ConfigError {
    /// The path of the offending field.
    pub fn path(&self) -> &str {
        match self {
            Self::Syntax { path, .. }
            | Self::Invalid { path, .. }
            | Self::Unsupported { path, .. } => path,
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

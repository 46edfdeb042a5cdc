use thiserror::Error;

/// Why a string is not a valid service hostname.
///
/// Service names are DNS hostnames (RFC 1123 labels), the form Kubernetes and Istio give
/// services (`reviews.shop.svc.cluster.local`). Each variant names the offending part so the
/// operator can find the config entry that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ServiceNameError {
    /// The name is empty.
    #[error(
        "service name is empty: expected a DNS hostname such as \"reviews.shop.svc.cluster.local\""
    )]
    Empty,
    /// The name is longer than DNS allows.
    #[error("service name is {len} bytes long; DNS hostnames have at most 253")]
    TooLong {
        /// Length in bytes (without a trailing dot).
        len: usize,
    },
    /// Two dots in a row, or a leading dot.
    #[error("service name {name:?} has an empty label ('..' or a leading '.')")]
    EmptyLabel {
        /// The name as written (truncated to 64 bytes).
        name: String,
    },
    /// A label longer than 63 bytes.
    #[error("service name label {label:?} is {len} bytes long; DNS labels have at most 63")]
    LabelTooLong {
        /// The label (truncated to 64 bytes).
        label: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside letters, digits and `-`.
    #[error(
        "service name {name:?} contains {character:?}; only letters, digits, '-' and '.' are allowed (wildcards are not supported)"
    )]
    BadChar {
        /// The name as written (truncated to 64 bytes).
        name: String,
        /// The first offending character.
        character: char,
    },
    /// A label that starts or ends with `-`.
    #[error("service name label {label:?} starts or ends with '-', which DNS forbids")]
    HyphenAtEdge {
        /// The label.
        label: String,
    },
}

/// Why a string is not a valid `region/zone/subzone` locality.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LocalityError {
    /// More than three `/`-separated parts.
    #[error("locality {input:?} has more than three parts; expected region/zone/subzone")]
    TooManyParts {
        /// The input as written (truncated to 64 bytes).
        input: String,
    },
    /// A later part is set while an earlier one is empty, such as `/zone-a`.
    #[error(
        "locality {input:?} names a zone or subzone without the enclosing region/zone; expected region/zone/subzone"
    )]
    MissingParent {
        /// The input as written (truncated to 64 bytes).
        input: String,
    },
}

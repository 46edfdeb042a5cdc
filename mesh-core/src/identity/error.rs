use thiserror::Error;

/// Why a string is not a valid SPIFFE ID or trust domain.
///
/// Each variant names the offending part so an operator can fix the config or certificate that
/// carried it. The rules are those of the SPIFFE ID standard.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The input was empty.
    #[error("SPIFFE ID is empty: expected spiffe://<trust-domain>/<path>")]
    Empty,
    /// The input is longer than the standard's 2048-byte limit.
    #[error("SPIFFE ID is {len} bytes long; the SPIFFE standard allows at most 2048")]
    TooLong {
        /// Length of the rejected input in bytes.
        len: usize,
    },
    /// The scheme is missing or is not `spiffe`.
    #[error("SPIFFE ID {input:?} must start with \"spiffe://\"")]
    WrongScheme {
        /// The rejected input (truncated to 64 bytes).
        input: String,
    },
    /// The scheme is `spiffe` in another case, such as `SPIFFE://`.
    #[error("SPIFFE ID scheme must be lowercase \"spiffe://\", found {scheme:?}")]
    SchemeNotLowercase {
        /// The scheme as written.
        scheme: String,
    },
    /// Nothing between `spiffe://` and the path.
    #[error("SPIFFE ID has no trust domain: expected spiffe://<trust-domain>/<path>")]
    MissingTrustDomain,
    /// The trust domain is longer than 255 bytes.
    #[error("trust domain is {len} bytes long; at most 255 are allowed")]
    TrustDomainTooLong {
        /// Length of the trust domain in bytes.
        len: usize,
    },
    /// The authority carries a port, which SPIFFE IDs forbid.
    #[error("SPIFFE ID trust domain {authority:?} has a port; SPIFFE IDs must not carry one")]
    HasPort {
        /// The authority as written.
        authority: String,
    },
    /// The authority carries user info (`user@`), which SPIFFE IDs forbid.
    #[error(
        "SPIFFE ID trust domain {authority:?} has user info ('@'); SPIFFE IDs must not carry it"
    )]
    HasUserInfo {
        /// The authority as written.
        authority: String,
    },
    /// The trust domain contains a character outside `[a-z0-9._-]`.
    #[error(
        "trust domain {trust_domain:?} contains {character:?}; only lowercase letters, digits, '.', '-' and '_' are allowed"
    )]
    BadTrustDomainChar {
        /// The trust domain as written.
        trust_domain: String,
        /// The first offending character.
        character: char,
    },
    /// A `?query` part, which SPIFFE IDs forbid.
    #[error("SPIFFE ID has a query ('?'); SPIFFE IDs must not carry one")]
    HasQuery,
    /// A `#fragment` part, which SPIFFE IDs forbid.
    #[error("SPIFFE ID has a fragment ('#'); SPIFFE IDs must not carry one")]
    HasFragment,
    /// Two slashes in a row in the path.
    #[error("SPIFFE ID path {path:?} has an empty segment ('//')")]
    EmptySegment {
        /// The path as written.
        path: String,
    },
    /// A `.` or `..` path segment.
    #[error("SPIFFE ID path {path:?} has a '.' or '..' segment, which the standard forbids")]
    DotSegment {
        /// The path as written.
        path: String,
    },
    /// The path ends with `/`.
    #[error("SPIFFE ID path {path:?} ends with '/'; remove the trailing slash")]
    TrailingSlash {
        /// The path as written.
        path: String,
    },
    /// A path segment contains a character outside `[a-zA-Z0-9._-]`.
    #[error(
        "SPIFFE ID path segment {segment:?} contains {character:?}; only letters, digits, '.', '-' and '_' are allowed"
    )]
    BadPathChar {
        /// The offending segment.
        segment: String,
        /// The first offending character.
        character: char,
    },
    /// A trust domain was expected but the input is a SPIFFE ID with a path.
    #[error(
        "expected a trust domain, but {input:?} is a workload SPIFFE ID (it has the path {path:?}); pass only the trust domain, such as \"example.org\""
    )]
    NotATrustDomain {
        /// The input (truncated to 64 bytes).
        input: String,
        /// Its path.
        path: String,
    },
    /// A path passed to a constructor does not start with `/`.
    #[error("SPIFFE ID path {path:?} must start with '/'")]
    NoLeadingSlash {
        /// The path as given.
        path: String,
    },
}

/// Shortens user input for inclusion in an error message, on a character boundary.
pub(crate) fn excerpt(input: &str) -> String {
    const MAX: usize = 64;
    if input.len() <= MAX {
        return input.to_owned();
    }
    let mut end = MAX;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &input[..end])
}

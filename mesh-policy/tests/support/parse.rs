//! Helpers for the loader tests: a policy document head and error assertions.

use mesh_policy::authz::{PolicyError, PolicyErrorKind, parse_policies};

pub const HEAD: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                    metadata: {name: p, namespace: shop}\n";

/// Parses `spec` (YAML under `spec:`) as the second document of a file, after a valid one,
/// and returns the error, checking it points at document 2 and policy shop/p.
pub fn spec_error(spec: &str) -> PolicyError {
    let yaml = format!("{HEAD}spec: {{}}\n---\n{HEAD}spec:\n{spec}");
    let err = parse_policies(&yaml).expect_err("should be refused");
    assert_eq!(err.document, 2, "{err}");
    err
}

/// Asserts `err` is about `path`, of `kind`, with `needle` in its reason.
pub fn assert_error(err: &PolicyError, path: &str, kind: PolicyErrorKind, needle: &str) {
    assert_eq!(err.path, path, "{err}");
    assert_eq!(err.kind, kind, "{err}");
    assert!(err.reason.contains(needle), "{needle:?} not in: {err}");
}

//! Files that mix the `security.istio.io` kinds, as Istio users keep them.
//!
//! Each kind has its own strict loader ([`parse_policies`], [`parse_request_authentications`],
//! [`parse_peer_authentications`]); a workload's policy file usually holds several kinds, so
//! this reads each document's `kind` and hands the document to its loader, keeping the
//! document's position in the file in every error.

use serde::Deserialize;

use crate::{
    authn::jwt::{RequestAuthentication, parse_request_authentications},
    authz::{AuthorizationPolicy, PolicyError, PolicyErrorKind, parse_policies},
    peer_authn::{PeerAuthentication, parse_peer_authentications},
};

/// The security policy documents of one or more files, by kind, in file order.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SecurityPolicies {
    /// `AuthorizationPolicy` documents.
    pub authorization: Vec<AuthorizationPolicy>,
    /// `RequestAuthentication` documents.
    pub request_authentication: Vec<RequestAuthentication>,
    /// `PeerAuthentication` documents.
    pub peer_authentication: Vec<PeerAuthentication>,
}

impl SecurityPolicies {
    /// Adds the documents of another file.
    pub fn extend(&mut self, other: Self) {
        self.authorization.extend(other.authorization);
        self.request_authentication
            .extend(other.request_authentication);
        self.peer_authentication.extend(other.peer_authentication);
    }

    /// How many documents were read.
    pub fn len(&self) -> usize {
        self.authorization.len()
            + self.request_authentication.len()
            + self.peer_authentication.len()
    }

    /// Whether no document was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads every document of `yaml`, whatever its `security.istio.io` kind. A document of any
/// other kind is an error (a Deployment in a policy file is almost certainly a mistake), as is
/// the first invalid document: a file is accepted whole or not at all.
///
/// ```
/// let yaml = r#"
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: { name: default, namespace: shop }
/// spec: { mtls: { mode: STRICT } }
/// ---
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: { name: deny-all, namespace: shop }
/// spec: {}
/// "#;
/// let policies = mesh_policy::parse_security_policies(yaml)?;
/// assert_eq!(policies.peer_authentication.len(), 1);
/// assert_eq!(policies.authorization.len(), 1);
/// # Ok::<(), mesh_policy::authz::PolicyError>(())
/// ```
pub fn parse_security_policies(yaml: &str) -> Result<SecurityPolicies, PolicyError> {
    let mut out = SecurityPolicies::default();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let number = index + 1;
        let error = |kind, reason: String| PolicyError::new(number, "", kind, reason);
        let value = serde_yaml_ng::Value::deserialize(document)
            .map_err(|e| error(PolicyErrorKind::Syntax, e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_owned();
        // Re-serialized so each loader sees exactly one document; errors get the real number.
        let text = serde_yaml_ng::to_string(&value)
            .map_err(|e| error(PolicyErrorKind::Syntax, e.to_string()))?;
        let renumber = |mut e: PolicyError| {
            e.document = number;
            e
        };
        match kind.as_str() {
            "AuthorizationPolicy" => out
                .authorization
                .extend(parse_policies(&text).map_err(renumber)?),
            "RequestAuthentication" => out
                .request_authentication
                .extend(parse_request_authentications(&text).map_err(renumber)?),
            "PeerAuthentication" => out
                .peer_authentication
                .extend(parse_peer_authentications(&text).map_err(renumber)?),
            "" => {
                return Err(error(
                    PolicyErrorKind::Invalid,
                    "kind: missing; expected AuthorizationPolicy, RequestAuthentication or \
                     PeerAuthentication"
                        .to_owned(),
                ));
            }
            other => {
                return Err(error(
                    PolicyErrorKind::Unsupported,
                    format!(
                        "kind: {other} is not a security policy; policy files hold \
                         AuthorizationPolicy, RequestAuthentication and PeerAuthentication"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

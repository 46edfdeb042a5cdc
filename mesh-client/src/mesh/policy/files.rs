//! The policy files: compiled into one [`Documents`] set, watched, and swapped as a whole when
//! an edit is valid.

use std::sync::{Arc, PoisonError};

use mesh_core::config::WorkloadSettings;
use mesh_policy::{
    SecurityPolicies,
    authn::{Authenticator, JwksStore},
    authz::{Authorizer, Workload},
    parse_security_policies,
    peer_authn::PeerAuthenticator,
};

use super::Policies;
use crate::{
    authn::{JwksClient, JwksRefreshConfig, JwksRefresher, JwksTls},
    mesh::MeshError,
};

/// What the policy files say, compiled for this workload. Replaced as a whole when the files
/// change, so a request sees one consistent set.
pub(super) struct Documents {
    pub(super) authorizer: Authorizer,
    pub(super) authenticator: Authenticator,
    /// Keeps remote JWKS fresh; dropped with the documents.
    _jwks: Option<JwksRefresher>,
    /// PeerAuthentication resolved for this workload: which ports accept plaintext.
    pub(super) peer_authn: PeerAuthenticator,
}

impl Documents {
    /// Reads and compiles every policy file. Remote JWKS are fetched in the background; until a
    /// key set arrives, tokens of its issuer are refused (never accepted).
    pub(super) fn compile(settings: &WorkloadSettings) -> Result<Self, MeshError> {
        let all = read_files(settings)?;
        let workload = policy_workload(settings);
        let store = JwksStore::new();
        let authenticator =
            Authenticator::new(&all.request_authentication, &workload, store.clone());
        let remote = authenticator.remote_jwks();
        let jwks = (!remote.is_empty()).then(|| {
            JwksRefresher::spawn(
                JwksClient::new(&JwksTls::default()),
                store,
                remote,
                JwksRefreshConfig::default(),
            )
        });
        Ok(Self {
            authorizer: Authorizer::new(&all.authorization, &workload),
            peer_authn: PeerAuthenticator::new(&all.peer_authentication, &workload),
            authenticator,
            _jwks: jwks,
        })
    }
}

/// How reloading the policy files has gone, for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyStatus {
    /// Edits of the policy files that were applied.
    pub reloads: u64,
    /// Edits that were refused (the policies in force before them stayed in force).
    pub rejected: u64,
    /// Why the latest refused edit was refused (file, field, reason), until an edit applies.
    pub last_error: Option<String>,
}

/// How often the policy files are checked for edits.
const POLICY_FILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The workload as Istio's selectors see it.
fn policy_workload(settings: &WorkloadSettings) -> Workload {
    let mut workload = Workload::new(
        settings
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
    );
    for (key, value) in &settings.labels {
        workload = workload.with_label(key.clone(), value.clone());
    }
    workload
}

/// A CUSTOM policy must name a configured `extension_providers` entry: refused at load time
/// (Istio would deny its requests at run time instead, which is harder to diagnose).
fn check_providers(
    settings: &WorkloadSettings,
    shown: &str,
    policies: &SecurityPolicies,
) -> Result<(), MeshError> {
    for policy in &policies.authorization {
        if let mesh_policy::authz::Action::Custom { provider } = &policy.action
            && !settings
                .extension_providers
                .iter()
                .any(|p| p.name == *provider)
        {
            let known: Vec<&str> = settings
                .extension_providers
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return Err(MeshError::Policy {
                path: shown.to_owned(),
                reason: format!(
                    "CUSTOM policy {}: spec.provider.name {provider:?} is not a configured \
                     extension provider (configured: {}); add it to `extension_providers` \
                     in the mesh config",
                    policy.id,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
    }
    Ok(())
}

/// Every policy file's bytes (a file that cannot be read counts as its error text), to tell
/// when an edit happened.
fn read_contents(paths: &[std::path::PathBuf]) -> Vec<Result<Vec<u8>, String>> {
    paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| e.to_string()))
        .collect()
}

/// Reads every policy file; the first invalid one fails the load, naming file and field.
fn read_files(settings: &WorkloadSettings) -> Result<SecurityPolicies, MeshError> {
    let mut all = SecurityPolicies::default();
    for path in &settings.policies {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| MeshError::Policy {
            path: shown.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        let policies = parse_security_policies(&text).map_err(|e| MeshError::Policy {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        check_providers(settings, &shown, &policies)?;
        all.extend(policies);
    }
    Ok(all)
}

impl Policies {
    /// Checks the policy files every second and applies an edit as a whole: a file that fails
    /// to read or parse, or uses an unsupported field, is refused with file, field and reason
    /// ([`PolicyStatus`], a warning in the log) and the policies in force stay in force. The
    /// task ends when the policies are dropped.
    pub(crate) fn watch(self: &Arc<Self>, settings: WorkloadSettings) {
        if settings.policies.is_empty() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut seen = read_contents(&settings.policies);
            let mut ticks = tokio::time::interval(POLICY_FILE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(policies) = weak.upgrade() else {
                    return;
                };
                let now = read_contents(&settings.policies);
                if now == seen {
                    continue;
                }
                seen = now;
                policies.reload(&settings);
            }
        });
    }

    /// Compiles the policy files again and swaps them in, or records why not.
    fn reload(&self, settings: &WorkloadSettings) {
        let result = Documents::compile(settings);
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(docs) => {
                self.docs.store(Arc::new(docs));
                status.reloads += 1;
                status.last_error = None;
                tracing::info!(
                    files = settings.policies.len(),
                    "policy files changed; the new policies are in force"
                );
            }
            Err(e) => {
                status.rejected += 1;
                tracing::warn!(error = %e, "policy edit refused; the previous policies stay in force");
                status.last_error = Some(e.to_string());
            }
        }
    }

    /// How reloading the policy files has gone.
    pub(crate) fn status(&self) -> PolicyStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

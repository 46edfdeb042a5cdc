//! Turning the `identity:` settings into live credentials: files watched for rotation, or the
//! development CA issuing and renewing in-process.

use std::{path::Path, sync::Arc};

use mesh_core::{
    SpiffeId,
    config::{IdentitySettings, IdentitySource},
};
use mesh_tls::{
    AcceptedTrustDomains, DevCa, MeshTls, TlsOptions,
    source::{SourceHandle, files::FileSource, renewal::spawn_renewal},
};

use super::MeshError;

/// Credentials plus whatever keeps them fresh (dropped with the mesh).
pub(crate) struct LiveIdentity {
    pub(crate) tls: MeshTls,
    pub(crate) _refresh: SourceHandle,
}

/// Loads or creates the identity and starts its refresh task. Needs a tokio runtime.
pub(crate) fn start(settings: &IdentitySettings) -> Result<LiveIdentity, MeshError> {
    let (credentials, refresh) = match &settings.source {
        IdentitySource::Files {
            cert,
            key,
            bundle,
            reload_interval,
        } => {
            let source = FileSource {
                cert: cert.clone(),
                key: key.clone(),
                bundle: bundle.clone(),
                federated: Vec::new(),
            };
            let credentials = source
                .credentials()
                .map_err(|e| MeshError::Identity(format!("identity.files: {e}")))?;
            if let Some(want) = &settings.spiffe_id {
                let have = credentials.svid().spiffe_id().clone();
                if &have != want {
                    return Err(MeshError::Identity(format!(
                        "identity.spiffe_id is {want} but the certificate in {} is for {have}; \
                         fix the configuration or the files",
                        cert.display()
                    )));
                }
            }
            let refresh = source.watch(credentials.clone(), *reload_interval);
            (credentials, refresh)
        }
        IdentitySource::DevCa { dir, svid_ttl } => {
            let id = settings.spiffe_id.clone().ok_or_else(|| {
                MeshError::Identity("identity.spiffe_id is required with dev_ca".to_owned())
            })?;
            let ca = Arc::new(load_or_create_ca(dir, &id)?);
            let credentials = ca
                .credentials(&id, *svid_ttl)
                .map_err(|e| MeshError::Identity(format!("identity.dev_ca: {e}")))?;
            let refresh = spawn_renewal(ca, id, *svid_ttl, credentials.clone(), None);
            (credentials, refresh)
        }
        other => {
            return Err(MeshError::Identity(format!(
                "identity source {other:?} is not supported by this version"
            )));
        }
    };
    let mut options = TlsOptions::default();
    if !settings.trust_domains.is_empty() {
        let mut accepted = settings.trust_domains.clone();
        let own = credentials.svid().spiffe_id().trust_domain();
        if !accepted.contains(&own) {
            accepted.push(own);
        }
        options.accepted_trust_domains = AcceptedTrustDomains::List(accepted);
    }
    let tls = MeshTls::new(credentials, options)
        .map_err(|e| MeshError::Identity(format!("TLS settings: {e}")))?;
    Ok(LiveIdentity {
        tls,
        _refresh: refresh,
    })
}

/// Loads the CA in `dir`, or creates one for `id`'s trust domain. Several processes starting
/// at once agree on one CA: each builds its candidate in a private directory and renames it
/// into place; the rename fails for all but the first, and the others load the winner's.
fn load_or_create_ca(dir: &Path, id: &SpiffeId) -> Result<DevCa, MeshError> {
    let load = |dir: &Path| {
        DevCa::load(dir).map_err(|e| MeshError::Identity(format!("identity.dev_ca.dir: {e}")))
    };
    let ca = if dir.join(mesh_tls::dev_ca::files::CA_CERT).exists() {
        load(dir)?
    } else {
        let ca = DevCa::generate(id.trust_domain())
            .map_err(|e| MeshError::Identity(format!("identity.dev_ca: {e}")))?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| MeshError::Identity(format!("cannot create {}: {e}", parent.display())))?;
        let staging = tempfile::Builder::new()
            .prefix(".dev-ca-")
            .tempdir_in(&parent)
            .map_err(|e| {
                MeshError::Identity(format!(
                    "cannot create a directory in {}: {e}",
                    parent.display()
                ))
            })?;
        ca.write(staging.path())
            .map_err(|e| MeshError::Identity(format!("identity.dev_ca: {e}")))?;
        match std::fs::rename(staging.path(), dir) {
            Ok(()) => ca,
            // Someone else's CA got there first (or `dir` exists without a CA in it).
            Err(_) if dir.join(mesh_tls::dev_ca::files::CA_CERT).exists() => load(dir)?,
            Err(e) => {
                return Err(MeshError::Identity(format!(
                    "cannot create the development CA directory {}: {e}; remove it or point \
                     identity.dev_ca.dir elsewhere",
                    dir.display()
                )));
            }
        }
    };
    if ca.trust_domain() != &id.trust_domain() {
        return Err(MeshError::Identity(format!(
            "the development CA in {} issues for trust domain {}, not {}; use another \
             identity.dev_ca.dir or a SPIFFE ID in {}",
            dir.display(),
            ca.trust_domain(),
            id.trust_domain(),
            ca.trust_domain()
        )));
    }
    Ok(ca)
}

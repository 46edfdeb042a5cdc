//! A development CA: the embedded default that lets a fresh machine run a mesh with no external CA.
//!
//! It issues short-lived ECDSA P-256 X.509-SVIDs shaped like Istio's (empty subject, one critical
//! URI SAN, serverAuth + clientAuth), and writes `ca.pem`/`ca.key`/`bundle.pem` and
//! `svid.pem`/`svid.key`/`bundle.pem` for tools and other processes. It is meant for development
//! and tests: the CA key sits in a file next to the certificates.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use mesh_core::{SpiffeId, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::{
    BundleSet, Credentials, TrustBundle, X509Svid,
    error::CaError,
    pem,
    x509::{self},
};

/// File names the CA and issued SVIDs are written under.
pub mod files {
    /// The CA certificate.
    pub const CA_CERT: &str = "ca.pem";
    /// The CA private key (mode 0600).
    pub const CA_KEY: &str = "ca.key";
    /// The trust bundle (the CA certificate again, for workloads).
    pub const BUNDLE: &str = "bundle.pem";
    /// An issued SVID's certificate chain.
    pub const SVID_CERT: &str = "svid.pem";
    /// An issued SVID's private key (mode 0600).
    pub const SVID_KEY: &str = "svid.key";
}

/// Allowance for clocks that run slightly behind ours: certificates start up to this long ago
/// (at most a tenth of their lifetime, so half-life renewal stays close to half the TTL).
const BACKDATE: Duration = Duration::from_secs(60);

/// Lifetime of a generated root.
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A self-signed root that issues SVIDs for one trust domain.
pub struct DevCa {
    trust_domain: TrustDomain,
    not_after: rustls_pki_types::UnixTime,
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    bundle: TrustBundle,
}

fn gen_err(action: &'static str) -> impl Fn(rcgen::Error) -> CaError {
    move |e| CaError::Generate {
        action,
        reason: e.to_string(),
    }
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Generate {
            action: "draw a random serial number",
            reason: "the system random source failed".to_owned(),
        })?;
    bytes[0] &= 0x7f; // keep it positive
    Ok(SerialNumber::from_slice(&bytes))
}

fn offset_time(
    base: OffsetDateTime,
    delta: Duration,
    forward: bool,
) -> Result<OffsetDateTime, CaError> {
    let delta = time::Duration::try_from(delta).map_err(|e| CaError::Generate {
        action: "compute a validity period",
        reason: e.to_string(),
    })?;
    let t = if forward {
        base.checked_add(delta)
    } else {
        base.checked_sub(delta)
    };
    t.ok_or(CaError::Generate {
        action: "compute a validity period",
        reason: "the date is out of range".to_owned(),
    })
}

impl DevCa {
    /// Creates a new root for `trust_domain` with a fresh P-256 key.
    pub fn generate(trust_domain: TrustDomain) -> Result<Self, CaError> {
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err("generate a key"))?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "mesh development CA");
        // A per-root suffix tells roots of the same trust domain apart in `cert inspect` output
        // and lets verifiers report "unknown issuer" rather than a signature mismatch.
        let serial = random_serial()?;
        let tag: String = serial
            .to_bytes()
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{trust_domain} root {tag}"));
        params.subject_alt_names = vec![SanType::URI(
            trust_domain
                .id_string()
                .try_into()
                .map_err(gen_err("encode the trust domain URI"))?,
        )];
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = offset_time(now, BACKDATE, false)?;
        params.not_after = offset_time(now, ROOT_LIFETIME, true)?;
        params.serial_number = Some(serial);
        let cert = params.self_signed(&key).map_err(gen_err("sign the root"))?;
        let key_pem = key.serialize_pem();
        let cert_der = cert.der().clone();
        let bundle = TrustBundle::new(trust_domain.clone(), vec![cert_der.clone()])?;
        let not_after = x509::parse(&cert_der)
            .map_err(|reason| CaError::Generate {
                action: "read back the root",
                reason,
            })?
            .not_after;
        Ok(Self {
            trust_domain,
            not_after,
            issuer: Issuer::new(params, key),
            cert_der,
            key_pem,
            bundle,
        })
    }

    /// Loads a CA from its certificate and key PEM. The trust domain is read from the
    /// certificate's `spiffe://<trust-domain>` URI SAN.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let invalid = |reason: String| CaError::Invalid {
            what: "the CA PEM".to_owned(),
            reason,
        };
        let cert_der = pem::parse_certificates(cert_pem.as_bytes(), "the CA certificate")
            .map_err(|e| invalid(e.to_string()))?
            .remove(0);
        let facts = x509::parse(&cert_der).map_err(&invalid)?;
        if !facts.is_ca {
            return Err(invalid(
                "the certificate is not a CA (basicConstraints CA=false)".into(),
            ));
        }
        let trust_domain = facts
            .uri_sans
            .iter()
            .find_map(|san| san.parse::<TrustDomain>().ok())
            .ok_or_else(|| {
                invalid("the certificate has no spiffe://<trust-domain> URI SAN".into())
            })?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| invalid(format!("bad CA key: {e}")))?;
        if key.public_key_raw() != public_key_of(&cert_der).map_err(&invalid)?.as_slice() {
            return Err(invalid(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| invalid(format!("cannot use the certificate as issuer: {e}")))?;
        let bundle = TrustBundle::new(trust_domain.clone(), vec![cert_der.clone()])?;
        Ok(Self {
            trust_domain,
            not_after: facts.not_after,
            issuer,
            cert_der,
            key_pem: key_pem.to_owned(),
            bundle,
        })
    }

    /// Loads `ca.pem` and `ca.key` from `dir` (as written by [`write`](Self::write)).
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let cert = read(&dir.join(files::CA_CERT))?;
        let key = read(&dir.join(files::CA_KEY))?;
        Self::from_pem(&cert, &key).map_err(|e| match e {
            CaError::Invalid { reason, .. } => CaError::Invalid {
                what: dir.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Writes `ca.pem`, `ca.key` (0600) and `bundle.pem` into `dir`, creating it if needed.
    pub fn write(&self, dir: &Path) -> Result<(), CaError> {
        create_dir(dir)?;
        write_file(&dir.join(files::CA_CERT), self.cert_pem().as_bytes(), false)?;
        write_file(&dir.join(files::CA_KEY), self.key_pem.as_bytes(), true)?;
        write_file(&dir.join(files::BUNDLE), self.cert_pem().as_bytes(), false)
    }

    /// The trust domain this CA issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// When the root expires; no SVID it issues may outlive it.
    pub fn not_after(&self) -> rustls_pki_types::UnixTime {
        self.not_after
    }

    /// The root certificate, PEM-encoded.
    pub fn cert_pem(&self) -> String {
        pem::encode("CERTIFICATE", self.cert_der.as_ref())
    }

    /// The root's private key, PEM-encoded (PKCS#8). Handle with care.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The trust bundle holding this root.
    pub fn bundle(&self) -> TrustBundle {
        self.bundle.clone()
    }

    /// A bundle set holding only this CA's bundle.
    pub fn bundle_set(&self) -> BundleSet {
        BundleSet::single(self.bundle())
    }

    /// Issues an SVID for `id` valid for `ttl` (backdated a minute for clock skew).
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<X509Svid, CaError> {
        if id.trust_domain_str() != self.trust_domain.as_str() {
            return Err(CaError::ForeignTrustDomain {
                ca: self.trust_domain.clone(),
                id: id.clone(),
            });
        }
        if id.path().is_empty() {
            return Err(CaError::TrustDomainId { id: id.clone() });
        }
        let now_secs = rustls_pki_types::UnixTime::now().as_secs();
        if now_secs.saturating_add(ttl.as_secs()) > self.not_after.as_secs() {
            return Err(CaError::OutlivesCa {
                ca_not_after: self.not_after.as_secs(),
            });
        }
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err("generate a key"))?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        // Empty subject, identity only in the (then critical) URI SAN: the shape Istio issues.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            id.as_str()
                .try_into()
                .map_err(gen_err("encode the SPIFFE ID"))?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset_time(now, BACKDATE.min(ttl / 10), false)?;
        params.not_after = offset_time(now, ttl, true)?;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(gen_err("sign the SVID"))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(X509Svid::from_der(vec![cert.der().clone()], key_der)?)
    }

    /// Issues an SVID for `id` and wraps it with this CA's bundle, ready for [`crate::MeshTls`].
    pub fn credentials(&self, id: &SpiffeId, ttl: Duration) -> Result<Credentials, CaError> {
        Ok(Credentials::new(self.issue(id, ttl)?, self.bundle_set()))
    }
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn public_key_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
    Ok(parsed.public_key().subject_public_key.data.to_vec())
}

/// Writes an SVID as `svid.pem`, `svid.key` (0600) and `bundle.pem` into `dir`.
///
/// Each file is written to a temporary name and renamed into place, so a process watching the
/// directory never reads a half-written file. The key is written before the certificate: a
/// watcher that sees the new certificate finds its key already there.
pub fn write_svid(dir: &Path, svid: &X509Svid, bundle: &TrustBundle) -> Result<(), CaError> {
    create_dir(dir)?;
    write_file(&dir.join(files::BUNDLE), bundle.to_pem().as_bytes(), false)?;
    write_file(&dir.join(files::SVID_KEY), svid.key_pem().as_bytes(), true)?;
    write_file(
        &dir.join(files::SVID_CERT),
        svid.chain_pem().as_bytes(),
        false,
    )
}

fn read(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), CaError> {
    fs::create_dir_all(dir).map_err(|source| CaError::Io {
        action: "create directory",
        path: dir.to_owned(),
        source,
    })
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), CaError> {
    let io_err = |source| CaError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let tmp: PathBuf = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut file = options.open(&tmp).map_err(io_err)?;
        file.write_all(contents).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
    }
    fs::rename(&tmp, path).map_err(io_err)
}

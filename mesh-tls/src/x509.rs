//! The facts about a certificate that SPIFFE cares about, read once with x509-parser.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use mesh_core::SpiffeId;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::{extensions::GeneralName, prelude::X509Certificate};

/// What SPIFFE verification needs to know about one certificate.
#[derive(Debug, Clone)]
pub(crate) struct CertFacts {
    pub(crate) uri_sans: Vec<String>,
    pub(crate) is_ca: bool,
    /// `None` when the certificate has no keyUsage extension.
    pub(crate) digital_signature: Option<bool>,
    pub(crate) not_before: UnixTime,
    pub(crate) not_after: UnixTime,
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) serial: String,
}

/// Just what identity verification needs, read on every handshake: the URI SANs and the CA flag.
/// Skips the string formatting of names that [`parse`] does for display.
#[derive(Debug, Clone)]
pub(crate) struct IdentityFacts {
    pub(crate) uri_sans: Vec<String>,
    pub(crate) is_ca: bool,
}

/// Certificate DER -> its identity facts.
type IdentityCache = Mutex<HashMap<Box<[u8]>, Arc<IdentityFacts>>>;

/// Entries kept by the identity cache before it starts over.
const IDENTITY_CACHE_MAX: usize = 4096;

/// [`identity`], memoised by the certificate's exact bytes.
///
/// Parsing a certificate costs tens of microseconds, about a tenth of a handshake, and every
/// handshake needs the peer's identity twice (in the verifier, then for the caller). Peers
/// present the same SVID on every connection until it rotates, so nearly all lookups hit. Only
/// the SAN/CA facts are cached, keyed by the full DER, never a verification verdict: chains are
/// verified on every handshake.
pub(crate) fn identity_cached(der: &CertificateDer<'_>) -> Result<Arc<IdentityFacts>, String> {
    static CACHE: OnceLock<IdentityCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(der.as_ref())
    {
        return Ok(hit.clone());
    }
    let facts = Arc::new(identity(der)?);
    let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= IDENTITY_CACHE_MAX {
        map.clear();
    }
    map.insert(der.as_ref().into(), facts.clone());
    Ok(facts)
}

pub(crate) fn identity(der: &CertificateDer<'_>) -> Result<IdentityFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    Ok(IdentityFacts {
        uri_sans: uri_sans(&cert)?,
        is_ca: cert.is_ca(),
    })
}

fn uri_sans(cert: &X509Certificate<'_>) -> Result<Vec<String>, String> {
    Ok(
        match cert.subject_alternative_name().map_err(|e| e.to_string())? {
            Some(ext) => ext
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        },
    )
}

pub(crate) fn parse(der: &CertificateDer<'_>) -> Result<CertFacts, String> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        ));
    }
    facts(&cert)
}

fn facts(cert: &X509Certificate<'_>) -> Result<CertFacts, String> {
    let uri_sans = uri_sans(cert)?;
    let digital_signature = cert
        .key_usage()
        .map_err(|e| e.to_string())?
        .map(|ku| ku.value.digital_signature());
    let validity = cert.validity();
    Ok(CertFacts {
        uri_sans,
        is_ca: cert.is_ca(),
        digital_signature,
        not_before: unix(validity.not_before.timestamp()),
        not_after: unix(validity.not_after.timestamp()),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
    })
}

fn unix(secs: i64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0) as u64))
}

/// The single SPIFFE ID of a leaf, or why it has none.
pub(crate) enum LeafId {
    One(SpiffeId),
    None,
    Many(usize),
    Invalid(String, mesh_core::SpiffeIdError),
}

pub(crate) fn leaf_id(uri_sans: &[String]) -> LeafId {
    match uri_sans {
        [] => LeafId::None,
        [san] => match san.parse() {
            Ok(id) => LeafId::One(id),
            Err(e) => LeafId::Invalid(san.clone(), e),
        },
        many => LeafId::Many(many.len()),
    }
}

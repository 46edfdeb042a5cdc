//! Human-readable facts about certificates, and what would stop them working as SVIDs.
//!
//! Backs `meshctl cert inspect`: operators debugging a failed handshake want the SPIFFE ID,
//! issuer, validity window and the list of problems in one place.

use rustls_pki_types::UnixTime;

use crate::{
    error::PemError,
    pem,
    x509::{self, LeafId},
};

/// What one certificate in a PEM file says and what is wrong with it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CertReport {
    /// Position in the file (0 = first, the leaf of a chain).
    pub index: usize,
    /// The SPIFFE ID, when the certificate carries exactly one valid one.
    pub spiffe_id: Option<String>,
    /// All URI SANs.
    pub uri_sans: Vec<String>,
    /// Subject distinguished name (often empty for SVIDs).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number in hex.
    pub serial: String,
    /// notBefore, seconds since the Unix epoch.
    pub not_before: u64,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: u64,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// Why the certificate could not be parsed at all (the other fields are then empty).
    pub parse_error: Option<String>,
    /// Everything that would make it fail as an SVID leaf (for index 0) or chain member.
    pub problems: Vec<String>,
}

/// Inspects every certificate in a PEM document, judging the first as an SVID leaf.
pub fn inspect_pem(
    pem_text: &[u8],
    what: &str,
    now: UnixTime,
) -> Result<Vec<CertReport>, PemError> {
    let certs = pem::parse_certificates(pem_text, what)?;
    Ok(certs
        .iter()
        .enumerate()
        .map(|(index, der)| match x509::parse(der) {
            Ok(facts) => {
                let mut problems = Vec::new();
                let mut spiffe_id = None;
                if index == 0 && !facts.is_ca {
                    match x509::leaf_id(&facts.uri_sans) {
                        LeafId::One(id) => spiffe_id = Some(id.to_string()),
                        LeafId::None => problems.push("no URI SAN: not an SVID".to_owned()),
                        LeafId::Many(n) => {
                            problems.push(format!("{n} URI SANs: an SVID has exactly one"))
                        }
                        LeafId::Invalid(san, e) => {
                            problems.push(format!("URI SAN {san:?} is not a SPIFFE ID: {e}"))
                        }
                    }
                    if facts.digital_signature == Some(false) {
                        problems.push("keyUsage lacks digitalSignature".to_owned());
                    }
                } else if index > 0 && !facts.is_ca {
                    problems.push(
                        "follows the leaf but is not a CA, so it cannot be an intermediate"
                            .to_owned(),
                    );
                }
                if now.as_secs() > facts.not_after.as_secs() {
                    problems.push("expired".to_owned());
                }
                if now.as_secs() < facts.not_before.as_secs() {
                    problems.push("not valid yet".to_owned());
                }
                CertReport {
                    index,
                    spiffe_id,
                    uri_sans: facts.uri_sans,
                    subject: facts.subject,
                    issuer: facts.issuer,
                    serial: facts.serial,
                    not_before: facts.not_before.as_secs(),
                    not_after: facts.not_after.as_secs(),
                    is_ca: facts.is_ca,
                    parse_error: None,
                    problems,
                }
            }
            Err(reason) => CertReport {
                index,
                spiffe_id: None,
                uri_sans: Vec::new(),
                subject: String::new(),
                issuer: String::new(),
                serial: String::new(),
                not_before: 0,
                not_after: 0,
                is_ca: false,
                problems: vec![format!("not valid X.509: {reason}")],
                parse_error: Some(reason),
            },
        })
        .collect())
}

//! Reading certificates and private keys from PEM, with errors that say which file was wrong.

use std::path::Path;

use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    pem::{PemObject, SectionKind},
};

use crate::error::PemError;

/// Reads a file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Io {
        path: path.to_owned(),
        source,
    })
}

fn sections(pem: &[u8], what: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, PemError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed {
            what: what.to_owned(),
            reason: e.to_string(),
        })
}

/// Parses every `CERTIFICATE` block, in order. Other block types are ignored, so a combined
/// "cert + key" file works as a certificate file. `what` names the source in errors.
pub fn parse_certificates(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs: Vec<_> = sections(pem, what)?
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    if certs.is_empty() {
        return Err(PemError::NoCertificates {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

/// Parses exactly one private key in PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1
/// (`RSA PRIVATE KEY`) form. Certificates in the same file are ignored.
pub fn parse_private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    let mut keys: Vec<PrivateKeyDer<'static>> = sections(pem, what)?
        .into_iter()
        .filter_map(|(kind, der)| match kind {
            SectionKind::PrivateKey => Some(PrivatePkcs8KeyDer::from(der).into()),
            SectionKind::EcPrivateKey => Some(PrivateSec1KeyDer::from(der).into()),
            SectionKind::RsaPrivateKey => Some(PrivatePkcs1KeyDer::from(der).into()),
            _ => None,
        })
        .collect();
    match keys.len() {
        0 => Err(PemError::NoPrivateKey {
            what: what.to_owned(),
        }),
        1 => Ok(keys.remove(0)),
        count => Err(PemError::MultipleKeys {
            what: what.to_owned(),
            count,
        }),
    }
}

/// Encodes DER bytes as one PEM block with the given label (`CERTIFICATE`, `PRIVATE KEY`, ...).
pub fn encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_through_the_parser() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 300] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let pem = encode("CERTIFICATE", &der);
            if len == 0 {
                continue;
            }
            let certs = parse_certificates(pem.as_bytes(), "test").unwrap();
            assert_eq!(certs[0].as_ref(), der.as_slice());
        }
    }

    #[test]
    fn garbage_and_truncation_are_reported() {
        assert!(matches!(
            parse_certificates(b"hello world", "x.pem"),
            Err(PemError::NoCertificates { .. })
        ));
        let err = parse_certificates(b"-----BEGIN CERTIFICATE-----\nMIIB\n", "x.pem").unwrap_err();
        assert!(matches!(err, PemError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("x.pem"));
        assert!(matches!(
            parse_private_key(b"", "k.pem"),
            Err(PemError::NoPrivateKey { .. })
        ));
        let two = format!(
            "{}{}",
            encode("PRIVATE KEY", &[1, 2, 3]),
            encode("EC PRIVATE KEY", &[4])
        );
        assert!(matches!(
            parse_private_key(two.as_bytes(), "k.pem"),
            Err(PemError::MultipleKeys { count: 2, .. })
        ));
    }
}

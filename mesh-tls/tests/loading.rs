//! Loading SVIDs and bundles from PEM: every key format, and a typed error for each defect.

mod support;

use mesh_tls::{BundleError, PemError, SvidError, TrustBundle, X509Svid};
use support::*;

const ID: &str = "spiffe://example.org/ns/shop/sa/orders";

fn leaf_pem(leaf: &Leaf) -> (String, String) {
    let cert = mesh_tls::pem::encode("CERTIFICATE", leaf.chain[0].as_ref());
    let key = mesh_tls::pem::encode("PRIVATE KEY", leaf.key.secret_der());
    (cert, key)
}

#[test]
fn issued_svid_round_trips_through_pem() {
    let ca = ca("example.org");
    let svid = ca.issue(&id(ID), HOUR).unwrap();
    let again = X509Svid::from_pem(svid.chain_pem().as_bytes(), svid.key_pem().as_bytes()).unwrap();
    assert_eq!(again.spiffe_id(), &id(ID));
    assert_eq!(again.chain(), svid.chain());
    let remaining = again.time_to_expiry(rustls_pki_types::UnixTime::now());
    assert!(
        remaining.as_secs() > 3500 && remaining.as_secs() <= 3600,
        "{remaining:?}"
    );
}

#[test]
fn garbage_pem_is_reported() {
    let err = X509Svid::from_pem(b"not a certificate at all", b"nor a key").unwrap_err();
    assert!(
        matches!(err, SvidError::Pem(PemError::NoCertificates { .. })),
        "{err}"
    );
    let err = TrustBundle::from_pem("example.org".parse().unwrap(), b"\x00\x01\x02").unwrap_err();
    assert!(
        matches!(err, BundleError::Pem(PemError::NoCertificates { .. })),
        "{err}"
    );
}

#[test]
fn truncated_pem_is_reported() {
    let ca = ca("example.org");
    let svid = ca.issue(&id(ID), HOUR).unwrap();
    let pem = svid.chain_pem();
    // Cut off the END line: the PEM layer notices.
    let cut = &pem[..pem.len() / 2];
    let err = X509Svid::from_pem(cut.as_bytes(), svid.key_pem().as_bytes()).unwrap_err();
    assert!(
        matches!(err, SvidError::Pem(PemError::Malformed { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
    // Drop base64 lines but keep the END line: valid PEM, truncated DER.
    let lines: Vec<&str> = pem.lines().collect();
    let shortened = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[lines.len() - 1]);
    let err = X509Svid::from_pem(shortened.as_bytes(), svid.key_pem().as_bytes()).unwrap_err();
    assert!(
        matches!(err, SvidError::BadCertificate { index: 0, .. }),
        "{err}"
    );
    // A truncated key.
    let key = svid.key_pem();
    let err = X509Svid::from_pem(pem.as_bytes(), &key.as_bytes()[..key.len() - 30]).unwrap_err();
    assert!(
        matches!(err, SvidError::Pem(PemError::Malformed { .. })),
        "{err}"
    );
}

#[test]
fn key_not_matching_certificate_is_rejected() {
    let ca = ca("example.org");
    let a = ca.issue(&id(ID), HOUR).unwrap();
    let b = ca.issue(&id(ID), HOUR).unwrap();
    let err = X509Svid::from_pem(a.chain_pem().as_bytes(), b.key_pem().as_bytes()).unwrap_err();
    assert!(matches!(err, SvidError::KeyMismatch), "{err}");
    assert!(err.to_string().contains("belong together"));
}

#[test]
fn leaf_defects_are_typed_errors() {
    let ca = ca("example.org");

    let mut params = svid_params(ID);
    params.subject_alt_names = vec![rcgen::SanType::DnsName("x.example".try_into().unwrap())];
    let (c, k) = leaf_pem(&leaf_signed_by(&ca, params));
    assert!(matches!(
        X509Svid::from_pem(c.as_bytes(), k.as_bytes()),
        Err(SvidError::NoUriSan)
    ));

    let mut params = svid_params(ID);
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://example.org/other".try_into().unwrap(),
    ));
    let (c, k) = leaf_pem(&leaf_signed_by(&ca, params));
    match X509Svid::from_pem(c.as_bytes(), k.as_bytes()) {
        Err(SvidError::MultipleUriSans { sans }) => assert_eq!(sans.len(), 2),
        other => panic!("{other:?}"),
    }

    let mut params = svid_params(ID);
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "https://example.org/x".try_into().unwrap(),
    )];
    let (c, k) = leaf_pem(&leaf_signed_by(&ca, params));
    assert!(matches!(
        X509Svid::from_pem(c.as_bytes(), k.as_bytes()),
        Err(SvidError::InvalidSpiffeId { .. })
    ));

    let mut params = svid_params(ID);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment];
    let (c, k) = leaf_pem(&leaf_signed_by(&ca, params));
    assert!(matches!(
        X509Svid::from_pem(c.as_bytes(), k.as_bytes()),
        Err(SvidError::NoDigitalSignature)
    ));

    let mut params = svid_params(ID);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let (c, k) = leaf_pem(&leaf_signed_by(&ca, params));
    assert!(matches!(
        X509Svid::from_pem(c.as_bytes(), k.as_bytes()),
        Err(SvidError::LeafIsCa)
    ));

    // A non-CA certificate placed after the leaf cannot be an intermediate.
    let other = ca.issue(&id("spiffe://example.org/x"), HOUR).unwrap();
    let good = ca.issue(&id(ID), HOUR).unwrap();
    let chain = format!("{}{}", good.chain_pem(), other.chain_pem());
    assert!(matches!(
        X509Svid::from_pem(chain.as_bytes(), good.key_pem().as_bytes()),
        Err(SvidError::IntermediateNotCa { index: 1 })
    ));
}

#[test]
fn key_file_with_two_keys_or_none_is_rejected() {
    let ca = ca("example.org");
    let a = ca.issue(&id(ID), HOUR).unwrap();
    let b = ca.issue(&id(ID), HOUR).unwrap();
    let two = format!("{}{}", a.key_pem(), b.key_pem());
    assert!(matches!(
        X509Svid::from_pem(a.chain_pem().as_bytes(), two.as_bytes()),
        Err(SvidError::Pem(PemError::MultipleKeys { count: 2, .. }))
    ));
    assert!(matches!(
        X509Svid::from_pem(a.chain_pem().as_bytes(), a.chain_pem().as_bytes()),
        Err(SvidError::Pem(PemError::NoPrivateKey { .. }))
    ));
}

#[test]
fn missing_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        X509Svid::load(&dir.path().join("nope.pem"), &dir.path().join("nope.key")).unwrap_err();
    assert!(matches!(err, SvidError::Pem(PemError::Io { .. })));
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[test]
fn bundle_with_several_roots_trusts_each() {
    let a = ca("example.org");
    let b = ca("example.org");
    let pem = format!("{}{}", a.cert_pem(), b.cert_pem());
    let bundle = TrustBundle::from_pem("example.org".parse().unwrap(), pem.as_bytes()).unwrap();
    assert_eq!(bundle.roots().len(), 2);
    assert_eq!(bundle.to_pem(), pem);
}

#[test]
fn dev_ca_refuses_foreign_trust_domain_and_round_trips_through_files() {
    let ca = ca("example.org");
    let err = ca
        .issue(&id("spiffe://other.org/ns/a/sa/b"), HOUR)
        .unwrap_err();
    assert!(
        matches!(err, mesh_tls::CaError::ForeignTrustDomain { .. }),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    ca.write(dir.path()).unwrap();
    let loaded = mesh_tls::DevCa::load(dir.path()).unwrap();
    assert_eq!(loaded.trust_domain().as_str(), "example.org");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    // An SVID issued by the reloaded CA verifies against the original bundle.
    let svid = loaded.issue(&id(ID), HOUR).unwrap();
    mesh_tls::write_svid(dir.path(), &svid, &ca.bundle()).unwrap();
    let source = mesh_tls::source::files::FileSource::in_dir(dir.path());
    let (svid, bundles) = source.load().unwrap();
    assert_eq!(svid.spiffe_id(), &id(ID));
    assert!(bundles.get("example.org").is_some());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(dir.path().join("svid.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A key that is not the CA's is refused.
    let other = mesh_tls::DevCa::generate("example.org".parse().unwrap()).unwrap();
    let err = mesh_tls::DevCa::from_pem(&ca.cert_pem(), other.key_pem()).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn dev_ca_refuses_trust_domain_ids_and_lifetimes_beyond_its_own() {
    let ca = ca("example.org");
    let err = ca.issue(&id("spiffe://example.org"), HOUR).unwrap_err();
    assert!(
        matches!(err, mesh_tls::CaError::TrustDomainId { .. }),
        "{err}"
    );
    let too_long = std::time::Duration::from_secs(20 * 365 * 24 * 3600);
    let err = ca.issue(&id(ID), too_long).unwrap_err();
    assert!(matches!(err, mesh_tls::CaError::OutlivesCa { .. }), "{err}");
    assert!(ca.not_after().as_secs() > rustls_pki_types::UnixTime::now().as_secs());
}

//! Feeds arbitrary bytes to every PEM entry point of `mesh-tls`: SVIDs, trust bundles, the PEM
//! parsers and the certificate inspector. None may panic.
//!
//! Input layout: the first byte chooses where the rest is split into certificate PEM and key PEM
//! (at `first * rest.len() / 255`, so 0 = all key, 255 = all certificate). The rest is also tried
//! whole, as a combined "certificate + key" file.
//!
//! What is accepted must also be consistent: an SVID written back out as PEM loads again with the
//! same ID, the inspector reports the same ID for its leaf, and a bundle round-trips through PEM.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::TrustDomain;
use mesh_tls::{TrustBundle, X509Svid, inspect, pem};
use rustls_pki_types::UnixTime;

/// A fixed "now" (2027-01-15), so a run does not change behaviour from one day to the next.
const NOW_SECS: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(selector) * rest.len() / 255;
    let (cert_pem, key_pem) = rest.split_at(split);
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW_SECS));

    check_svid(cert_pem, key_pem, now);
    check_svid(rest, rest, now);

    let trust_domain: TrustDomain = "example.org".parse().expect("a valid trust domain");
    match TrustBundle::from_pem(trust_domain.clone(), cert_pem) {
        Ok(bundle) => {
            let again = TrustBundle::from_pem(trust_domain, bundle.to_pem().as_bytes())
                .expect("a bundle written as PEM must load again");
            assert_eq!(again.roots(), bundle.roots());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match pem::parse_certificates(cert_pem, "fuzz certificates") {
        Ok(certs) => assert!(!certs.is_empty()),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Err(e) = pem::parse_private_key(key_pem, "fuzz key") {
        let _ = e.to_string();
    }

    match inspect::inspect_pem(cert_pem, "fuzz inspect", now) {
        Ok(reports) => {
            for report in &reports {
                let _ = format!("{report:?}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

fn check_svid(cert_pem: &[u8], key_pem: &[u8], now: UnixTime) {
    let svid = match X509Svid::from_pem(cert_pem, key_pem) {
        Ok(svid) => svid,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = format!("{svid:?}");
    let _ = svid.time_to_expiry(now);
    let _ = svid.half_life();

    let chain_pem = svid.chain_pem();
    let again = X509Svid::from_pem(chain_pem.as_bytes(), svid.key_pem().as_bytes())
        .expect("an SVID written as PEM must load again");
    assert_eq!(again.spiffe_id(), svid.spiffe_id());
    assert_eq!(again.chain(), svid.chain());

    let reports = inspect::inspect_pem(chain_pem.as_bytes(), "fuzz svid", now)
        .expect("an SVID's chain must be inspectable");
    assert_eq!(reports.len(), svid.chain().len());
    assert_eq!(
        reports[0].spiffe_id.as_deref(),
        Some(svid.spiffe_id().as_str()),
        "the inspector must see the SVID's ID"
    );
}

//! Parses arbitrary UTF-8 as a SPIFFE ID and as a trust domain.
//!
//! Neither parser may panic, and whatever they accept must round-trip: `Display` gives back the
//! input (IDs are kept verbatim), and parsing the display form gives an equal value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check_spiffe_id(input);
    check_trust_domain(input);
});

fn check_spiffe_id(input: &str) {
    let id = match input.parse::<SpiffeId>() {
        Ok(id) => id,
        Err(e) => {
            // Error messages quote (excerpts of) the input: they must not panic either.
            let _ = e.to_string();
            return;
        }
    };
    let shown = id.to_string();
    assert_eq!(shown, input, "Display must give back the parsed text");
    assert_eq!(id.as_str(), input);
    let reparsed: SpiffeId = shown.parse().expect("the display form must parse");
    assert_eq!(reparsed, id);

    // The parts put back together are the ID.
    assert_eq!(
        format!("spiffe://{}{}", id.trust_domain_str(), id.path()),
        input
    );
    let td = id.trust_domain();
    assert_eq!(td.as_str(), id.trust_domain_str());
    assert_eq!(
        SpiffeId::from_parts(&td, id.path()).expect("the parts must rebuild the ID"),
        id
    );
    if let (Some(ns), Some(sa)) = (id.namespace(), id.service_account()) {
        assert_eq!(
            SpiffeId::istio(&td, ns, sa).expect("Istio parts must rebuild the ID"),
            id
        );
    }
}

fn check_trust_domain(input: &str) {
    let td = match input.parse::<TrustDomain>() {
        Ok(td) => td,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let shown = td.to_string();
    // Both `example.org` and `spiffe://example.org` are accepted; Display gives the bare name.
    if input.contains("://") {
        assert_eq!(td.id_string(), input);
    } else {
        assert_eq!(shown, input, "Display must give back the parsed name");
        assert_eq!(TrustDomain::new(input).expect("new agrees with parse"), td);
    }
    let reparsed: TrustDomain = shown.parse().expect("the display form must parse");
    assert_eq!(reparsed, td);
    let as_id: SpiffeId = td.id_string().parse().expect("spiffe://<td> must parse");
    assert_eq!(as_id.trust_domain(), td);
    assert_eq!(as_id.path(), "");
}

//! Every way a `loadBalancer.localityLbSetting` (`distribute`, `failover`, `failoverPriority`) is
//! refused names the field, as istiod's validation does.

use mesh_core::traffic::{TrafficErrorKind, parse_resources};

use TrafficErrorKind::{Invalid, Syntax};

fn dr(setting: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: r, namespace: shop }}\nspec:\n  host: r\n  trafficPolicy: {{ loadBalancer: {{ localityLbSetting: {setting} }} }}\n"
    )
}

#[test]
fn locality_setting_errors() {
    // (setting, path under localityLbSetting, kind, text in the message)
    let cases: &[(&str, &str, TrafficErrorKind, &str)] = &[
        (
            "{ distribute: [{ from: us-east/*, to: { us-east/a: 80, us-west: 30 } }], failover: [{ from: us-east, to: us-west }] }",
            "",
            Invalid,
            "only one of distribute and failover",
        ),
        (
            "{ distribute: [{ from: us-east/*, to: { us-east/a: 80, us-west: 30 } }] }",
            ".distribute[0].to",
            Invalid,
            "sum to 110",
        ),
        (
            "{ distribute: [{ from: us-east/*, to: { us-east/a: 0, us-west: 100 } }] }",
            ".distribute[0].to.us-east/a",
            Invalid,
            "between 1 and 100",
        ),
        (
            "{ distribute: [{ from: us-east/*, to: { us-east: 50, us-east/a/*: 50 } }] }",
            ".distribute[0].to.us-east/a/*",
            Invalid,
            "overlaps us-east",
        ),
        (
            "{ distribute: [{ from: us-east/*, to: { us-*: 100 } }] }",
            ".distribute[0].to.us-*",
            Invalid,
            "'*' may appear once",
        ),
        (
            "{ distribute: [{ from: us-east/*, to: { eu: 100 } }, { from: \"*\", to: { eu: 100 } }] }",
            ".distribute[1].from",
            Invalid,
            "overlaps",
        ),
        (
            "{ distribute: [{ to: { eu: 100 } }] }",
            ".distribute[0].from",
            Invalid,
            "required",
        ),
        (
            "{ distribute: [{ from: eu, to: {} }] }",
            ".distribute[0].to",
            Invalid,
            "at least one",
        ),
        (
            "{ distribute: [{ from: eu//a, to: { eu: 100 } }] }",
            ".distribute[0].from",
            Invalid,
            "empty",
        ),
        (
            "{ failover: [{ from: us-east, to: us-east }] }",
            ".failover[0].to",
            Invalid,
            "to itself",
        ),
        (
            "{ failover: [{ from: us-east/a, to: us-west }] }",
            ".failover[0].from",
            Invalid,
            "regions only",
        ),
        (
            "{ failover: [{ from: us-east, to: \"*\" }] }",
            ".failover[0].to",
            Invalid,
            "'*'",
        ),
        (
            "{ failover: [{ from: us-east }] }",
            ".failover[0].to",
            Invalid,
            "required",
        ),
        (
            "{ failover: [{ from: us-east, to: us-west }], failoverPriority: [version, topology.kubernetes.io/region] }",
            ".failoverPriority[1]",
            Invalid,
            "cannot be combined with failover",
        ),
        (
            "{ failoverPriority: [\"bad key!\"] }",
            ".failoverPriority[0]",
            Invalid,
            "not a valid label key",
        ),
        (
            "{ failoverPriority: [\"a=b=c\"] }",
            ".failoverPriority[0]",
            Invalid,
            "label=value",
        ),
        (
            "{ distribute: [{ from: eu, to: { eu: -5 } }] }",
            ".distribute[0].to.eu",
            Syntax,
            "",
        ),
        (
            "{ failover: [{ from: eu, to: us, extra: 1 }] }",
            ".failover[0].extra",
            Syntax,
            "extra",
        ),
    ];
    for (setting, path, kind, text) in cases {
        let yaml = dr(setting);
        let errors = match parse_resources(&yaml) {
            Ok(r) => panic!("accepted:\n{yaml}\n{r:?}"),
            Err(e) => e,
        };
        let path = format!("spec.trafficPolicy.loadBalancer.localityLbSetting{path}");
        let Some(found) = errors.errors().iter().find(|e| e.path == path) else {
            panic!("no error at {path}:\n{errors}\n---\n{yaml}");
        };
        assert_eq!(found.kind, *kind, "{found}");
        assert!(found.to_string().contains(text), "{found} lacks {text:?}");
        assert!(found.to_string().contains(&path), "{found}");
    }
}

#[test]
fn valid_settings_load() {
    for setting in [
        "{ distribute: [{ from: \"us-east/*\", to: { \"us-east/a\": 70, us-west: 30 } }, { from: eu, to: { eu: 100 } }] }",
        "{ failover: [{ from: us-east, to: us-west }, { from: us-west, to: us-east }] }",
        "{ failover: [{ from: us-east, to: us-west }], failoverPriority: [topology.istio.io/network, \"version=v2\"] }",
        "{ enabled: false, failoverPriority: [topology.kubernetes.io/region, topology.kubernetes.io/zone] }",
    ] {
        let yaml = dr(setting);
        if let Err(e) = parse_resources(&yaml) {
            panic!("{setting}: {e}");
        }
    }
}

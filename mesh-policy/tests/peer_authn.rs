//! PeerAuthentication: loading (strict, field-path errors) and istiod's resolution
//! (mesh < namespace < workload, UNSET inheritance, portLevelMtls, oldest wins).

use mesh_policy::{
    authz::{PolicyError, Workload},
    peer_authn::{
        DecidedBy, Ignored, Level, MtlsMode, PeerAuthentication, PeerAuthenticator, PeerAuthnMode,
        parse_peer_authentications,
    },
};

#[path = "peer_authn_cases/errors.rs"]
mod errors;

fn parse(yaml: &str) -> Vec<PeerAuthentication> {
    parse_peer_authentications(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn parse_err(yaml: &str) -> PolicyError {
    match parse_peer_authentications(yaml) {
        Ok(p) => panic!("accepted: {p:?}\n{yaml}"),
        Err(e) => e,
    }
}

/// One document; `spec` is the YAML flow mapping's body.
fn doc(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: {name}, namespace: {namespace}}}\nspec: {{{spec}}}\n"
    )
}

fn web() -> Workload {
    Workload::new("shop").with_label("app", "web")
}

fn id(s: &str) -> mesh_policy::authz::PolicyId {
    let (namespace, name) = s.split_once('/').unwrap();
    mesh_policy::authz::PolicyId {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

const MODES: [Option<&str>; 5] = [
    None,
    Some("UNSET"),
    Some("DISABLE"),
    Some("PERMISSIVE"),
    Some("STRICT"),
];

fn resolved(name: &str) -> Option<PeerAuthnMode> {
    match name {
        "STRICT" => Some(PeerAuthnMode::Strict),
        "PERMISSIVE" => Some(PeerAuthnMode::Permissive),
        "DISABLE" => Some(PeerAuthnMode::Disable),
        _ => None,
    }
}

/// Every combination of mesh, namespace, workload and port-level setting (absent, UNSET and
/// the three modes), checked against the rule as Istio's docs state it: the most specific
/// setting that is not UNSET decides, PERMISSIVE when none does.
#[test]
fn inheritance_matrix() {
    let mut cases = 0;
    for mesh in MODES {
        for namespace in MODES {
            for workload in MODES {
                for port in MODES {
                    let mut yaml = String::new();
                    if let Some(m) = mesh {
                        yaml += &doc("istio-system", "mesh", &format!("mtls: {{mode: {m}}}"));
                    }
                    if let Some(m) = namespace {
                        yaml += &doc("shop", "ns", &format!("mtls: {{mode: {m}}}"));
                    }
                    if workload.is_some() || port.is_some() {
                        let mut spec = "selector: {matchLabels: {app: web}}".to_owned();
                        if let Some(m) = workload {
                            spec += &format!(", mtls: {{mode: {m}}}");
                        }
                        if let Some(m) = port {
                            spec += &format!(", portLevelMtls: {{8080: {{mode: {m}}}}}");
                        }
                        yaml += &doc("shop", "wl", &spec);
                    }
                    let policies = parse(&yaml);
                    let authn = PeerAuthenticator::new(&policies, &web());

                    let layered = [
                        (
                            port,
                            DecidedBy::PortLevel {
                                policy: id("shop/wl"),
                                port: 8080,
                            },
                        ),
                        (
                            workload,
                            DecidedBy::Policy {
                                level: Level::Workload,
                                policy: id("shop/wl"),
                            },
                        ),
                        (
                            namespace,
                            DecidedBy::Policy {
                                level: Level::Namespace,
                                policy: id("shop/ns"),
                            },
                        ),
                        (
                            mesh,
                            DecidedBy::Policy {
                                level: Level::Mesh,
                                policy: id("istio-system/mesh"),
                            },
                        ),
                    ];
                    let (want_mode, want_by) = layered
                        .iter()
                        .find_map(|(m, by)| m.and_then(resolved).map(|m| (m, by.clone())))
                        .unwrap_or((PeerAuthnMode::Permissive, DecidedBy::Default));
                    let got = authn.mode(8080);
                    let case =
                        format!("mesh={mesh:?} ns={namespace:?} wl={workload:?} port={port:?}");
                    assert_eq!(got.mode, want_mode, "{case}: {got}");
                    assert_eq!(got.decided_by, want_by, "{case}: {got}");

                    // Another port never sees the port-level entry.
                    let (other_mode, _) = layered[1..]
                        .iter()
                        .find_map(|(m, by)| m.and_then(resolved).map(|m| (m, by.clone())))
                        .unwrap_or((PeerAuthnMode::Permissive, DecidedBy::Default));
                    assert_eq!(authn.mode(9090).mode, other_mode, "{case}: port 9090");
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 625);
}

#[test]
fn explanations_name_the_deciding_and_inheriting_policies() {
    let yaml = doc("istio-system", "default", "mtls: {mode: STRICT}")
        + &doc("shop", "default", "mtls: {mode: UNSET}")
        + &doc(
            "shop",
            "web",
            "selector: {matchLabels: {app: web}}, portLevelMtls: {9090: {mode: DISABLE}}",
        );
    let authn = PeerAuthenticator::new(&parse(&yaml), &web());
    assert_eq!(
        authn.mode(8080).to_string(),
        "STRICT on port 8080: mesh policy istio-system/default (spec.mtls.mode); \
         namespace policy shop/default: UNSET, inherits; workload policy shop/web: UNSET, inherits"
    );
    assert_eq!(
        authn.mode(9090).to_string(),
        "DISABLE on port 9090: workload policy shop/web (spec.portLevelMtls.9090); \
         overrides mesh policy istio-system/default (STRICT); \
         namespace policy shop/default: UNSET, inherits"
    );
    let none = PeerAuthenticator::new(&[], &web());
    assert_eq!(
        none.mode(80).to_string(),
        "PERMISSIVE on port 80: default (no policy sets a mode)"
    );
    assert_eq!(authn.chain().len(), 3);
    assert_eq!(authn.chain()[2].level, Level::Workload);
}

#[test]
fn modes_say_what_the_listener_accepts() {
    assert!(PeerAuthnMode::Strict.requires_mtls());
    assert!(!PeerAuthnMode::Strict.accepts_plaintext());
    assert!(PeerAuthnMode::Permissive.accepts_plaintext());
    assert!(!PeerAuthnMode::Permissive.requires_mtls());
    assert!(PeerAuthnMode::Disable.accepts_plaintext());
    assert_eq!(MtlsMode::Unset.to_string(), "UNSET");
    assert_eq!(MtlsMode::Strict.resolved(), Some(PeerAuthnMode::Strict));
}

#[test]
fn scoping_by_namespace_selector_and_root_namespace() {
    let yaml = doc("other", "ns", "mtls: {mode: STRICT}")
        + &doc(
            "shop",
            "db-only",
            "selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}",
        )
        + &doc(
            "shop",
            "empty-selector",
            "selector: {}, mtls: {mode: DISABLE}",
        )
        + &doc("mesh-root", "root", "mtls: {mode: STRICT}");
    let policies = parse(&yaml);

    // Other namespaces and non-matching selectors do not apply; `selector: {}` is namespace-wide.
    let d = PeerAuthenticator::new(&policies, &web()).mode(80);
    assert_eq!(d.mode, PeerAuthnMode::Disable);
    assert_eq!(
        d.decided_by,
        DecidedBy::Policy {
            level: Level::Namespace,
            policy: id("shop/empty-selector")
        }
    );

    // A configured root namespace makes its policies mesh-wide; istio-system then is ordinary.
    let other = Workload::new("other").with_root_namespace("mesh-root");
    let d = PeerAuthenticator::new(&policies, &other).mode(80);
    assert_eq!(
        d.decided_by,
        DecidedBy::Policy {
            level: Level::Namespace,
            policy: id("other/ns")
        }
    );
    let elsewhere = Workload::new("x").with_root_namespace("mesh-root");
    let d = PeerAuthenticator::new(&policies, &elsewhere).mode(80);
    assert_eq!(
        d.decided_by,
        DecidedBy::Policy {
            level: Level::Mesh,
            policy: id("mesh-root/root")
        }
    );
    let default_root = PeerAuthenticator::new(&policies, &Workload::new("x")).mode(80);
    assert_eq!(default_root.decided_by, DecidedBy::Default);
}

#[test]
fn root_namespace_selector_policies_are_ignored_as_in_istio() {
    let yaml = doc(
        "istio-system",
        "web-strict",
        "selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}",
    ) + &doc(
        "istio-system",
        "db-strict",
        "selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}",
    );
    let authn = PeerAuthenticator::new(&parse(&yaml), &web());
    let d = authn.mode(80);
    assert_eq!(d.mode, PeerAuthnMode::Permissive);
    assert_eq!(
        d.ignored,
        [Ignored::RootNamespaceSelector {
            policy: id("istio-system/web-strict")
        }],
        "only the matching one is reported"
    );
    assert!(
        d.to_string().contains("istio-system/web-strict ignored"),
        "{d}"
    );

    // A workload living in the root namespace gets mesh policies only.
    let system = Workload::new("istio-system").with_label("app", "web");
    let yaml = doc("istio-system", "mesh", "mtls: {mode: STRICT}")
        + &doc(
            "istio-system",
            "wl",
            "selector: {matchLabels: {app: web}}, mtls: {mode: DISABLE}",
        );
    let d = PeerAuthenticator::new(&parse(&yaml), &system).mode(80);
    assert_eq!(d.mode, PeerAuthnMode::Strict);
    assert_eq!(
        d.decided_by,
        DecidedBy::Policy {
            level: Level::Mesh,
            policy: id("istio-system/mesh")
        }
    );
}

fn timed(namespace: &str, name: &str, created: Option<&str>, spec: &str) -> String {
    let created = created.map_or(String::new(), |c| format!(", creationTimestamp: \"{c}\""));
    format!(
        "---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\n\
         metadata: {{name: {name}, namespace: {namespace}{created}}}\nspec: {{{spec}}}\n"
    )
}

#[test]
fn oldest_policy_wins_at_each_level() {
    let sel = "selector: {matchLabels: {app: web}}";
    let yaml = timed("shop", "young", Some("2024-05-02T00:00:00Z"), "mtls: {mode: STRICT}")
        + &timed("shop", "old", Some("2024-05-01T00:00:00Z"), "mtls: {mode: DISABLE}")
        // Same instant written in another offset: later than `old`.
        + &timed("shop", "offset", Some("2024-05-01T02:00:00+01:00"), "mtls: {mode: STRICT}")
        + &timed("shop", "wl-b", Some("2024-01-01T00:00:00Z"), &format!("{sel}, mtls: {{mode: STRICT}}"))
        + &timed("shop", "wl-a", Some("2024-01-01T00:00:00Z"), &format!("{sel}, mtls: {{mode: UNSET}}"));
    let authn = PeerAuthenticator::new(&parse(&yaml), &web());
    let chain: Vec<_> = authn.chain().iter().map(|c| c.policy.to_string()).collect();
    // Equal timestamps: the smaller name wins (istiod sorts by time, then name).
    assert_eq!(chain, ["shop/old", "shop/wl-a"]);
    let d = authn.mode(80);
    assert_eq!(
        d.mode,
        PeerAuthnMode::Disable,
        "wl-a is UNSET, so the namespace decides: {d}"
    );
    let mut ignored: Vec<String> = d.ignored.iter().map(ToString::to_string).collect();
    ignored.sort();
    assert_eq!(
        ignored,
        [
            "shop/offset ignored: namespace policy shop/old is older and takes precedence",
            "shop/wl-b ignored: workload policy shop/wl-a is older and takes precedence",
            "shop/young ignored: namespace policy shop/old is older and takes precedence",
        ]
    );

    // No timestamp counts as the oldest (Go's zero time), whatever the file order.
    let yaml = timed(
        "istio-system",
        "stamped",
        Some("1999-01-01T00:00:00Z"),
        "mtls: {mode: STRICT}",
    ) + &timed(
        "istio-system",
        "zzz-unstamped",
        None,
        "mtls: {mode: DISABLE}",
    );
    let d = PeerAuthenticator::new(&parse(&yaml), &web()).mode(80);
    assert_eq!(d.mode, PeerAuthnMode::Disable);
    // Fractional seconds order correctly too.
    let yaml = timed(
        "shop",
        "b",
        Some("2024-05-01T00:00:00.5Z"),
        "mtls: {mode: STRICT}",
    ) + &timed(
        "shop",
        "a",
        Some("2024-05-01T00:00:00.75Z"),
        "mtls: {mode: DISABLE}",
    );
    let d = PeerAuthenticator::new(&parse(&yaml), &web()).mode(80);
    assert_eq!(d.mode, PeerAuthnMode::Strict);
}

#[test]
fn reads_istio_documents_as_written() {
    // `kubectl get -o yaml` output with server bookkeeping, v1beta1, null port value.
    let yaml = r#"
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: web
  namespace: shop
  creationTimestamp: "2024-05-01T10:00:00Z"
  generation: 1
  resourceVersion: "123"
  uid: 0b7a5f4e-0000-0000-0000-000000000000
  labels: { team: a }
  annotations: { note: x }
  managedFields: [{ manager: kubectl }]
spec:
  selector:
    matchLabels:
      app: web
  mtls:
    mode: STRICT
  portLevelMtls:
    "8080":
      mode: PERMISSIVE
    9090:
    9091: {}
status: {}
---
# comment-only documents are skipped
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: empty }
"#;
    let policies = parse(yaml);
    assert_eq!(policies.len(), 2);
    let web_policy = &policies[0];
    assert_eq!(web_policy.mode, MtlsMode::Strict);
    assert_eq!(
        web_policy
            .port_level
            .iter()
            .map(|(p, m)| (*p, *m))
            .collect::<Vec<_>>(),
        [
            (8080, MtlsMode::Permissive),
            (9090, MtlsMode::Unset),
            (9091, MtlsMode::Unset)
        ]
    );
    assert_eq!(
        web_policy.created.as_ref().unwrap().to_string(),
        "2024-05-01T10:00:00Z"
    );
    assert!(web_policy.has_selector());
    // No spec: namespace `default`, mode UNSET.
    assert_eq!(policies[1].id.to_string(), "default/empty");
    assert_eq!(policies[1].mode, MtlsMode::Unset);

    let authn = PeerAuthenticator::new(&policies, &web());
    assert_eq!(authn.mode(8080).mode, PeerAuthnMode::Permissive);
    assert_eq!(
        authn.mode(9090).mode,
        PeerAuthnMode::Strict,
        "a null entry inherits"
    );
    assert_eq!(authn.mode(9091).mode, PeerAuthnMode::Strict);
}

//! `meshctl config check` on the workload's locality (`workload.locality`, or the topology
//! labels in `workload.labels`): a valid one passes, mistakes are named by file, document and
//! field, as the runtime would refuse them.

use std::{fs, process::Command};

fn check(yaml: &str) -> (Option<i32>, Vec<String>) {
    let dir = tempfile::TempDir::new().unwrap();
    fs::write(dir.path().join("workload.yaml"), yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .current_dir(dir.path())
        .args(["config", "check", "workload.yaml"])
        .output()
        .expect("run meshctl");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.code(), lines)
}

#[test]
fn a_valid_locality_passes_in_both_forms() {
    let (code, lines) = check(
        "workload: { name: web, namespace: shop, locality: { region: us-east1, zone: us-east1-b, subzone: rack-7 } }\n---\nworkload: { name: api, namespace: shop, locality: us-east1/us-east1-b }\n---\nworkload: { name: db, namespace: shop, labels: { topology.kubernetes.io/region: us-east1 } }\n",
    );
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(
        lines,
        [
            "workload.yaml:1: MeshConfig shop/web: 0 services, 0 endpoints",
            "workload.yaml:2: MeshConfig shop/api: 0 services, 0 endpoints",
            "workload.yaml:3: MeshConfig shop/db: 0 services, 0 endpoints",
        ]
    );
}

#[test]
fn locality_mistakes_name_file_document_and_field() {
    let (code, lines) = check(
        "workload: { locality: { zone: us-east1-b } }\n---\nworkload: { locality: us-east1//rack-7 }\n---\nworkload: { locality: { region: us-east1, zome: b } }\n---\nworkload: { labels: { topology.kubernetes.io/zone: b } }\n",
    );
    assert_eq!(code, Some(1), "{lines:?}");
    let expected = [
        "workload.yaml:1:workload.locality.zone: \"us-east1-b\" is given without a region",
        "workload.yaml:2:workload.locality.subzone: \"rack-7\" is given without a zone",
        "workload.yaml:3:workload.locality.zome: ",
        "workload.yaml:4:workload.labels.topology.kubernetes.io/zone: \"b\" is given without a region",
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
    assert!(lines[2].contains("unknown field `zome`"), "{lines:?}");
    for (line, prefix) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(prefix),
            "{line:?} should start with {prefix:?}"
        );
    }
}

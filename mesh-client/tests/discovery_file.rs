//! The config file as discovery: live reload, rejected bad edits, last good version kept.

use std::time::Duration;

use mesh_client::discovery::{Discovery, FileDiscovery, FileDiscoveryError};

const STEP: Duration = Duration::from_secs(10);

fn doc(endpoints: &[&str]) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|a| format!("      - address: {a}\n"))
        .collect();
    format!(
        "services:\n  - host: inventory.shop\n    endpoints:\n{}",
        eps.concat()
    )
}

async fn eventually(mut f: impl FnMut() -> bool) {
    tokio::time::timeout(STEP, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

#[tokio::test]
async fn edits_apply_live_and_bad_edits_keep_the_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.yaml");
    std::fs::write(&path, doc(&["10.0.0.1:80"])).unwrap();
    let discovery = FileDiscovery::watch(&path, Duration::from_millis(20)).unwrap();
    let mut rx = discovery.subscribe();
    assert_eq!(
        discovery
            .current()
            .endpoints("inventory.shop")
            .unwrap()
            .len(),
        1
    );

    // A valid edit is published as a new version.
    std::fs::write(&path, doc(&["10.0.0.1:80", "10.0.0.2:80"])).unwrap();
    tokio::time::timeout(STEP, rx.changed())
        .await
        .unwrap()
        .unwrap();
    let snapshot = rx.borrow_and_update().clone();
    assert_eq!(snapshot.version(), 2);
    assert_eq!(snapshot.endpoints("inventory.shop").unwrap().len(), 2);

    // A bad edit is rejected with the field path; the last good snapshot stays.
    std::fs::write(
        &path,
        "services:\n  - host: inventory.shop\n    endpoints:\n      - adress: 10.0.0.3:80\n",
    )
    .unwrap();
    eventually(|| discovery.status().last_error.is_some()).await;
    let error = discovery.status().last_error.unwrap();
    assert!(
        error.contains("services[0].endpoints[0]") && error.contains("adress"),
        "{error}"
    );
    assert_eq!(discovery.current().version(), 2);
    assert!(!rx.has_changed().unwrap());

    // Fixing it publishes again and clears the error.
    std::fs::write(&path, doc(&["10.0.0.3:80"])).unwrap();
    tokio::time::timeout(STEP, rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(discovery.current().version(), 3);
    assert_eq!(discovery.status().last_error, None);
    assert_eq!(discovery.status().updates, 3);
}

#[tokio::test]
async fn an_invalid_file_at_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.yaml");
    std::fs::write(&path, "services: [{ host: a.b, ports: [{ port: 0 }] }]").unwrap();
    let err = FileDiscovery::watch(&path, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, FileDiscoveryError::Config { .. }), "{err}");
    assert!(
        err.to_string().contains("services[0].ports[0].port"),
        "{err}"
    );
    let err =
        FileDiscovery::watch(dir.path().join("missing.yaml"), Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, FileDiscoveryError::Io { .. }), "{err}");
}

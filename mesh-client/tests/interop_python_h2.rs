//! Interop with an independent HTTP/2 + TLS stack: Python's `ssl` and the `h2` package drive the
//! HBONE server (CONNECT, 200, data, half-close, and the 400/503 answers). Needs `python3` with
//! `h2` installed (`pip install h2`; `.ci/run` does it).

mod support;

use support::*;

#[tokio::test]
async fn python_h2_client_drives_the_hbone_server() {
    let mesh = Mesh::new();
    let server = mesh.forwarding_to(echo_server().await).await;
    let dir = tempfile::tempdir().unwrap();
    let svid = mesh
        .ca
        .issue(&id(CLIENT_ID), std::time::Duration::from_secs(3600))
        .unwrap();
    mesh_tls::write_svid(dir.path(), &svid, &mesh.ca.bundle()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/h2_connect_client.py"
    );
    let addr = server.local_addr();
    let output = tokio::time::timeout(
        STEP,
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg("8080")
            .arg(dir.path().join("svid.pem"))
            .arg(dir.path().join("svid.key"))
            .arg(dir.path().join("bundle.pem"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python client timed out")
    .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'h2'"),
        "the Python h2 package is missing: run `pip install h2`"
    );
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{stderr}"
    );
    for case in [
        "OK connect-200",
        "OK data-and-half-close",
        "OK authority-ip-mismatch-400",
        "OK authority-hostname-400",
        "OK not-connect-400",
        "OK own-hbone-port-503",
    ] {
        assert!(stdout.contains(case), "missing {case:?} in:\n{stdout}");
    }
}

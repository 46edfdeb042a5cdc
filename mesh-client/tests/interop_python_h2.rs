//! Interop with an independent HTTP/2 + TLS stack: Python's `ssl` and the `h2` package drive the
//! HBONE server (CONNECT, 200, data, half-close, and the 400/503 answers). Needs `python3`; the
//! `h2` package is installed from PyPI into the target directory if it is not importable.

mod support;

use support::*;

/// A PYTHONPATH under which `import h2` works, installing the package there if needed.
fn python_path_with_h2() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-h2");
    let importable = |path: &std::path::Path| {
        std::process::Command::new("python3")
            .args(["-c", "import h2"])
            .env("PYTHONPATH", path)
            .status()
            .expect("python3 must be installed")
            .success()
    };
    if !importable(&dir) {
        let status = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg("h2>=4,<5")
            .status()
            .expect("python3 -m pip must be available");
        assert!(status.success(), "installing the Python h2 package failed");
        assert!(
            importable(&dir),
            "h2 still not importable from {}",
            dir.display()
        );
    }
    dir
}

#[tokio::test]
async fn python_h2_client_drives_the_hbone_server() {
    let python_path = tokio::task::spawn_blocking(python_path_with_h2)
        .await
        .unwrap();
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
            .env("PYTHONPATH", &python_path)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python client timed out")
    .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
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

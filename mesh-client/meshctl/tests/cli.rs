//! Runs the built `meshctl` binary the way an operator would, in a scratch directory, and checks
//! its output, files and exit statuses (0 ok, 1 problems found, 2 could not do the job).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use tempfile::TempDir;

const WEB: &str = "spiffe://example.org/ns/shop/sa/web";

/// Runs meshctl with `args` and returns what it did.
fn meshctl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("run meshctl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything about a run, for assertion messages.
fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// Asserts the run succeeded and returns its stdout.
fn ok(out: Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    stdout(&out)
}

/// Asserts the run failed with status 2 and a one-line `meshctl: ` error, which it returns.
fn error(out: Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.starts_with("meshctl: "), "{}", describe(&out));
    assert_eq!(err.lines().count(), 1, "{}", describe(&out));
    err
}

/// `meshctl ca init` for example.org into `<tmp>/ca`.
fn init_ca(tmp: &TempDir) -> PathBuf {
    let ca = tmp.path().join("ca");
    ok(meshctl([
        "ca",
        "init",
        "--trust-domain",
        "example.org",
        "--out",
        path(&ca),
    ]));
    ca
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

#[test]
fn init_issue_inspect_round_trip() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(&tmp);
    for file in ["ca.pem", "ca.key", "bundle.pem"] {
        assert!(ca.join(file).is_file(), "{file} missing");
    }

    let svid_dir = tmp.path().join("web");
    let out = ok(meshctl([
        "ca",
        "issue",
        "--ca",
        path(&ca),
        "--id",
        WEB,
        "--out",
        path(&svid_dir),
        "--ttl",
        "2h",
    ]));
    assert!(out.contains(WEB), "{out}");
    for file in ["svid.pem", "svid.key", "bundle.pem"] {
        assert!(out.contains(file), "{file} not reported: {out}");
        assert!(svid_dir.join(file).is_file(), "{file} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [ca.join("ca.key"), svid_dir.join("svid.key")] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    let svid = svid_dir.join("svid.pem");
    let out = ok(meshctl(["cert", "inspect", path(&svid)]));
    let spiffe_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("SPIFFE ID:"))
        .unwrap_or_else(|| panic!("no SPIFFE ID line: {out}"));
    assert!(spiffe_line.ends_with(WEB), "{out}");
    assert!(out.contains("CA:         no"), "{out}");
    assert!(out.contains("problems:   none"), "{out}");
    // RFC 3339 UTC timestamps, and 2h minus a few seconds left.
    assert!(
        out.lines()
            .any(|l| l.contains("not after:") && l.trim_end().ends_with('Z')),
        "{out}"
    );
    assert!(
        out.contains("time left:  2h") || out.contains("time left:  1h 59m"),
        "{out}"
    );
}

#[test]
fn issued_svid_verifies_with_openssl() {
    let openssl = Path::new("/usr/bin/openssl");
    if !openssl.exists() {
        eprintln!("skipped: {} not installed", openssl.display());
        return;
    }
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(&tmp);
    let svid_dir = tmp.path().join("web");
    ok(meshctl([
        "ca",
        "issue",
        "--ca",
        path(&ca),
        "--id",
        WEB,
        "--out",
        path(&svid_dir),
    ]));
    let out = Command::new(openssl)
        .arg("verify")
        .arg("-CAfile")
        .arg(svid_dir.join("bundle.pem"))
        .arg(svid_dir.join("svid.pem"))
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).trim_end().ends_with(": OK"),
        "{}",
        describe(&out)
    );
}

#[test]
fn inspect_ca_certificate() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(&tmp);
    let out = ok(meshctl(["cert", "inspect", path(&ca.join("ca.pem"))]));
    assert!(out.contains("SPIFFE ID:  none (CA certificate)"), "{out}");
    assert!(out.contains("URI SANs:   spiffe://example.org\n"), "{out}");
    assert!(out.contains("CA:         yes"), "{out}");
    assert!(out.contains("problems:   none"), "{out}");
}

#[test]
fn inspect_expired_svid_reports_problem_with_status_1() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(&tmp);
    let svid_dir = tmp.path().join("short");
    ok(meshctl([
        "ca",
        "issue",
        "--ca",
        path(&ca),
        "--id",
        WEB,
        "--out",
        path(&svid_dir),
        "--ttl",
        "1s",
    ]));
    // Certificate times have one-second resolution: wait until notAfter is strictly past.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = meshctl(["cert", "inspect", path(&svid_dir.join("svid.pem"))]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("problems:\n    - expired"), "{text}");
    assert!(text.contains("time left:  none: expired"), "{text}");
}

#[test]
fn inspect_garbage_fails_naming_the_file() {
    let tmp = TempDir::new().unwrap();
    let garbage = tmp.path().join("garbage.pem");
    fs::write(&garbage, "this is not a certificate\n").unwrap();
    let err = error(meshctl(["cert", "inspect", path(&garbage)]));
    assert!(err.contains(path(&garbage)), "{err}");
    assert!(err.contains("CERTIFICATE"), "{err}");

    let truncated = tmp.path().join("truncated.pem");
    fs::write(&truncated, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
    let err = error(meshctl(["cert", "inspect", path(&truncated)]));
    assert!(err.contains(path(&truncated)), "{err}");
}

#[test]
fn inspect_missing_file_fails_naming_the_file() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("missing.pem");
    let err = error(meshctl(["cert", "inspect", path(&missing)]));
    assert!(err.contains("cannot read"), "{err}");
    assert!(err.contains(path(&missing)), "{err}");
}

#[test]
fn issue_for_foreign_trust_domain_fails() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(&tmp);
    let out_dir = tmp.path().join("other");
    let foreign = "spiffe://other.org/ns/shop/sa/web";
    let err = error(meshctl([
        "ca",
        "issue",
        "--ca",
        path(&ca),
        "--id",
        foreign,
        "--out",
        path(&out_dir),
    ]));
    assert!(err.contains("trust domain example.org"), "{err}");
    assert!(err.contains(foreign), "{err}");
    assert!(!out_dir.join("svid.pem").exists());
}

#[test]
fn issue_with_bad_ttl_fails_before_writing() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(&tmp);
    let out_dir = tmp.path().join("web");
    for ttl in ["5x", "24", "0s", "", "-1h", "1.5h"] {
        let err = error(meshctl([
            "ca",
            "issue",
            "--ca",
            path(&ca),
            "--id",
            WEB,
            "--out",
            path(&out_dir),
            "--ttl",
            ttl,
        ]));
        assert!(
            err.contains(&format!("invalid --ttl {ttl:?}")),
            "{ttl}: {err}"
        );
        assert!(
            err.contains("24h"),
            "the error should show a valid example: {err}"
        );
    }
    let err = error(meshctl([
        "ca",
        "issue",
        "--ca",
        path(&ca),
        "--id",
        WEB,
        "--out",
        path(&out_dir),
        "--ttl",
        "100000d",
    ]));
    assert!(err.contains("outlive its CA"), "{err}");
    assert!(!out_dir.exists());
}

#[test]
fn issue_rejects_malformed_ids() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(&tmp);
    let out_dir = tmp.path().join("web");
    for id in [
        "example.org/ns/a/sa/b",
        "spiffe://example.org",
        "spiffe://example.org/a//b",
    ] {
        let err = error(meshctl([
            "ca",
            "issue",
            "--ca",
            path(&ca),
            "--id",
            id,
            "--out",
            path(&out_dir),
        ]));
        assert!(err.contains(&format!("invalid --id {id:?}")), "{err}");
    }
}

#[test]
fn issue_from_a_directory_without_ca_points_at_init() {
    let tmp = TempDir::new().unwrap();
    let err = error(meshctl([
        "ca",
        "issue",
        "--ca",
        path(tmp.path()),
        "--id",
        WEB,
        "--out",
        path(&tmp.path().join("web")),
    ]));
    assert!(err.contains("meshctl ca init"), "{err}");
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(&tmp);
    let key = fs::read(ca.join("ca.key")).unwrap();
    let init = |extra: &[&str]| {
        let mut args = vec![
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            path(&ca),
        ];
        args.extend_from_slice(extra);
        meshctl(args)
    };

    let err = error(init(&[]));
    assert!(err.contains("--force"), "{err}");
    assert!(err.contains("ca.key"), "{err}");
    assert_eq!(
        fs::read(ca.join("ca.key")).unwrap(),
        key,
        "the key was replaced"
    );

    let out = ok(init(&["--force"]));
    assert!(out.contains("replaced"), "{out}");
    assert_ne!(
        fs::read(ca.join("ca.key")).unwrap(),
        key,
        "--force kept the old key"
    );
}

#[test]
fn init_rejects_a_bad_trust_domain() {
    let tmp = TempDir::new().unwrap();
    let out_dir = tmp.path().join("ca");
    let err = error(meshctl([
        "ca",
        "init",
        "--trust-domain",
        "Example.ORG",
        "--out",
        path(&out_dir),
    ]));
    assert!(err.contains("invalid --trust-domain"), "{err}");
    assert!(!out_dir.exists());
}

#[test]
fn usage_errors_exit_2() {
    let out = meshctl(["ca", "init"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let out = meshctl(["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    ok(meshctl(["--help"]));
}

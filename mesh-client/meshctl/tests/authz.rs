//! `meshctl authz check` run as an operator would: policy files on disk, a described request,
//! the verdict as the first word of stdout, exit status 0 either way and 2 for bad input.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Output},
};

use tempfile::TempDir;

/// Namespace `shop`: an ALLOW policy for `app: api` and a DENY pinned to the HTTP port.
const POLICIES: &str = include_str!("fixtures/authz-shop.yaml");

/// Root namespace: AUDIT, a dry-run DENY of plaintext, and a CUSTOM provider.
const MESH_WIDE: &str = include_str!("fixtures/authz-mesh.yaml");

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";

struct Files {
    _dir: TempDir,
    shop: PathBuf,
    mesh: PathBuf,
    dir: PathBuf,
}

fn files() -> Files {
    let dir = TempDir::new().unwrap();
    let shop = dir.path().join("shop.yaml");
    let mesh = dir.path().join("mesh.yaml");
    fs::write(&shop, POLICIES).unwrap();
    fs::write(&mesh, MESH_WIDE).unwrap();
    Files {
        dir: dir.path().to_owned(),
        _dir: dir,
        shop,
        mesh,
    }
}

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("run meshctl")
}

fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `authz check` with the two policy files, for workload shop/app=api, plus `args`;
/// asserts exit 0 and returns stdout.
fn check(f: &Files, args: &[&str]) -> String {
    let mut all = vec!["authz", "check", "--policy", f.shop.to_str().unwrap()];
    all.extend(["--policy", f.mesh.to_str().unwrap()]);
    all.extend(["--namespace", "shop", "--label", "app=api"]);
    all.extend(args);
    let out = meshctl(&all);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts the run failed with status 2 and returns its stderr.
fn bad_input(args: &[&str]) -> String {
    let out = meshctl(args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    String::from_utf8(out.stderr).unwrap()
}

fn first_word(stdout: &str) -> &str {
    stdout.split_whitespace().next().unwrap_or("")
}

#[test]
fn http_request_matching_an_allow_rule() {
    let f = files();
    let out = check(
        &f,
        &[
            "--principal",
            WEB,
            "--method",
            "GET",
            "--path",
            "/api/items?page=2",
        ],
    );
    assert_eq!(first_word(&out), "ALLOW", "{out}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains("ALLOW policy shop/allow-web rule 0 matched"),
        "{out}"
    );
    assert!(out.contains("HTTP GET /api/items?page=2"), "{out}");
    assert!(out.contains("5 of 5 policies apply"), "{out}");
}

#[test]
fn raw_tcp_cannot_satisfy_an_allow_rule_that_needs_http() {
    let f = files();
    let out = check(&f, &["--principal", WEB]);
    assert_eq!(first_word(&out), "DENY", "{out}");
    assert!(out.contains("no ALLOW policy matched"), "{out}");
    assert!(out.contains("1 ALLOW rule needs HTTP attributes"), "{out}");
    assert!(out.contains("raw TCP (L4)"), "{out}");
    // The L4-only rule (namespace + port) still allows raw TCP.
    let out = check(
        &f,
        &[
            "--principal",
            "cluster.local/ns/monitoring/sa/prometheus",
            "--port",
            "9090",
        ],
    );
    assert_eq!(first_word(&out), "ALLOW", "{out}");
    assert!(out.contains("shop/allow-web rule 1"), "{out}");
}

#[test]
fn deny_wins_and_headers_are_checked() {
    let f = files();
    let delete = [
        "--principal",
        WEB,
        "--port",
        "8080",
        "--method",
        "DELETE",
        "--path",
        "/api/x",
    ];
    let out = check(&f, &delete);
    assert_eq!(first_word(&out), "DENY", "{out}");
    assert!(
        out.contains("DENY policy shop/deny-delete rule 0 matched"),
        "{out}"
    );
    let mut with_header = delete.to_vec();
    with_header.extend(["--header", "X-Break-Glass=yes"]);
    let out = check(&f, &with_header);
    assert_eq!(
        first_word(&out),
        "DENY",
        "no ALLOW rule covers DELETE: {out}"
    );
    assert!(out.contains("no ALLOW policy matched"), "{out}");
    // Raw TCP to the pinned port: the DENY rule's HTTP conditions are assumed to match.
    let out = check(&f, &["--principal", WEB, "--port", "8080"]);
    assert_eq!(first_word(&out), "DENY", "{out}");
    assert!(
        out.contains("DENY policy shop/deny-delete rule 0 matched"),
        "{out}"
    );
    assert!(out.contains("(to[0].operation.methods, when[0] request.headers[x-break-glass]) cannot be checked without HTTP and were assumed to match"), "{out}");
}

#[test]
fn audit_dry_run_and_custom_are_reported_without_changing_the_verdict() {
    let f = files();
    let out = check(
        &f,
        &[
            "--principal",
            WEB,
            "--method",
            "GET",
            "--path",
            "/api/orders/7",
        ],
    );
    assert_eq!(first_word(&out), "ALLOW", "{out}");
    assert!(out.contains("custom:   allowed only if provider \"opa\" (CUSTOM policy istio-system/ext-authz rule 0) allows it too"), "{out}");

    // A plaintext peer: the dry-run DENY matches but is not enforced.
    let out = check(&f, &["--method", "GET", "--path", "/admin/users"]);
    assert_eq!(first_word(&out), "DENY", "no ALLOW rule matches: {out}");
    assert!(
        out.contains("reported: AUDIT policy istio-system/audit-admin rule 0 matched"),
        "{out}"
    );
    assert!(
        out.contains("reported: dry-run DENY policy istio-system/deny-plaintext rule 0 matched"),
        "{out}"
    );
    assert!(
        out.contains(
            "dry-run:  would DENY: DENY policy matched (istio-system/deny-plaintext rule 0)"
        ),
        "{out}"
    );
}

#[test]
fn scoping_by_namespace_and_labels() {
    let f = files();
    // Another namespace: only the mesh-wide policies apply, none of them ALLOW.
    let out = meshctl(&[
        "authz",
        "check",
        "--policy",
        f.shop.to_str().unwrap(),
        "--policy",
        f.mesh.to_str().unwrap(),
        "--namespace",
        "other",
    ]);
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(first_word(&out), "ALLOW", "{out}");
    assert!(
        out.contains("no ALLOW policy applies to this workload"),
        "{out}"
    );
    assert!(out.contains("3 of 5 policies apply"), "{out}");
    // Same namespace, other labels: the selector of allow-web does not match.
    let out = meshctl(&[
        "authz",
        "check",
        "--policy",
        f.shop.to_str().unwrap(),
        "--namespace",
        "shop",
        "--label",
        "app=db",
    ]);
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(first_word(&out), "ALLOW", "{out}");
    assert!(out.contains("1 of 2 policies apply"), "{out}");
}

#[test]
fn jwt_principal_and_claims() {
    let f = files();
    let policy = f.dir.join("jwt.yaml");
    fs::write(
        &policy,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: jwt, namespace: shop}\n\
         spec:\n  rules:\n  - from: [{source: {requestPrincipals: [\"https://idp/*\"]}}]\n    \
         when: [{key: \"request.auth.claims[realm][roles]\", values: [admin]}]\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "authz",
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "--namespace",
            "shop",
            "--method",
            "GET",
        ];
        args.extend(extra);
        let out = meshctl(&args);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let admin = [
        "--request-principal",
        "https://idp/alice",
        "--claim",
        "realm[roles]=reader",
        "--claim",
        "realm[roles]=admin",
    ];
    let out = run(&admin);
    assert_eq!(first_word(&out), "ALLOW", "{out}");
    assert!(out.contains("JWT principal https://idp/alice"), "{out}");
    assert_eq!(
        first_word(&run(&[
            "--claim",
            "iss=https://idp",
            "--claim",
            "sub=bob",
            "--claim",
            "realm[roles]=admin"
        ])),
        "ALLOW"
    );
    assert_eq!(
        first_word(&run(&["--request-principal", "https://idp/alice"])),
        "DENY"
    );
    assert_eq!(first_word(&run(&[])), "DENY");
}

#[test]
fn bad_policy_files_name_file_document_and_field() {
    let f = files();
    let broken = f.dir.join("broken.yaml");
    fs::write(
        &broken,
        format!("{POLICIES}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: bad, namespace: shop}}\nspec:\n  rules:\n  - from:\n    - source:\n        ipBlocks: [\"10.0.0.0/33\"]\n"),
    )
    .unwrap();
    let err = bad_input(&[
        "authz",
        "check",
        "--policy",
        f.shop.to_str().unwrap(),
        "--policy",
        broken.to_str().unwrap(),
    ]);
    assert!(
        err.starts_with(&format!(
            "meshctl: {}: document 3 (shop/bad): spec.rules[0].from[0].source.ipBlocks[0]: bad CIDR",
            broken.display()
        )),
        "{err}"
    );
    fs::write(&broken, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec: {action: DENY, rule: []}\n").unwrap();
    let err = bad_input(&["authz", "check", "--policy", broken.to_str().unwrap()]);
    assert!(
        err.contains("document 1: spec.rule: unknown field `rule`"),
        "{err}"
    );
    fs::write(&broken, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  targetRef: {kind: Gateway, name: gw}\n").unwrap();
    let err = bad_input(&["authz", "check", "--policy", broken.to_str().unwrap()]);
    assert!(err.contains("spec.targetRef: not supported"), "{err}");
    let err = bad_input(&[
        "authz",
        "check",
        "--policy",
        f.dir.join("missing.yaml").to_str().unwrap(),
    ]);
    assert!(
        err.contains("cannot read") && err.contains("missing.yaml"),
        "{err}"
    );
}

#[test]
fn bad_flags_exit_2() {
    let f = files();
    let shop = f.shop.to_str().unwrap();
    for (args, needle) in [
        (vec!["--label", "app"], "invalid --label \"app\""),
        (vec!["--source-ip", "10.0.0"], "invalid --source-ip"),
        (vec!["--principal", "spiffe://Bad/x"], "invalid --principal"),
        (
            vec!["--method", "GET", "--header", "=x"],
            "invalid --header",
        ),
        (
            vec!["--method", "GET", "--request-principal", "alice"],
            "ISSUER/SUBJECT",
        ),
        (
            vec!["--method", "GET", "--claim", "a[b=c"],
            "invalid --claim",
        ),
        (vec!["--path", "/x"], "--method"),
        (vec!["--port", "70000"], "70000"),
    ] {
        let mut all = vec!["authz", "check", "--policy", shop];
        all.extend(args);
        let err = bad_input(&all);
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    assert!(bad_input(&["authz", "check"]).contains("--policy"));
}

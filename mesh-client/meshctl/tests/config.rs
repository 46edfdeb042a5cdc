//! `meshctl config check` run as an operator would: YAML files on disk holding the mesh config
//! and Istio documents of several kinds; one summary line per valid document, one
//! `file:document:field: reason` line per problem, exit status 0, 1 or 2.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use tempfile::TempDir;

const TRAFFIC: &str = include_str!("fixtures/config-traffic.yaml");
const MESH: &str = include_str!("fixtures/config-mesh.yaml");
const BROKEN: &str = include_str!("fixtures/config-broken.yaml");
const AUTHZ: &str = include_str!("fixtures/authz-shop.yaml");

struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Self {
        let files = Self {
            dir: TempDir::new().unwrap(),
        };
        files.write("traffic.yaml", TRAFFIC);
        files.write("mesh.yaml", MESH);
        files.write("broken.yaml", BROKEN);
        files.write("authz.yaml", AUTHZ);
        files
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// Runs `meshctl config check` on `names` (relative to the scratch directory, so output
    /// lines start with the name) plus `extra` arguments.
    fn check(&self, names: &[&str], extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_meshctl"))
            .current_dir(self.dir.path())
            .args(["config", "check"])
            .args(names)
            .args(extra)
            .output()
            .expect("run meshctl")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts exit status `code` and returns stdout's lines.
fn lines(out: &Output, code: i32) -> Vec<String> {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    stdout(out).lines().map(str::to_owned).collect()
}

#[test]
fn valid_files_give_one_summary_line_per_document() {
    let files = Files::new();
    let out = files.check(&["traffic.yaml", "mesh.yaml", "authz.yaml"], &[]);
    let lines = lines(&out, 0);
    assert!(out.stderr.is_empty(), "{}", describe(&out));
    assert_eq!(lines.len(), 5, "{}", describe(&out));
    assert_eq!(
        lines[0],
        "traffic.yaml:1: DestinationRule bookinfo/reviews: host reviews.bookinfo.svc.cluster.local; \
         ROUND_ROBIN, connection pool (max 100 connections, 1000 requests, 3 retries), \
         outlier detection (7 consecutive 5xx, every 5m, eject 15m); 2 subsets (v1, v2)"
    );
    assert_eq!(
        lines[1],
        "traffic.yaml:2: VirtualService bookinfo/reviews: hosts reviews.bookinfo.svc.cluster.local; \
         2 http routes to reviews.bookinfo.svc.cluster.local subset v2, \
         reviews.bookinfo.svc.cluster.local subset v1; default route: 3 retries of 2s on \
         gateway-error,connect-failure,refused-stream, timeout 10s"
    );
    assert_eq!(
        lines[2],
        "mesh.yaml:1: MeshConfig: 1 service, 2 endpoints; traffic policy for 1 service"
    );
    assert_eq!(
        lines[3],
        "authz.yaml:1: AuthorizationPolicy shop/allow-web: ALLOW, 2 rules, for workloads app=api"
    );
    assert!(lines[4].starts_with("authz.yaml:2: AuthorizationPolicy shop/deny-delete: DENY"));
}

#[test]
fn every_problem_is_reported_with_file_document_and_field() {
    let files = Files::new();
    let out = files.check(&["broken.yaml", "traffic.yaml"], &[]);
    let lines = lines(&out, 1);
    let expected_prefixes = [
        "broken.yaml:1:spec.trafficPolicy.loadBalancer.simple: not supported: PASSTHROUGH",
        "broken.yaml:1:spec.trafficPolicy.outlierDetection.interval: \"0s\" is shorter than 1ms",
        "broken.yaml:1:spec.subsets[1].name: duplicate subset name \"v1\"",
        "broken.yaml:2:spec.http[0].retries.retryOnn: unknown field `retryOnn`",
        "broken.yaml:3:spec.http[0].route[0].destination.subset: subset \"v3\" of ratings.bookinfo.svc.cluster.local is not defined",
        "broken.yaml:4:kind: not supported: ServiceEntry (networking.istio.io/v1)",
        "broken.yaml:5:services[0].traffic_policy.connection_pool.tcp.connect_timeout: \"10\" is not a duration (missing unit)",
        // The valid file after the broken one is still checked.
        "traffic.yaml:1: DestinationRule bookinfo/reviews:",
        "traffic.yaml:2: VirtualService bookinfo/reviews:",
    ];
    assert_eq!(lines.len(), expected_prefixes.len(), "{}", describe(&out));
    for (line, prefix) in lines.iter().zip(expected_prefixes) {
        assert!(
            line.starts_with(prefix),
            "{line:?} should start with {prefix:?}"
        );
    }
    // Unknown-field errors point at the file's line, not the document's.
    assert!(lines[3].contains("line 21 column 29"), "{}", lines[3]);
}

#[test]
fn references_are_checked_across_files() {
    let files = Files::new();
    // The route in broken.yaml names ratings' subset v3; mesh.yaml defines ratings' v1 and v2.
    let only_routes = files.write(
        "routes.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: ratings, namespace: bookinfo }\nspec:\n  hosts: [ratings.bookinfo.svc.cluster.local]\n  http:\n  - route: [{ destination: { host: ratings, subset: v2 } }]\n",
    );
    assert!(only_routes.exists());
    // Alone, subset v2 is defined nowhere.
    let alone = lines(&files.check(&["routes.yaml"], &[]), 1);
    assert_eq!(alone.len(), 1);
    assert!(
        alone[0]
            .starts_with("routes.yaml:1:spec.http[0].route[0].destination.subset: subset \"v2\""),
        "{alone:?}"
    );
    // With the mesh config that defines it, it is valid; but mesh.yaml routes the same host.
    let out = files.check(&["mesh.yaml", "routes.yaml"], &[]);
    let both = lines(&out, 1);
    assert_eq!(
        both[0],
        "mesh.yaml:1: MeshConfig: 1 service, 2 endpoints; traffic policy for 1 service"
    );
    assert!(
        both[1].starts_with("routes.yaml:1:spec.hosts[0]: ratings.bookinfo.svc.cluster.local is already routed by VirtualService mesh-config/"),
        "{both:?}"
    );
    // Two DestinationRules for one host: the second is refused.
    files.write("again.yaml", TRAFFIC);
    let twice = lines(&files.check(&["traffic.yaml", "again.yaml"], &[]), 1);
    assert!(twice.iter().any(|l| l.starts_with("again.yaml:1:spec.host: reviews.bookinfo.svc.cluster.local already has DestinationRule bookinfo/reviews")), "{twice:?}");
    assert!(
        twice
            .iter()
            .any(|l| l.starts_with("again.yaml:2:spec.hosts[0]:")),
        "{twice:?}"
    );
}

#[test]
fn custom_policies_name_extension_providers_of_the_mesh_config() {
    let files = Files::new();
    files.write(
        "providers.yaml",
        "extension_providers:\n  - name: checker\n    envoy_ext_authz_http: { service: 127.0.0.1, port: 9000 }\n",
    );
    files.write(
        "custom.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ext, namespace: shop }\nspec:\n  action: CUSTOM\n  provider: { name: opa }\n  rules: [{}]\n",
    );
    // Alone, the policy cannot be judged: no mesh config says which providers exist.
    assert_eq!(lines(&files.check(&["custom.yaml"], &[]), 0).len(), 1);
    let out = files.check(&["providers.yaml", "custom.yaml"], &[]);
    let both = lines(&out, 1);
    assert_eq!(
        both[1],
        "custom.yaml:1:spec.provider.name: CUSTOM policy shop/ext names \"opa\", which is not an extension provider of the mesh config (configured: checker)"
    );
    // An unsupported provider field is named.
    files.write(
        "grpc.yaml",
        "extension_providers:\n  - name: opa\n    envoy_ext_authz_grpc: { service: opa, port: 9191 }\n",
    );
    let grpc = lines(&files.check(&["grpc.yaml"], &[]), 1);
    assert!(
        grpc[0]
            .starts_with("grpc.yaml:1:extension_providers[0].envoy_ext_authz_grpc: not supported"),
        "{grpc:?}"
    );
}

#[test]
fn namespace_and_domain_suffix_complete_short_names() {
    let files = Files::new();
    files.write(
        "short.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: cart }\nspec: { host: cart }\n",
    );
    let out = files.check(
        &["short.yaml"],
        &["--namespace", "shop", "--domain-suffix", "corp.internal"],
    );
    assert_eq!(
        lines(&out, 0),
        [
            "short.yaml:1: DestinationRule shop/cart: host cart.shop.svc.corp.internal; LEAST_REQUEST"
        ]
    );
}

#[test]
fn other_kinds_and_malformed_documents() {
    let files = Files::new();
    files.write(
        "mixed.yaml",
        "# leading comment\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: web, namespace: shop }\nspec:\n  selector: { matchLabels: { app: web } }\n  mtls: { mode: STRICT }\n  portLevelMtls: { 8080: { mode: PERMISSIVE } }\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: { name: jwt, namespace: shop }\nspec:\n  jwtRules:\n  - issuer: https://issuer.example\n    jwksUri: https://issuer.example/jwks.json\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\n---\n- just\n- a list\n---\napiVersion: v1\nmetadata: { name: x }\n---\nservices: [ { host: a.b, endpoints: [ { address: 10.0.0.1 } ] } ]\n---\nkey: [unclosed\n",
    );
    let out = files.check(&["mixed.yaml"], &[]);
    let lines = lines(&out, 1);
    let expected = [
        "mixed.yaml:1: PeerAuthentication shop/web: mTLS STRICT, port 8080 PERMISSIVE, for workloads app=web",
        "mixed.yaml:2: RequestAuthentication shop/jwt: 1 JWT rule (issuers https://issuer.example)",
        "mixed.yaml:4:kind: not supported: Deployment (apps/v1)",
        "mixed.yaml:5:.: a document must be a mapping",
        "mixed.yaml:6:kind: missing (apiVersion is v1)",
        "mixed.yaml:7:services[0].endpoints[0].address: \"10.0.0.1\" is not ip:port",
        "mixed.yaml:8:.: ",
    ];
    assert_eq!(lines.len(), expected.len(), "{}", describe(&out));
    for (line, prefix) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(prefix),
            "{line:?} should start with {prefix:?}"
        );
    }
    assert!(lines[6].contains("line 32"), "{}", lines[6]);
}

#[test]
fn mesh_config_is_checked_as_the_runtime_loads_it() {
    let files = Files::new();
    files.write(
        "workload.yaml",
        "workload: { name: web, namespace: shop }\nservices: []\n---\nidentity: { spiffe_id: not-an-id }\nservices:\n  - host: a.shop\n    traffic_policy: { load_balancer: { simple: random } }\n",
    );
    let out = files.check(&["workload.yaml"], &[]);
    let lines = lines(&out, 1);
    assert_eq!(lines.len(), 2, "{}", describe(&out));
    assert_eq!(
        lines[0],
        "workload.yaml:1: MeshConfig shop/web: 0 services, 0 endpoints"
    );
    assert!(
        lines[1].starts_with("workload.yaml:2:identity.spiffe_id: "),
        "{lines:?}"
    );
}

#[test]
fn unreadable_and_empty_files() {
    let files = Files::new();
    files.write("empty.yaml", "# nothing here\n");
    let out = files.check(&["missing.yaml", "traffic.yaml", "empty.yaml"], &[]);
    // The readable files are still checked; the unreadable one makes the status 2.
    let lines = lines(&out, 2);
    assert_eq!(lines.len(), 3, "{}", describe(&out));
    assert!(lines[0].starts_with("traffic.yaml:1: DestinationRule"));
    assert_eq!(lines[2], "empty.yaml:1:.: the file holds no YAML documents");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("meshctl: cannot read missing.yaml: "),
        "{stderr}"
    );
    assert!(files.path().join("traffic.yaml").exists());
    // No file at all is a usage error.
    let usage = files.check(&[], &[]);
    assert_eq!(usage.status.code(), Some(2), "{}", describe(&usage));
}

//! Every `from.source`, `to.operation` and `when` field, in each matcher form, through one
//! ALLOW rule: the request is allowed exactly when the rule matches.

use mesh_policy::authz::{
    Authorizer, AuthzRequest, HttpAttributes, RequestAuth, Workload, parse_policies,
};
use serde_json::json;

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ADMIN: &str = "spiffe://cluster.local/ns/ops/sa/admin";
const ODD: &str = "spiffe://example.org/workloads/batch";

/// Whether an ALLOW policy with the single rule `rule` (flow YAML) allows `req`.
fn allows(rule: &str, req: &AuthzRequest) -> bool {
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: p, namespace: shop}}\nspec: {{rules: [{rule}]}}\n"
    );
    let policies = parse_policies(&yaml).unwrap_or_else(|e| panic!("{rule}: {e}"));
    Authorizer::new(&policies, &Workload::new("shop"))
        .evaluate(req)
        .allowed
}

fn from(principal: Option<&str>) -> AuthzRequest {
    let req = AuthzRequest::tcp(
        "10.1.2.3".parse().unwrap(),
        "192.168.0.9:8080".parse().unwrap(),
    );
    match principal {
        Some(p) => req.with_principal(p.parse().unwrap()),
        None => req,
    }
}

fn get(path: &str) -> AuthzRequest {
    from(Some(WEB)).with_http(HttpAttributes::new("GET", path, "api.shop.svc:8080"))
}

fn with_http(http: HttpAttributes) -> AuthzRequest {
    from(Some(WEB)).with_http(http)
}

fn with_jwt(claims: serde_json::Value) -> AuthzRequest {
    get("/").with_auth(RequestAuth::from_claims(claims))
}

fn src(field: &str, values: &str) -> String {
    format!("{{from: [{{source: {{{field}: [{values}]}}}}]}}")
}

fn op(field: &str, values: &str) -> String {
    format!("{{to: [{{operation: {{{field}: [{values}]}}}}]}}")
}

fn when(key: &str, field: &str, values: &str) -> String {
    format!("{{when: [{{key: \"{key}\", {field}: [{values}]}}]}}")
}

#[test]
fn principals_in_every_form_without_the_spiffe_scheme() {
    for (pattern, web, admin) in [
        ("cluster.local/ns/shop/sa/web", true, false),
        ("\"cluster.local/ns/shop/*\"", true, false),
        ("\"*/sa/admin\"", false, true),
        ("\"*\"", true, true),
    ] {
        let rule = src("principals", pattern);
        assert_eq!(allows(&rule, &from(Some(WEB))), web, "{pattern}");
        assert_eq!(allows(&rule, &from(Some(ADMIN))), admin, "{pattern}");
        assert!(
            !allows(&rule, &from(None)),
            "plaintext has no principal: {pattern}"
        );
    }
}

#[test]
fn not_principals_admits_plaintext_unless_star() {
    let rule = src("notPrincipals", "cluster.local/ns/ops/sa/admin");
    assert!(allows(&rule, &from(Some(WEB))));
    assert!(!allows(&rule, &from(Some(ADMIN))));
    assert!(allows(&rule, &from(None)));
    // Istio's "deny plaintext" idiom, as an ALLOW: notPrincipals ["*"] matches only plaintext.
    let plaintext_only = src("notPrincipals", "\"*\"");
    assert!(allows(&plaintext_only, &from(None)));
    assert!(!allows(&plaintext_only, &from(Some(WEB))));
}

#[test]
fn namespaces_come_from_the_principal() {
    let rule = src("namespaces", "shop");
    assert!(allows(&rule, &from(Some(WEB))));
    assert!(!allows(&rule, &from(Some(ADMIN))));
    assert!(
        !allows(&rule, &from(Some(ODD))),
        "not Istio's form: no namespace"
    );
    assert!(!allows(&rule, &from(None)));
    assert!(allows(&src("namespaces", "\"sh*\""), &from(Some(WEB))));
    assert!(allows(&src("namespaces", "\"*ps\""), &from(Some(ADMIN))));
    let not = src("notNamespaces", "ops");
    assert!(allows(&not, &from(Some(WEB))) && !allows(&not, &from(Some(ADMIN))));
    assert!(allows(&not, &from(None)));
}

#[test]
fn request_principals_need_a_verified_jwt() {
    let alice = json!({"iss": "https://idp.example", "sub": "alice"});
    let rule = src("requestPrincipals", "\"https://idp.example/alice\"");
    assert!(allows(&rule, &with_jwt(alice.clone())));
    assert!(!allows(
        &rule,
        &with_jwt(json!({"iss": "https://idp.example", "sub": "bob"}))
    ));
    assert!(!allows(&rule, &get("/")), "no token");
    let any = src("requestPrincipals", "\"*\"");
    assert!(allows(&any, &with_jwt(alice.clone())) && !allows(&any, &get("/")));
    assert!(allows(
        &src("requestPrincipals", "\"https://idp.example/*\""),
        &with_jwt(alice.clone())
    ));
    let not = src("notRequestPrincipals", "\"*\"");
    assert!(allows(&not, &get("/")) && !allows(&not, &with_jwt(alice)));
}

#[test]
fn ip_blocks_and_remote_ip_blocks() {
    assert!(allows(&src("ipBlocks", "10.0.0.0/8"), &from(None)));
    assert!(allows(&src("ipBlocks", "10.1.2.3"), &from(None)));
    assert!(!allows(
        &src("ipBlocks", "10.1.2.4, 172.16.0.0/12"),
        &from(None)
    ));
    assert!(!allows(&src("notIpBlocks", "10.1.0.0/16"), &from(None)));
    let mapped = AuthzRequest::tcp(
        "::ffff:10.1.2.3".parse().unwrap(),
        "[::1]:80".parse().unwrap(),
    );
    assert!(
        allows(&src("ipBlocks", "10.0.0.0/8"), &mapped),
        "IPv4-mapped peers match IPv4 blocks"
    );
    assert!(allows(
        &src("ipBlocks", "\"::/0\""),
        &AuthzRequest::tcp("2001:db8::1".parse().unwrap(), "[::1]:80".parse().unwrap())
    ));
    // remote.ip: the original client when known, else the peer (as Envoy).
    let rule = src("remoteIpBlocks", "203.0.113.0/24");
    assert!(!allows(&rule, &from(None)));
    assert!(allows(
        &rule,
        &from(None).with_remote_ip("203.0.113.7".parse().unwrap())
    ));
    assert!(allows(&src("remoteIpBlocks", "10.1.2.3"), &from(None)));
    assert!(!allows(
        &src("notRemoteIpBlocks", "10.0.0.0/8"),
        &from(None)
    ));
}

#[test]
fn hosts_are_case_insensitive() {
    let host = |h: &str| with_http(HttpAttributes::new("GET", "/", h));
    assert!(allows(&op("hosts", "Api.Shop.SVC"), &host("api.shop.svc")));
    assert!(allows(&op("hosts", "api.shop.svc"), &host("API.SHOP.svc")));
    assert!(
        !allows(&op("hosts", "api.shop.svc"), &host("api.shop.svc:8080")),
        "exact includes the port"
    );
    assert!(allows(
        &op("hosts", "\"api.shop.svc*\""),
        &host("api.shop.svc:8080")
    ));
    assert!(allows(
        &op("hosts", "\"*.Example.com\""),
        &host("www.EXAMPLE.com")
    ));
    assert!(!allows(
        &op("hosts", "\"*.example.com\""),
        &host("example.com")
    ));
    assert!(allows(&op("notHosts", "\"*.internal\""), &host("a.public")));
    assert!(!allows(
        &op("notHosts", "\"*.internal\""),
        &host("a.INTERNAL")
    ));
}

#[test]
fn ports_methods_paths() {
    assert!(allows(&op("ports", "\"8080\""), &from(None)));
    assert!(!allows(&op("ports", "\"80\", 443"), &from(None)));
    assert!(!allows(&op("notPorts", "8080"), &from(None)));
    assert!(allows(&op("methods", "GET, HEAD"), &get("/")));
    assert!(
        !allows(&op("methods", "get"), &get("/")),
        "methods are case-sensitive"
    );
    assert!(!allows(&op("notMethods", "GET"), &get("/")));
    for (pattern, path, expected) in [
        ("/info", "/info", true),
        ("/info", "/info?x=1", true),
        ("/info", "/info/", false),
        ("\"/api/*\"", "/api/v1/users", true),
        ("\"/api/*\"", "/apiv1", false),
        ("\"*.png\"", "/img/a.png?w=2", true),
        ("\"*.png\"", "/img/a.jpg", false),
        ("\"*\"", "/anything", true),
    ] {
        assert_eq!(
            allows(&op("paths", pattern), &get(path)),
            expected,
            "{pattern} vs {path}"
        );
    }
    assert!(!allows(&op("notPaths", "\"/admin/*\""), &get("/admin/x")));
    assert!(allows(&op("notPaths", "\"/admin/*\""), &get("/public")));
}

#[test]
fn sources_and_operations_are_any_of_conditions_all_of() {
    let rule = "{from: [{source: {namespaces: [ops]}}, {source: {ipBlocks: [10.0.0.0/8]}}], \
                to: [{operation: {ports: [\"1\"]}}, {operation: {methods: [GET]}}]}";
    assert!(
        allows(rule, &get("/")),
        "second source and second operation match"
    );
    let and = "{when: [{key: source.namespace, values: [shop]}, {key: destination.port, values: [\"9\"]}]}";
    assert!(!allows(and, &get("/")), "every condition must hold");
    let fields_and = "{from: [{source: {namespaces: [shop], ipBlocks: [192.0.2.0/24]}}]}";
    assert!(
        !allows(fields_and, &get("/")),
        "every field of a source must hold"
    );
}

#[test]
fn when_connection_keys() {
    let req = || from(Some(WEB)).with_sni("api.shop.svc");
    assert!(allows(&when("source.ip", "values", "10.0.0.0/8"), &req()));
    assert!(!allows(&when("source.ip", "notValues", "10.1.2.3"), &req()));
    assert!(allows(&when("remote.ip", "values", "10.1.2.3"), &req()));
    assert!(allows(
        &when("destination.ip", "values", "192.168.0.0/16"),
        &req()
    ));
    assert!(!allows(
        &when("destination.ip", "values", "192.168.1.0/24"),
        &req()
    ));
    assert!(allows(
        &when("destination.port", "values", "\"8080\""),
        &req()
    ));
    assert!(!allows(
        &when("destination.port", "notValues", "8080"),
        &req()
    ));
    assert!(allows(&when("source.namespace", "values", "shop"), &req()));
    assert!(allows(
        &when("source.principal", "values", "\"*/sa/web\""),
        &req()
    ));
    assert!(!allows(
        &when("source.principal", "values", "\"*\""),
        &from(None)
    ));
    assert!(allows(
        &when("connection.sni", "values", "\"*.shop.svc\""),
        &req()
    ));
    assert!(
        !allows(&when("connection.sni", "values", "\"*\""), &from(None)),
        "no SNI sent"
    );
    assert!(allows(
        &when("connection.sni", "notValues", "other"),
        &from(None)
    ));
}

#[test]
fn when_request_headers() {
    let req = with_http(
        HttpAttributes::new("GET", "/", "h")
            .with_header("X-User", "alice")
            .with_header("x-user", "bob")
            .with_header("X-Empty", ""),
    );
    assert!(
        allows(
            &when("request.headers[x-user]", "values", "\"alice,bob\""),
            &req
        ),
        "repeated headers joined"
    );
    assert!(allows(
        &when("request.headers[X-USER]", "values", "\"alice*\""),
        &req
    ));
    assert!(
        allows(&when("request.headers[x-empty]", "values", "\"*\""), &req),
        "present, even empty"
    );
    assert!(!allows(
        &when("request.headers[x-missing]", "values", "\"*\""),
        &req
    ));
    assert!(allows(
        &when("request.headers[x-missing]", "notValues", "\"*\""),
        &req
    ));
    assert!(!allows(
        &when("request.headers[x-user]", "notValues", "\"*bob\""),
        &req
    )); // HTTP/2 pseudo-headers read the request's own attributes, as in Envoy.
    assert!(allows(
        &when("request.headers[:method]", "values", "GET"),
        &req
    ));
    assert!(allows(
        &when("request.headers[:authority]", "values", "h"),
        &req
    ));
    assert!(!allows(
        &when("request.headers[:path]", "values", "/x"),
        &req
    ));
}

#[test]
fn when_request_auth_keys() {
    let req = with_jwt(json!({
        "iss": "https://idp", "sub": "alice", "aud": ["api", "web"], "azp": "cli",
        "groups": ["dev", "ops"], "email": "a@example.com", "admin": true,
        "realm": {"roles": ["reader"], "level": "gold"}
    }));
    assert!(allows(
        &when("request.auth.principal", "values", "\"https://idp/alice\""),
        &req
    ));
    assert!(allows(
        &when("request.auth.audiences", "values", "web"),
        &req
    ));
    assert!(
        !allows(&when("request.auth.audiences", "notValues", "api"), &req),
        "any audience refused"
    );
    assert!(allows(
        &when("request.auth.presenter", "values", "cli"),
        &req
    ));
    assert!(
        allows(&when("request.auth.claims[groups]", "values", "ops"), &req),
        "list claims"
    );
    assert!(allows(
        &when("request.auth.claims[email]", "values", "\"*@example.com\""),
        &req
    ));
    assert!(
        allows(
            &when("request.auth.claims[realm][roles]", "values", "reader"),
            &req
        ),
        "nested"
    );
    assert!(allows(
        &when("request.auth.claims[realm][level]", "values", "gold"),
        &req
    ));
    assert!(
        !allows(
            &when("request.auth.claims[admin]", "values", "\"true\""),
            &req
        ),
        "only strings match"
    );
    assert!(!allows(
        &when("request.auth.claims[missing]", "values", "\"*\""),
        &req
    ));
    assert!(
        !allows(
            &when("request.auth.principal", "values", "\"*\""),
            &get("/")
        ),
        "no token"
    );
    assert!(allows(
        &when("request.auth.claims[groups]", "notValues", "root"),
        &get("/")
    ));
}

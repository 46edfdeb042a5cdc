//! VirtualServices as Istio users write them (request routing, traffic shifting, timeouts and
//! retries from istio.io's tasks, written out here): routes chosen per request, weights, the
//! retry policy and timeout attached to the resolved call, and every refusal naming its field.

use std::time::Duration;

use mesh_core::{
    rng::SplitMix64,
    traffic::{
        AttemptFailure, ReferenceError, RequestAttributes, RetryPolicy, RouteError, TrafficConfig,
        TrafficErrorKind, parse_resources,
    },
};

const RULES: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: bookinfo }
spec:
  host: reviews
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
  - { name: v3, labels: { version: v3 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings, namespace: bookinfo }
spec:
  host: ratings
  trafficPolicy:
    connectionPool: { http: { maxRetries: 5 } }
  subsets:
  - { name: v1, labels: { version: v1 } }
"#;

const ROUTES: &str = r#"
# Request routing: jason sees v2, everyone else v1; a slow path gets a timeout.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: bookinfo }
spec:
  hosts:
  - reviews
  gateways: [mesh]
  http:
  - name: jason
    match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - name: shifted
    match:
    - uri: { prefix: /shift }
    route:
    - destination: { host: reviews, subset: v1 }
      weight: 80
    - destination: { host: reviews, subset: v3 }
      weight: 20
    timeout: 0.5s
  - route:
    - destination:
        host: reviews
        subset: v1
---
# Retries: 3 attempts of at most 2s on gateway errors and connect failures.
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: ratings, namespace: bookinfo }
spec:
  hosts: [ratings]
  http:
  - match:
    - method: { exact: POST }
      uri: { regex: "/ratings/[0-9]+" }
    route:
    - destination: { host: ratings, subset: v1, port: { number: 9080 } }
    retries:
      attempts: 0
  - route:
    - destination: { host: ratings, subset: v1 }
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream,unavailable,409
      retryRemoteLocalities: true
      backoff: 50ms
    timeout: 10s
"#;

fn config() -> TrafficConfig {
    let mut resources = parse_resources(RULES).unwrap_or_else(|e| panic!("{e}"));
    resources.extend(parse_resources(ROUTES).unwrap_or_else(|e| panic!("{e}")));
    TrafficConfig::from_resources(resources).unwrap_or_else(|e| panic!("{e:?}"))
}

const REVIEWS: &str = "reviews.bookinfo.svc.cluster.local";
const RATINGS: &str = "ratings.bookinfo.svc.cluster.local";

#[test]
fn header_match_routes_to_a_subset() {
    let config = config();
    let mut rng = SplitMix64::new(1);
    let jason = RequestAttributes::new("GET", "/reviews/1").with_header("End-User", "jason");
    let other = RequestAttributes::new("GET", "/reviews/1").with_header("end-user", "kim");
    let call = config.resolve(REVIEWS, 9080, &jason, &mut rng).unwrap();
    assert_eq!(call.destination.subset.as_deref(), Some("v2"));
    assert_eq!(call.destination.port, Some(9080));
    assert_eq!(call.policy.retry(), &RetryPolicy::default());
    assert_eq!(call.policy.timeout(), None);
    let route = config.route(REVIEWS, 9080, &other, &mut rng).unwrap();
    assert_eq!(route.destination.subset.as_deref(), Some("v1"));
    assert_eq!(route.route, None);
    let route = config.route(REVIEWS, 9080, &jason, &mut rng).unwrap();
    assert_eq!(route.route.as_deref(), Some("jason"));
}

#[test]
fn weighted_shift_and_timeout() {
    let config = config();
    let mut rng = SplitMix64::new(42);
    let request = RequestAttributes::new("GET", "/shift/a");
    let mut v3 = 0;
    for _ in 0..5_000 {
        let call = config.resolve(REVIEWS, 9080, &request, &mut rng).unwrap();
        assert_eq!(call.policy.timeout(), Some(Duration::from_millis(500)));
        if call.destination.subset.as_deref() == Some("v3") {
            v3 += 1;
        }
    }
    assert!((900..1_100).contains(&v3), "v3 got {v3} of 5000");
}

#[test]
fn retries_and_timeouts_reach_the_resolved_call() {
    let config = config();
    let mut rng = SplitMix64::new(3);
    let post = RequestAttributes::new("POST", "/ratings/17?x=1");
    let call = config.resolve(RATINGS, 8080, &post, &mut rng).unwrap();
    assert_eq!(call.destination.port, Some(9080), "the route's port wins");
    assert_eq!(call.policy.retry().attempts, 0);
    assert_eq!(call.policy.breaker_limits().max_retries, 5);

    let get = RequestAttributes::new("GET", "/ratings/17");
    let call = config.resolve(RATINGS, 8080, &get, &mut rng).unwrap();
    assert_eq!(call.destination.port, Some(8080));
    let retry = call.policy.retry();
    assert_eq!(retry.attempts, 3);
    assert_eq!(retry.per_try_timeout, Some(Duration::from_secs(2)));
    assert!(retry.retry_remote_localities);
    assert_eq!(retry.backoff, Some(Duration::from_millis(50)));
    assert_eq!(call.policy.timeout(), Some(Duration::from_secs(10)));
    let on = &retry.retry_on;
    assert!(on.retries_status(502) && on.retries_status(409) && !on.retries_status(500));
    assert!(on.retries_grpc(14) && !on.retries_grpc(1));
    assert!(on.retries_failure(AttemptFailure::ConnectFailure));
    assert!(
        on.retries_failure(AttemptFailure::Reset),
        "gateway-error covers resets"
    );
}

#[test]
fn hosts_without_virtual_service_and_unmatched_requests() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: api, namespace: shop }
spec:
  hosts: [api.shop.svc.cluster.local, "*.internal.example"]
  http:
  - match:
    - uri: { exact: /login }
      ignoreUriCase: true
    - uri: { prefix: /v2/ }
      queryParams: { debug: {} }
      withoutHeaders: { x-legacy: {} }
      port: 8080
    route: [{ destination: { host: api-v2.shop.svc.cluster.local } }]
"#;
    let config = TrafficConfig::from_resources(parse_resources(yaml).unwrap()).unwrap();
    let mut rng = SplitMix64::new(0);
    let route = |host: &str, port: u16, r: &RequestAttributes| {
        config.route(host, port, r, &mut SplitMix64::new(0))
    };
    let login = RequestAttributes::new("GET", "/LOGIN?next=/");
    assert_eq!(
        route("api.shop.svc.cluster.local", 80, &login)
            .unwrap()
            .destination
            .host,
        "api-v2.shop.svc.cluster.local"
    );
    let v2 = RequestAttributes::new("GET", "/v2/items?debug");
    assert!(route("api.shop.svc.cluster.local", 8080, &v2).is_ok());
    assert!(
        route("x.internal.example", 8080, &v2).is_ok(),
        "wildcard host"
    );
    let err = route("api.shop.svc.cluster.local", 9090, &v2).unwrap_err();
    assert!(matches!(err, RouteError::NoRoute { .. }), "{err}");
    assert!(err.to_string().contains("shop/api"), "{err}");
    let legacy = v2.clone().with_header("x-legacy", "1");
    assert!(route("api.shop.svc.cluster.local", 8080, &legacy).is_err());
    // No VirtualService: straight to the host, Istio's default retries.
    let other = config
        .resolve("db.shop.svc.cluster.local", 5432, &login, &mut rng)
        .unwrap();
    assert_eq!(other.destination.host, "db.shop.svc.cluster.local");
    assert_eq!(other.destination.port, Some(5432));
    assert_eq!(other.policy.retry().attempts, 2);
}

fn reference_errors(yaml: &str) -> Vec<ReferenceError> {
    TrafficConfig::from_resources(parse_resources(yaml).unwrap()).unwrap_err()
}

#[test]
fn dangling_subsets_and_duplicate_hosts() {
    let yaml = format!(
        "{RULES}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews-canary, namespace: bookinfo }
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: { host: reviews, subset: v4 }
      weight: 90
    - destination: { host: details, subset: v1 }
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-again, namespace: bookinfo }
spec:
  host: reviews.bookinfo.svc.cluster.local
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews-twice, namespace: bookinfo }
spec:
  hosts: [reviews]
  http: [{ route: [{ destination: { host: reviews } }] }]
"#
    );
    let errors = reference_errors(&yaml);
    let found: Vec<(String, &str)> = errors
        .iter()
        .map(|e| {
            (
                format!("{} {}/{}", e.kind, e.namespace, e.name),
                e.path.as_str(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("DestinationRule bookinfo/reviews-again".into(), "host"),
            (
                "VirtualService bookinfo/reviews-canary".into(),
                "http[0].route[0].destination.subset"
            ),
            (
                "VirtualService bookinfo/reviews-canary".into(),
                "http[0].route[1].destination.subset"
            ),
            ("VirtualService bookinfo/reviews-twice".into(), "hosts[0]"),
        ]
    );
    assert!(
        errors[1].reason.contains("v1, v2, v3"),
        "{}",
        errors[1].reason
    );
    assert!(
        errors[2].reason.contains("no DestinationRule"),
        "{}",
        errors[2].reason
    );
    assert!(errors[0].to_string().contains("merge"), "{}", errors[0]);
}

/// Asserts the VirtualService spec is refused at `path` with `kind`.
fn refused(spec: &str, path: &str, kind: TrafficErrorKind, text: &str) {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: r, namespace: shop }}\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let errors = parse_resources(&yaml).unwrap_err();
    let Some(e) = errors.errors().iter().find(|e| e.path == path) else {
        panic!("no error at {path}:\n{errors}\n---\n{yaml}");
    };
    assert_eq!(e.kind, kind, "{e}");
    assert!(e.to_string().contains(text), "{e} lacks {text:?}");
}

#[test]
fn virtual_service_field_errors() {
    use TrafficErrorKind::{Invalid, Syntax, Unsupported};
    let route = "route: [{ destination: { host: r } }]";
    let cases = [
        (format!("http: [{{ {route} }}]"), "spec.hosts", Invalid, "at least one host"),
        ("hosts: [r]".to_owned(), "spec.http", Invalid, "at least one http route"),
        ("hosts: [R]\nhttp: [{ route: [{ destination: { host: r } }] }]".to_owned(), "spec.hosts[0]", Invalid, "lowercase"),
        (format!("hosts: [r]\ngateways: [istio-system/ingress]\nhttp: [{{ {route} }}]"), "spec.gateways[0]", Unsupported, "mesh"),
        (format!("hosts: [r]\ntcp: [{{ route: [] }}]\nhttp: [{{ {route} }}]"), "spec.tcp", Unsupported, "TCP"),
        (format!("hosts: [r]\ntls: []\nhttp: [{{ {route} }}]"), "spec.tls", Unsupported, ""),
        (format!("hosts: [r]\nexportTo: ['*']\nhttp: [{{ {route} }}]"), "spec.exportTo", Unsupported, ""),
        ("hosts: [r]\nhttp: [{ timeout: 1s }]".to_owned(), "spec.http[0].route", Invalid, "destination"),
        ("hosts: [r]\nhttp: [{ route: [{ weight: 10 }] }]".to_owned(), "spec.http[0].route[0].destination", Invalid, "required"),
        ("hosts: [r]\nhttp: [{ route: [{ destination: { subset: v1 } }] }]".to_owned(), "spec.http[0].route[0].destination.host", Invalid, "required"),
        ("hosts: [r]\nhttp: [{ route: [{ destination: { host: '*.shop' } }] }]".to_owned(), "spec.http[0].route[0].destination.host", Unsupported, "wildcard"),
        ("hosts: [r]\nhttp: [{ route: [{ destination: { host: r, subset: V1 } }] }]".to_owned(), "spec.http[0].route[0].destination.subset", Invalid, "subset name"),
        ("hosts: [r]\nhttp: [{ route: [{ destination: { host: r, port: { number: 0 } } }] }]".to_owned(), "spec.http[0].route[0].destination.port.number", Invalid, "1..65535"),
        ("hosts: [r]\nhttp: [{ route: [{ destination: { host: r, port: { name: http } } }] }]".to_owned(), "spec.http[0].route[0].destination.port.name", Syntax, "unknown field `name`"),
        ("hosts: [r]\nhttp: [{ route: [{ destination: { host: r }, weight: -5 }] }]".to_owned(), "spec.http[0].route[0].weight", Syntax, "-5"),
        ("hosts: [r]\nhttp: [{ route: [{ destination: { host: r } }, { destination: { host: s } }] }]".to_owned(), "spec.http[0].route", Invalid, "add up to 0"),
        ("hosts: [r]\nhttp: [{ route: [{ destination: { host: r }, headers: { request: { set: { a: b } } } }] }]".to_owned(), "spec.http[0].route[0].headers", Unsupported, "header"),
        (format!("hosts: [r]\nhttp: [{{ {route}, timeout: 0s }}]"), "spec.http[0].timeout", Invalid, "1ms"),
        (format!("hosts: [r]\nhttp: [{{ {route}, retries: {{ attempts: 0, perTryTimeout: 1s }} }}]"), "spec.http[0].retries.attempts", Invalid, "attempts is 0"),
        (format!("hosts: [r]\nhttp: [{{ {route}, retries: {{ attempts: 2, retryOn: '5xx, reset' }} }}]"), "spec.http[0].retries.retryOn", Invalid, "\" reset\""),
        (format!("hosts: [r]\nhttp: [{{ {route}, retries: {{ attempts: 2, retryOn: server-error }} }}]"), "spec.http[0].retries.retryOn", Invalid, "server-error"),
        (format!("hosts: [r]\nhttp: [{{ {route}, retries: {{ attempts: 2, perTryTimeout: 2 }} }}]"), "spec.http[0].retries.perTryTimeout", Invalid, "unit"),
        (format!("hosts: [r]\nhttp: [{{ {route}, retries: {{ attempts: 2, backoff: 0ms }} }}]"), "spec.http[0].retries.backoff", Invalid, "1ms"),
        (format!("hosts: [r]\nhttp: [{{ {route}, retries: {{ attempts: 2, retryBudget: {{}} }} }}]"), "spec.http[0].retries.retryBudget", Syntax, "unknown field"),
        (format!("hosts: [r]\nhttp: [{{ {route}, fault: {{ abort: {{ httpStatus: 500 }} }} }}]"), "spec.http[0].fault", Unsupported, "fault injection"),
        (format!("hosts: [r]\nhttp: [{{ {route}, mirror: {{ host: m }} }}]"), "spec.http[0].mirror", Unsupported, "mirroring"),
        (format!("hosts: [r]\nhttp: [{{ {route}, rewrite: {{ uri: / }} }}]"), "spec.http[0].rewrite", Unsupported, "rewrite"),
        ("hosts: [r]\nhttp: [{ redirect: { uri: /x } }]".to_owned(), "spec.http[0].redirect", Unsupported, "redirect"),
        ("hosts: [r]\nhttp: [{ directResponse: { status: 503 } }]".to_owned(), "spec.http[0].directResponse", Unsupported, ""),
        ("hosts: [r]\nhttp: [{ delegate: { name: x } }]".to_owned(), "spec.http[0].delegate", Unsupported, "delegation"),
        (format!("hosts: [r]\nhttp: [{{ {route}, corsPolicy: {{}} }}]"), "spec.http[0].corsPolicy", Unsupported, "CORS"),
        (format!("hosts: [r]\nhttp: [{{ {route}, headers: {{ request: {{ add: {{ a: b }} }} }} }}]"), "spec.http[0].headers", Unsupported, "header manipulation"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ uri: {{}} }}] }}]"), "spec.http[0].match[0].uri", Invalid, "one of exact, prefix or regex"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ uri: {{ exact: /a, prefix: /b }} }}] }}]"), "spec.http[0].match[0].uri", Invalid, "only one"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ uri: {{ regex: '(' }} }}] }}]"), "spec.http[0].match[0].uri.regex", Invalid, "regular expression"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ method: {{ exact: GET }}, uri: {{ suffix: /a }} }}] }}]"), "spec.http[0].match[0].uri.suffix", Syntax, "unknown field"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ headers: {{ 'bad name': {{ exact: x }} }} }}] }}]"), "spec.http[0].match[0].headers.bad name", Invalid, "header name"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ headers: {{ '@request.auth.claims.group': {{ exact: x }} }} }}] }}]"), "spec.http[0].match[0].headers.@request.auth.claims.group", Unsupported, "JWT"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ withoutHeaders: {{ x: {{ regex: '[' }} }} }}] }}]"), "spec.http[0].match[0].withoutHeaders.x.regex", Invalid, "regular expression"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ queryParams: {{ q: {{ exact: a, regex: b }} }} }}] }}]"), "spec.http[0].match[0].queryParams.q", Invalid, "only one"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ port: 0 }}] }}]"), "spec.http[0].match[0].port", Invalid, "1..65535"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ sourceLabels: {{ app: a }} }}] }}]"), "spec.http[0].match[0].sourceLabels", Unsupported, "caller"),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ sourceNamespace: a }}] }}]"), "spec.http[0].match[0].sourceNamespace", Unsupported, ""),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ gateways: [g] }}] }}]"), "spec.http[0].match[0].gateways", Unsupported, ""),
        (format!("hosts: [r]\nhttp: [{{ {route}, match: [{{ statPrefix: s }}] }}]"), "spec.http[0].match[0].statPrefix", Unsupported, ""),
    ];
    for (spec, path, kind, text) in cases {
        refused(&spec, path, kind, text);
    }
}

/// Which hosts the HTTP client may resolve once and keep: only those where no request
/// attribute can change the route.
#[test]
fn resolves_alike_only_when_no_request_attribute_decides() {
    let config = config();
    // Header, URI and weight decide for reviews; method and URI for ratings.
    assert!(!config.resolves_alike(REVIEWS, 9080));
    assert!(!config.resolves_alike(RATINGS, 9080));
    // No VirtualService: the host itself, always.
    assert!(config.resolves_alike("details.bookinfo.svc.cluster.local", 9080));
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: shop }
spec:
  hosts: [shop]
  http:
  - match: [{ port: 8080 }]
    route: [{ destination: { host: shop, port: { number: 9090 } } }]
  - match: [{ port: 8443 }]
    route:
    - { destination: { host: shop }, weight: 50 }
    - { destination: { host: shop-canary }, weight: 50 }
  - retries: { attempts: 5 }
    route: [{ destination: { host: shop } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: cart, namespace: shop }
spec:
  hosts: [cart]
  http:
  - route:
    - { destination: { host: cart }, weight: 90 }
    - { destination: { host: cart-v2 }, weight: 10 }
"#;
    let config =
        TrafficConfig::from_resources(parse_resources(yaml).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e:?}"));
    // Port-only matches are decided by the port called.
    assert!(config.resolves_alike("shop.shop.svc.cluster.local", 8080));
    assert!(
        !config.resolves_alike("shop.shop.svc.cluster.local", 8443),
        "weighted split"
    );
    assert!(
        config.resolves_alike("shop.shop.svc.cluster.local", 7000),
        "falls to the catch-all route"
    );
    assert!(
        !config.resolves_alike("cart.shop.svc.cluster.local", 80),
        "weighted split"
    );
}

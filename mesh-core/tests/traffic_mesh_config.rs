//! The mesh config's own `traffic_policy:` section: the same model as Istio's resources, in
//! snake_case, with errors naming config paths, and documents without it unchanged.

use std::time::Duration;

use mesh_core::{
    balance::{MaglevConfig, Policy},
    config::{ConfigError, MeshConfig},
    rng::SplitMix64,
    traffic::{HashKeySource, RequestAttributes, TlsMode, TrafficConfig, parse_resources},
};

const CONFIG: &str = r#"
services:
  - host: reviews.shop.svc.cluster.local
    ports: [{ port: 9080, protocol: http }]
    identities: [spiffe://cluster.local/ns/shop/sa/reviews]
    endpoints:
      - { address: 10.0.0.1:9080, labels: { version: v1 } }
      - { address: 10.0.0.2:9080, labels: { version: v2 } }
    traffic_policy:
      load_balancer:
        consistent_hash: { http_header_name: x-user, maglev: { table_size: 65537 } }
        locality_lb_setting: { enabled: false }
      connection_pool:
        tcp: { max_connections: 100, connect_timeout: 250ms }
        http: { http1_max_pending_requests: 10, http2_max_requests: 1000, max_retries: 4 }
      outlier_detection:
        consecutive_5xx_errors: 3
        consecutive_gateway_errors: 2
        interval: 5s
        base_ejection_time: 1m
        max_ejection_percent: 50
        min_health_percent: 20
      port_level_settings:
        - port: { number: 9443 }
          tls: { mode: disable }
      subsets:
        - { name: v1, labels: { version: v1 } }
        - name: v2
          labels: { version: v2 }
          traffic_policy: { load_balancer: { simple: round_robin } }
      http:
        - match: [{ headers: { x-canary: { exact: "1" } } }]
          route: [{ destination: { subset: v2 } }]
          retries: { attempts: 1, retry_on: "5xx" }
        - route:
            - { destination: { subset: v1 }, weight: 90 }
            - { destination: { subset: v2 }, weight: 10 }
          retries: { attempts: 3, per_try_timeout: 1s, retry_on: "gateway-error,connect-failure,cancelled" }
          timeout: 5s
  - host: ratings.shop.svc.cluster.local
    endpoints: [{ address: 10.0.1.1:9080 }]
"#;

#[test]
fn equivalent_yaml_builds_the_same_model() {
    let config = MeshConfig::from_yaml(CONFIG).unwrap();
    assert_eq!(config.to_snapshot(1).unwrap().len(), 2);
    let traffic = config.traffic_config().unwrap();
    let host = "reviews.shop.svc.cluster.local";
    let policy = traffic.policy(host).unwrap();
    let all = policy.for_port(9080, None).unwrap();
    assert_eq!(
        all.balancer_policy(),
        Policy::Maglev(MaglevConfig { table_size: 65537 })
    );
    assert_eq!(
        all.hash_key_source(),
        Some(HashKeySource::Header("x-user".into()))
    );
    let limits = all.breaker_limits();
    assert_eq!(
        (
            limits.max_connections,
            limits.max_pending_requests,
            limits.max_requests,
            limits.max_retries
        ),
        (100, 10, 1000, 4)
    );
    assert_eq!(all.connect_timeout(), Duration::from_millis(250));
    let outlier = all.outlier_config().unwrap();
    assert_eq!(
        (outlier.consecutive_5xx, outlier.consecutive_gateway_errors),
        (3, 2)
    );
    assert_eq!(outlier.base_ejection_time, Duration::from_secs(60));
    let priority = all.priority_config("r/z".parse().unwrap());
    assert!(priority.local.is_unknown(), "locality disabled");
    assert_eq!(priority.panic_threshold_percent, 20);
    assert_eq!(
        policy.for_port(9443, None).unwrap().tls_mode(),
        TlsMode::Disable
    );
    assert_eq!(
        policy.for_port(9080, Some("v2")).unwrap().balancer_policy(),
        Policy::RoundRobin
    );

    let mut rng = SplitMix64::new(5);
    let canary = RequestAttributes::new("GET", "/").with_header("x-canary", "1");
    let call = traffic.resolve(host, 9080, &canary, &mut rng).unwrap();
    assert_eq!(call.destination.subset.as_deref(), Some("v2"));
    assert_eq!(
        call.destination.host, host,
        "destinations default to the service itself"
    );
    assert_eq!(call.policy.retry().attempts, 1);
    let plain = RequestAttributes::new("GET", "/");
    let mut v1 = 0;
    for _ in 0..1000 {
        let call = traffic.resolve(host, 9080, &plain, &mut rng).unwrap();
        assert_eq!(call.policy.timeout(), Some(Duration::from_secs(5)));
        assert_eq!(
            call.policy.retry().per_try_timeout,
            Some(Duration::from_secs(1))
        );
        v1 += usize::from(call.destination.subset.as_deref() == Some("v1"));
    }
    assert!((850..950).contains(&v1), "{v1}");
    // A service without a section has none.
    assert!(traffic.policy("ratings.shop.svc.cluster.local").is_none());
}

#[test]
fn matches_the_istio_documents_it_stands_for() {
    let ours = MeshConfig::from_yaml(
        "services:\n  - host: r.shop.svc.cluster.local\n    traffic_policy:\n      outlier_detection: { consecutive_5xx_errors: 7, interval: 5m, base_ejection_time: 15m }\n      subsets: [{ name: v1, labels: { version: v1 } }]\n",
    )
    .unwrap()
    .traffic_config()
    .unwrap();
    let istio = TrafficConfig::from_resources(
        parse_resources(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: r, namespace: shop }\nspec:\n  host: r\n  trafficPolicy:\n    outlierDetection: { consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m }\n  subsets: [{ name: v1, labels: { version: v1 } }]\n",
        )
        .unwrap(),
    )
    .unwrap();
    let host = "r.shop.svc.cluster.local";
    let a = ours.policy(host).unwrap();
    let b = istio.policy(host).unwrap();
    assert_eq!(a.settings, b.settings);
    assert_eq!(a.subsets, b.subsets);
    assert_eq!(a.for_port(80, Some("v1")), b.for_port(80, Some("v1")));
}

#[test]
fn existing_documents_stay_valid() {
    let yaml = "services:\n  - host: a.b\n    ports: [{ port: 80 }]\n    endpoints: [{ address: 10.0.0.1:80 }]\n";
    let config = MeshConfig::from_yaml(yaml).unwrap();
    assert_eq!(config.to_snapshot(1).unwrap().len(), 1);
    let traffic = config.traffic_config().unwrap();
    assert!(traffic.destination_rules().is_empty() && traffic.virtual_services().is_empty());
}

fn problems(yaml: &str) -> Vec<ConfigError> {
    MeshConfig::from_yaml(yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .traffic_sections()
        .unwrap_err()
}

#[test]
fn errors_name_config_paths() {
    let service = |section: &str| {
        format!(
            "services:\n  - host: r.shop\n  - host: s.shop\n    traffic_policy:\n{}",
            section
                .lines()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        )
    };
    // Syntax errors come from parsing, in snake_case.
    for (section, path) in [
        (
            "load_balancer: { simple: ROUND_ROBIN }",
            "services[1].traffic_policy.load_balancer.simple",
        ),
        (
            "loadBalancer: {}",
            "services[1].traffic_policy.loadBalancer",
        ),
        (
            "outlier_detection: { consecutive5xx_errors: 1 }",
            "services[1].traffic_policy.outlier_detection.consecutive5xx_errors",
        ),
        (
            "http: [{ match: [{ uri: { exactly: /a } }] }]",
            "services[1].traffic_policy.http[0].match[0].uri.exactly",
        ),
    ] {
        let e = MeshConfig::from_yaml(&service(section)).unwrap_err();
        assert_eq!(e.path(), path, "{e}");
        assert!(
            e.to_string().contains("unknown") || e.to_string().contains("variant"),
            "{e}"
        );
    }
    // Values are validated with config paths, every problem reported.
    let errors = problems(&service(
        "load_balancer: { simple: passthrough }\nconnection_pool: { tcp: { connect_timeout: 0s } }\noutlier_detection: { consecutive_5xx_errors: 3, max_ejection_percent: 120 }\nport_level_settings: [{ port: { number: 80 } }]\nsubsets: [{ name: v1 }, { name: v1 }]\nhttp: [{ retries: { attempts: 2, retry_on: nope }, fault: {} }]",
    ));
    let found: Vec<(&str, bool)> = errors
        .iter()
        .map(|e| (e.path(), matches!(e, ConfigError::Unsupported { .. })))
        .collect();
    assert_eq!(
        found,
        [
            ("services[1].traffic_policy.load_balancer.simple", true),
            (
                "services[1].traffic_policy.connection_pool.tcp.connect_timeout",
                false
            ),
            (
                "services[1].traffic_policy.outlier_detection.max_ejection_percent",
                false
            ),
            ("services[1].traffic_policy.port_level_settings[0]", false),
            ("services[1].traffic_policy.subsets[1].name", false),
            ("services[1].traffic_policy.http[0].fault", true),
            ("services[1].traffic_policy.http[0].retries.retry_on", false),
        ]
    );
    assert!(
        errors[0].to_string().contains("not supported"),
        "{}",
        errors[0]
    );
    // The first problem is what traffic_config reports.
    let first = MeshConfig::from_yaml(&service("connection_pool: {}"))
        .unwrap()
        .traffic_config();
    assert_eq!(
        first.unwrap_err().path(),
        "services[1].traffic_policy.connection_pool"
    );
}

#[test]
fn locality_rules_in_snake_case() {
    let yaml = r#"
services:
  - host: s.shop
    endpoints: [{ address: 10.0.0.1:80, locality: us-east/a }]
    traffic_policy:
      load_balancer:
        locality_lb_setting:
          distribute: [{ from: "us-east/*", to: { "us-east/a": 70, us-west: 30 } }]
"#;
    let traffic = MeshConfig::from_yaml(yaml)
        .unwrap()
        .traffic_config()
        .unwrap();
    let policy = traffic
        .policy("s.shop")
        .unwrap()
        .for_port(80, None)
        .unwrap();
    let priority = policy.priority_config("us-east/b".parse().unwrap());
    assert_eq!(priority.rules.distribute[0].to.len(), 2);

    let service = |section: &str| {
        format!(
            "services:\n  - host: s.shop\n    traffic_policy:\n      load_balancer:\n        locality_lb_setting: {section}\n"
        )
    };
    let errors = problems(&service(
        "{ failover: [{ from: a, to: a }], failover_priority: [\"x=y=z\"], distribute: [{ from: b, to: { c: 60 } }] }",
    ));
    let paths: Vec<&str> = errors.iter().map(ConfigError::path).collect();
    let base = "services[0].traffic_policy.load_balancer.locality_lb_setting";
    assert_eq!(
        paths,
        [
            base.to_owned(),
            format!("{base}.distribute[0].to"),
            format!("{base}.failover[0].to"),
            format!("{base}.failover_priority[0]"),
        ]
    );
    assert!(errors[1].to_string().contains("sum to 60"), "{}", errors[1]);
    let e = MeshConfig::from_yaml(&service("{ failover: [{ from: a, too: b }] }")).unwrap_err();
    assert_eq!(e.path(), format!("{base}.failover[0].too"));
}

#[test]
fn references_between_services() {
    let yaml = r#"
services:
  - host: a.shop
    traffic_policy:
      subsets: [{ name: v1, labels: { version: v1 } }]
  - host: b.shop
    traffic_policy:
      http:
        - route:
            - { destination: { host: a.shop, subset: v1 }, weight: 1 }
            - { destination: { host: a.shop, subset: v9 }, weight: 1 }
"#;
    let e = MeshConfig::from_yaml(yaml)
        .unwrap()
        .traffic_config()
        .unwrap_err();
    assert_eq!(
        e.path(),
        "services[1].traffic_policy.http[0].route[1].destination.subset"
    );
    assert!(e.to_string().contains("\"v9\""), "{e}");
    let ok = yaml.replace("v9", "v1");
    let traffic = MeshConfig::from_yaml(&ok)
        .unwrap()
        .traffic_config()
        .unwrap();
    let call = traffic
        .resolve(
            "b.shop",
            80,
            &RequestAttributes::new("GET", "/"),
            &mut SplitMix64::new(1),
        )
        .unwrap();
    assert_eq!(call.destination.host, "a.shop");
}

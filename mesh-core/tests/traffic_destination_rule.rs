//! DestinationRules as Istio users write them (shapes from istio.io's task and reference pages,
//! written out here), loaded and converted into the state machines' configurations.

use std::{sync::Arc, time::Duration};

use mesh_core::{
    balance::{HashKey, MaglevConfig, PickContext, Policy, RingHashConfig},
    clock::ManualClock,
    model::{Endpoint, Locality},
    resilience::{CircuitBreaker, Limits, OutlierConfig, ResourceKind},
    traffic::{
        Algorithm, H2UpgradePolicy, HashKeySource, HashTable, RequestAttributes, TlsMode,
        TrafficConfig, TrafficResource, parse_resources,
    },
};

const BOOKINFO: &str = r#"
# Bookinfo's reviews service: three versions, random balancing, v2 round robin.
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews-destination
  namespace: bookinfo
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
  - name: v3
    labels:
      version: v3
---
# The circuit-breaking task's httpbin rule.
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"#;

fn load(yaml: &str) -> TrafficConfig {
    let resources = parse_resources(yaml).unwrap_or_else(|e| panic!("{e}"));
    TrafficConfig::from_resources(resources).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn bookinfo_subsets_and_policies() {
    let config = load(BOOKINFO);
    let reviews = config.policy("reviews.bookinfo.svc.cluster.local").unwrap();
    assert_eq!(reviews.subsets.len(), 3);
    assert_eq!(
        reviews.for_port(9080, None).unwrap().balancer_policy(),
        Policy::Random
    );
    assert_eq!(
        reviews
            .for_port(9080, Some("v1"))
            .unwrap()
            .balancer_policy(),
        Policy::Random
    );
    assert_eq!(
        reviews
            .for_port(9080, Some("v2"))
            .unwrap()
            .balancer_policy(),
        Policy::RoundRobin
    );
    assert!(reviews.for_port(9080, Some("v4")).is_err());
    let v2 = reviews.subset("v2").unwrap();
    let endpoint = |version: &str| {
        Endpoint::new("10.0.0.1:9080".parse().unwrap()).with_label("version", version)
    };
    assert!(v2.selects(&endpoint("v2")) && !v2.selects(&endpoint("v1")));
    // No DestinationRule: Istio's defaults.
    let none = config.resolve(
        "ratings.bookinfo.svc.cluster.local",
        9080,
        &get(),
        &mut rng(),
    );
    assert_eq!(none.unwrap().policy.balancer_policy(), Policy::LeastRequest);
}

fn get() -> RequestAttributes {
    RequestAttributes::new("GET", "/")
}

fn rng() -> mesh_core::rng::SplitMix64 {
    mesh_core::rng::SplitMix64::new(7)
}

#[test]
fn circuit_breaking_task_converts_to_working_state_machines() {
    let config = load(BOOKINFO);
    // metadata.namespace absent: the default namespace.
    let httpbin = config.policy("httpbin.default.svc.cluster.local").unwrap();
    let policy = httpbin.for_port(8000, None).unwrap();
    let limits = policy.breaker_limits();
    assert_eq!(limits.max_connections, 1);
    assert_eq!(limits.max_pending_requests, 1);
    assert_eq!(limits.max_requests, Limits::default().max_requests);
    assert_eq!(
        policy.connection_pool().http.max_requests_per_connection,
        Some(1)
    );
    let breaker = CircuitBreaker::new(limits);
    let first = breaker.try_acquire(ResourceKind::Connection).unwrap();
    assert!(breaker.try_acquire(ResourceKind::Connection).is_err());
    drop(first);

    let outlier = policy.outlier_config().unwrap();
    assert!(outlier.validate().is_ok());
    assert_eq!(outlier.consecutive_5xx, 1);
    assert_eq!(outlier.interval, Duration::from_secs(1));
    assert_eq!(outlier.base_ejection_time, Duration::from_secs(180));
    assert_eq!(outlier.max_ejection_percent, 100);
    assert_eq!(
        outlier.consecutive_gateway_errors,
        OutlierConfig::default().consecutive_gateway_errors
    );
    // With outlier detection, istiod sets the panic threshold to minHealthPercent (0).
    let priority = policy.priority_config(Locality::default());
    assert_eq!(priority.panic_threshold_percent, 0);
    let balancer = policy
        .balancer_policy()
        .build(priority, Arc::new(ManualClock::new()), 1)
        .unwrap();
    assert!(balancer.endpoints().is_empty());
}

#[test]
fn consistent_hashing_every_key_source() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: bookinfo-ratings, namespace: shop }
spec:
  host: ratings.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie:
          name: user
          ttl: 0s
          path: /
    portLevelSettings:
    - port: { number: 80 }
      loadBalancer:
        consistentHash:
          httpHeaderName: X-User-Id
          maglev: { tableSize: 1031 }
    - port: { number: 81 }
      loadBalancer:
        consistentHash:
          useSourceIp: true
          ringHash: { minimumRingSize: 4096 }
    - port: { number: 82 }
      loadBalancer:
        consistentHash:
          httpQueryParameterName: session
          minimumRingSize: 2048
"#;
    let config = load(yaml);
    let policy = config.policy("ratings.shop.svc.cluster.local").unwrap();
    let request = RequestAttributes::new("GET", "/?session=s1")
        .with_header("x-user-id", "alice")
        .with_header("cookie", "user=bob")
        .with_source_ip("10.1.2.3".parse().unwrap());

    let cookie = policy.for_port(9080, None).unwrap();
    assert_eq!(
        cookie.balancer_policy(),
        Policy::RingHash(RingHashConfig::default())
    );
    let HashKeySource::Cookie(c) = cookie.hash_key_source().unwrap() else {
        panic!("cookie")
    };
    assert_eq!(
        (c.name.as_str(), c.path.as_deref(), c.ttl),
        ("user", Some("/"), Some(Duration::ZERO))
    );
    let key = cookie.hash_key_source().unwrap().hash_key(&request);
    assert_eq!(key, Some(HashKey::from_bytes(b"bob")));

    let header = policy.for_port(80, None).unwrap();
    assert_eq!(
        header.balancer_policy(),
        Policy::Maglev(MaglevConfig { table_size: 1031 })
    );
    assert_eq!(
        header.hash_key_source().unwrap().hash_key(&request),
        Some(HashKey::from_bytes(b"alice"))
    );
    let source = policy.for_port(81, None).unwrap();
    let Policy::RingHash(ring) = source.balancer_policy() else {
        panic!("ring")
    };
    assert_eq!(ring.minimum_ring_size, 4096);
    assert_eq!(
        source.hash_key_source().unwrap().hash_key(&request),
        Some(HashKey::from_source_ip("10.1.2.3".parse().unwrap()))
    );
    let query = policy.for_port(82, None).unwrap();
    let Policy::RingHash(ring) = query.balancer_policy() else {
        panic!("ring")
    };
    assert_eq!(ring.minimum_ring_size, 2048);
    assert_eq!(
        query.hash_key_source().unwrap().hash_key(&request),
        Some(HashKey::from_bytes(b"s1"))
    );

    // The same key reaches the same endpoint through a real balancer.
    let mut lb = header
        .balancer_policy()
        .build(
            header.priority_config(Locality::default()),
            Arc::new(ManualClock::new()),
            3,
        )
        .unwrap();
    lb.update(
        (1..=5)
            .map(|i| Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap()))
            .collect(),
    );
    let ctx = PickContext::with_hash(
        header
            .hash_key_source()
            .unwrap()
            .hash_key(&request)
            .unwrap(),
    );
    let first = lb.pick(&ctx);
    assert!(first.is_some());
    assert!((0..20).all(|_| lb.pick(&ctx) == first));
}

#[test]
fn port_level_settings_and_merge_order() {
    let yaml = r#"
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: { name: bookinfo-app, namespace: bookinfo }
spec:
  host: bookinfo.bookinfo.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: { maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: { time: 7200s, interval: 75s, probes: 9 } }
      http: { http2MaxRequests: 1000, maxRetries: 3, idleTimeout: 1h, h2UpgradePolicy: UPGRADE }
    tls: { mode: ISTIO_MUTUAL }
    portLevelSettings:
    - port: { number: 80 }
      loadBalancer: { simple: LEAST_REQUEST }
    - port: { number: 9080 }
      loadBalancer: { simple: ROUND_ROBIN }
      connectionPool: { http: { http1MaxPendingRequests: 10 } }
  subsets:
  - name: testversion
    labels: { version: v3 }
    trafficPolicy:
      tls: { mode: DISABLE }
      portLevelSettings:
      - port: { number: 9080 }
        loadBalancer: { simple: RANDOM }
"#;
    let config = load(yaml);
    let policy = config
        .policy("bookinfo.bookinfo.svc.cluster.local")
        .unwrap();
    let other = policy.for_port(8080, None).unwrap();
    assert_eq!(other.balancer_policy(), Policy::LeastRequest);
    assert_eq!(other.breaker_limits().max_connections, 100);
    assert_eq!(other.breaker_limits().max_retries, 3);
    assert_eq!(other.connect_timeout(), Duration::from_millis(30));
    let pool = other.connection_pool();
    let keepalive = pool.tcp.keepalive.unwrap();
    assert_eq!(
        (keepalive.time, keepalive.interval, keepalive.probes),
        (
            Some(Duration::from_secs(7200)),
            Some(Duration::from_secs(75)),
            Some(9)
        )
    );
    assert_eq!(pool.http.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(pool.http.h2_upgrade_policy, H2UpgradePolicy::Upgrade);
    assert_eq!(other.tls_mode(), TlsMode::IstioMutual);

    // Port 9080 replaces the whole connection pool: nothing is inherited from the service level.
    let p9080 = policy.for_port(9080, None).unwrap();
    assert_eq!(p9080.balancer_policy(), Policy::RoundRobin);
    assert_eq!(
        p9080.breaker_limits(),
        Limits {
            max_pending_requests: 10,
            ..Limits::default()
        }
    );
    // The subset's own port-level setting wins over the service's, its tls over the service's.
    let subset = policy.for_port(9080, Some("testversion")).unwrap();
    assert_eq!(subset.balancer_policy(), Policy::Random);
    assert_eq!(subset.tls_mode(), TlsMode::Disable);
    assert_eq!(subset.breaker_limits().max_pending_requests, 10);
}

#[test]
fn tcp_idle_timeout_zero_switches_it_off() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: db, namespace: shop }
spec:
  host: db.shop.svc.cluster.local
  trafficPolicy:
    connectionPool: { tcp: { idleTimeout: 0s, maxConnectionDuration: 30m } }
    portLevelSettings:
    - port: { number: 6379 }
      connectionPool: { tcp: { idleTimeout: 90s } }
"#;
    let config = load(yaml);
    let policy = config.policy("db.shop.svc.cluster.local").unwrap();
    let pool = policy.for_port(5432, None).unwrap().connection_pool();
    assert_eq!(pool.tcp.idle_timeout, Some(Duration::ZERO));
    assert_eq!(pool.tcp_idle_timeout(), None);
    // HTTP connections fall back to the TCP value, so theirs is off too.
    assert_eq!(pool.http_idle_timeout(), None);
    assert_eq!(
        pool.max_connection_duration(),
        Some(Duration::from_secs(1800))
    );
    // The port's pool replaces the service's whole: its own idle timeout, no lifetime limit.
    let redis = policy.for_port(6379, None).unwrap().connection_pool();
    assert_eq!(redis.tcp_idle_timeout(), Some(Duration::from_secs(90)));
    assert_eq!(redis.max_connection_duration(), None);
}

#[test]
fn locality_and_outlier_detection() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: helloworld, namespace: sample }
spec:
  host: helloworld.sample.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      localityLbSetting: { enabled: true }
    outlierDetection:
      consecutiveGatewayErrors: 3
      consecutive5xxErrors: 0
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
      interval: 500ms
      baseEjectionTime: 10m
      minHealthPercent: 25
"#;
    let config = load(yaml);
    let policy = config
        .policy("helloworld.sample.svc.cluster.local")
        .unwrap()
        .for_port(5000, None)
        .unwrap();
    let local: Locality = "us-central1/us-central1-a".parse().unwrap();
    let priority = policy.priority_config(local.clone());
    assert_eq!(priority.local, local);
    assert_eq!(priority.panic_threshold_percent, 25);
    let outlier = policy.outlier_config().unwrap();
    assert_eq!(outlier.consecutive_gateway_errors, 3);
    assert_eq!(outlier.consecutive_5xx, 0);
    assert!(outlier.split_external_local_origin_errors);
    assert_eq!(outlier.consecutive_local_origin_failures, 2);
    assert_eq!(outlier.interval, Duration::from_millis(500));
    // Istio raises Envoy's 300 s cap to a longer base ejection time.
    assert_eq!(outlier.max_ejection_time, Duration::from_secs(600));
    assert!(outlier.validate().is_ok());
}

#[test]
fn documents_of_every_api_version_and_kind_order() {
    let yaml = r#"
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: { name: a, namespace: ns }
spec: { host: a }
---
# comments only
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: b, namespace: ns, labels: { app: b }, annotations: { note: x }, uid: 1234, resourceVersion: "9", generation: 2 }
spec: { host: "*.ns.svc.cluster.local", trafficPolicy: { loadBalancer: { simple: LEAST_CONN } } }
status: {}
"#;
    let resources = parse_resources(yaml).unwrap();
    assert_eq!(resources.len(), 2);
    let TrafficResource::DestinationRule(b) = &resources[1] else {
        panic!()
    };
    assert_eq!((b.namespace.as_str(), b.name.as_str()), ("ns", "b"));
    let config = TrafficConfig::from_resources(resources).unwrap();
    // The exact rule wins over the wildcard; other hosts in the namespace get the wildcard's.
    let a = config.policy("a.ns.svc.cluster.local").unwrap();
    assert_eq!(a.host.as_str(), "a.ns.svc.cluster.local");
    let other = config.policy("z.ns.svc.cluster.local").unwrap();
    assert_eq!(other.host.as_str(), "*.ns.svc.cluster.local");
    assert_eq!(
        other
            .settings
            .all_ports
            .load_balancer
            .as_ref()
            .unwrap()
            .algorithm,
        Algorithm::LeastRequest
    );
    assert!(config.policy("a.other.svc.cluster.local").is_none());
}

#[test]
fn consistent_hash_table_choices() {
    let table = |spec: &str| {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: r }}\nspec:\n  host: r\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {spec}\n"
        );
        let config = load(&yaml);
        let policy = config.policy("r.default.svc.cluster.local").unwrap();
        match &policy
            .settings
            .all_ports
            .load_balancer
            .as_ref()
            .unwrap()
            .algorithm
        {
            Algorithm::ConsistentHash(h) => h.table,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        table("{ useSourceIp: true }"),
        HashTable::RingHash {
            minimum_ring_size: 1024
        }
    );
    assert_eq!(
        table("{ useSourceIp: true, maglev: { tableSize: 65537 } }"),
        HashTable::Maglev { table_size: 65537 }
    );
    assert_eq!(
        table("{ useSourceIp: true, ringHash: {} }"),
        HashTable::RingHash {
            minimum_ring_size: 1024
        }
    );
}

#[test]
fn locality_rules_apply_as_istiod_does() {
    use std::collections::BTreeMap;

    use mesh_core::balance::{LocalityPattern, PriorityLabel, RegionFailover};

    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: helloworld, namespace: sample }
spec:
  host: helloworld.sample.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        failover: [{ from: us-east, to: eu-west }]
        failoverPriority: [topology.istio.io/network, "version=v2"]
    outlierDetection: { consecutive5xxErrors: 1 }
  subsets:
    - name: spread
      labels: { app: helloworld }
      trafficPolicy:
        loadBalancer:
          localityLbSetting:
            distribute:
              - from: us-east/*
                to: { "us-east/a/*": 80, eu-west: 20 }
    - name: disabled
      labels: { app: helloworld }
      trafficPolicy:
        loadBalancer:
          localityLbSetting:
            enabled: false
            distribute: [{ from: "*", to: { eu-west: 100 } }]
"#;
    let config = load(yaml);
    let rule = config
        .policy("helloworld.sample.svc.cluster.local")
        .unwrap();
    let local: Locality = "us-east/a".parse().unwrap();
    let labels = BTreeMap::from([("version".to_owned(), "v1".to_owned())]);
    let failover = rule
        .for_port(80, None)
        .unwrap()
        .priority_config_for(local.clone(), &labels);
    assert_eq!(failover.local, local);
    assert_eq!(
        failover.rules.failover,
        [RegionFailover {
            from: "us-east".into(),
            to: "eu-west".into()
        }]
    );
    assert_eq!(
        failover.rules.failover_priority[1],
        PriorityLabel {
            key: "version".into(),
            value: Some("v2".into())
        }
    );
    assert_eq!(failover.rules.labels, labels);
    // Without outlier detection istiod applies no failover at all.
    let plain = load(&yaml.replace("    outlierDetection: { consecutive5xxErrors: 1 }\n", ""));
    let plain = plain
        .policy("helloworld.sample.svc.cluster.local")
        .unwrap()
        .for_port(80, None)
        .unwrap()
        .priority_config_for(local.clone(), &labels);
    assert!(plain.local.is_unknown());
    assert!(plain.rules.failover.is_empty());
    // A subset's distribute replaces the failover rules, outlier detection or not.
    let spread = rule
        .for_port(80, Some("spread"))
        .unwrap()
        .priority_config(local.clone());
    assert_eq!(spread.rules.distribute.len(), 1);
    assert_eq!(
        spread.rules.distribute[0].to,
        [
            ("eu-west".parse::<LocalityPattern>().unwrap(), 20),
            ("us-east/a".parse().unwrap(), 80)
        ]
    );
    assert!(spread.rules.failover.is_empty());
    // enabled: false wins over every rule.
    let off = rule
        .for_port(80, Some("disabled"))
        .unwrap()
        .priority_config(local);
    assert!(off.local.is_unknown());
    assert_eq!(off.rules, Default::default());
}

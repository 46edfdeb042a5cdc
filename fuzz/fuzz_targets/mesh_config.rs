//! Feeds arbitrary UTF-8 to the mesh's own config loader (`MeshConfig`) and to the Istio
//! traffic loader (DestinationRule / VirtualService documents).
//!
//! Neither may panic, and what they accept must be usable without surprises:
//! - `MeshConfig::validate` succeeding means the parts it checks succeed on their own
//!   (`workload_settings`, `health_checks`, `traffic_config`), and the snapshot conversion
//!   answers without panicking;
//! - for every host of an accepted traffic configuration (the `MeshConfig`'s or the Istio
//!   documents'), resolving a few requests either gives a route error or a policy whose
//!   balancer builds, whose outlier detection config validates, and whose priority config
//!   validates: a config that loads cannot fail later when the runtime builds its state
//!   machines.

#![no_main]

use std::{net::IpAddr, sync::Arc};

use libfuzzer_sys::fuzz_target;
use mesh_core::{
    clock::{ManualClock, Timestamp},
    config::MeshConfig,
    model::Locality,
    resilience::{CircuitBreaker, OutlierDetector},
    rng::SplitMix64,
    traffic::{RequestAttributes, TrafficConfig, parse_resources},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_mesh_config(text);
    check_traffic_documents(text);
});

fn check_mesh_config(text: &str) {
    let config = match MeshConfig::from_yaml(text) {
        Ok(config) => config,
        Err(e) => {
            let _ = (e.to_string(), e.path().to_owned());
            return;
        }
    };
    let workload = config.workload_settings();
    let health = config.health_checks();
    let traffic = config.traffic_config();
    match config.validate() {
        Ok(()) => {
            assert!(
                workload.is_ok(),
                "validate passed but workload_settings failed"
            );
            assert!(health.is_ok(), "validate passed but health_checks failed");
            assert!(traffic.is_ok(), "validate passed but traffic_config failed");
        }
        Err(e) => {
            let _ = (e.to_string(), e.path().to_owned());
        }
    }
    if let Err(errors) = config.traffic_sections() {
        assert!(
            !errors.is_empty(),
            "a failed traffic section load reports a problem"
        );
        for e in &errors {
            let _ = e.to_string();
        }
    }
    match config.to_snapshot(1) {
        Ok(snapshot) => {
            let _ = format!("{snapshot:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(traffic) = traffic {
        check_traffic_config(&traffic);
    }
}

fn check_traffic_documents(text: &str) {
    let resources = match parse_resources(text) {
        Ok(resources) => resources,
        Err(errors) => {
            assert!(
                !errors.errors().is_empty(),
                "a failed load reports a problem"
            );
            let _ = errors.to_string();
            return;
        }
    };
    match TrafficConfig::from_resources(resources) {
        Ok(traffic) => check_traffic_config(&traffic),
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                let _ = e.to_string();
            }
        }
    }
}

fn check_traffic_config(traffic: &TrafficConfig) {
    let mut hosts: Vec<String> = Vec::new();
    for rule in traffic.destination_rules() {
        hosts.push(rule.policy.host.as_str().to_owned());
        for subset in &rule.policy.subsets {
            let _ = format!("{subset:?}");
        }
    }
    for vs in traffic.virtual_services() {
        hosts.extend(vs.hosts.iter().map(|h| h.as_str().to_owned()));
    }
    hosts.truncate(8);
    let source: IpAddr = [10, 0, 0, 9].into();
    let requests = [
        RequestAttributes::new("GET", "/"),
        RequestAttributes::new("POST", "/api/v1/items?id=7&x=1")
            .with_header("x-user", "alice")
            .with_header("cookie", "session=abc")
            .with_authority("reviews:9080")
            .with_source_ip(source),
    ];
    let mut rng = SplitMix64::new(7);
    for host in &hosts {
        // Wildcard hosts are resolved as a concrete name under them.
        let host = host.replace('*', "x");
        for port in [80, 8080, 9080] {
            for request in &requests {
                let Ok(call) = traffic.resolve(&host, port, request, &mut rng) else {
                    continue;
                };
                let policy = &call.policy;
                let local = Locality::new("r1", "z1", "s1");
                let priority = policy.priority_config(local);
                priority
                    .validate()
                    .unwrap_or_else(|e| panic!("{host}:{port}: priority config refused: {e}"));
                let clock = Arc::new(ManualClock::new());
                if let Err(e) = policy.balancer_policy().build(priority, clock, 1) {
                    panic!("{host}:{port}: a loaded policy's balancer does not build: {e}");
                }
                if let Some(outlier) = policy.outlier_config()
                    && let Err(e) = OutlierDetector::new(outlier, Timestamp::ZERO)
                {
                    panic!("{host}:{port}: loaded outlier detection refused: {e}");
                }
                let _ = CircuitBreaker::new(policy.breaker_limits());
                let _ = (
                    policy.connect_timeout(),
                    policy.timeout(),
                    policy.tls_mode(),
                );
                let _ = (policy.retry(), policy.hash_key_source());
            }
        }
    }
}

//! A real Prometheus scrapes two running workloads' admin endpoints while HBONE traffic flows
//! between them, and PromQL over its HTTP API sees what Istio's dashboards and Kiali query:
//! requests from both reporters, the source -> destination workload edge, latency buckets,
//! certificate expiry.
//!
//! Needs Debian's `prometheus` (installed by `.ci/run`); skipped with a message when it is
//! missing and `CI` is unset.

mod observe_support;
mod prometheus_server;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use observe_support::{ORDERS, STEP, caller, echo_server, get, inventory};
use prometheus_server::Prometheus;

/// How long Prometheus gets to scrape enough (it scrapes every second).
const SCRAPES: Duration = Duration::from_secs(60);
/// Requests to see in Prometheus.
const WANT: f64 = 20.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_istio_metrics_while_traffic_flows() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let (inventory, server) = inventory(dir.path(), echo, "").await;
    let orders = caller(dir.path(), "orders", ORDERS, &server, "").await;
    let targets = [
        inventory.admin_addr().unwrap(),
        orders.admin_addr().unwrap(),
    ];
    let Some(prometheus) = Prometheus::start(&targets, "/stats/prometheus").await else {
        return;
    };

    // Traffic keeps flowing while Prometheus scrapes; bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, sent, orders) = (stop.clone(), sent.clone(), orders.clone());
        tokio::spawn(async move {
            for i in 0..5_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let path = if i % 10 == 9 { "/status/404" } else { "/items" };
                get(&orders, path, None).await;
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let deadline = tokio::time::Instant::now() + SCRAPES;
    let destination = "sum(istio_requests_total{reporter=\"destination\"})";
    let source =
        "sum(istio_requests_total{reporter=\"source\",destination_workload=\"inventory\"})";
    loop {
        let seen = prometheus.query(destination).await;
        let from_source = prometheus.query(source).await;
        let up = prometheus.query("up{job=\"mesh\"}").await;
        if seen.first().is_some_and(|(_, v)| *v >= WANT)
            && from_source.first().is_some_and(|(_, v)| *v >= WANT)
            && up.len() == 2
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never saw {WANT} requests (saw {seen:?}, {} sent); up: {:?}; targets: {:?}; log:\n{}",
            sent.load(Ordering::Relaxed),
            prometheus.query("up").await,
            prometheus.get("/api/v1/targets").await,
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(STEP, traffic).await.unwrap().unwrap();

    // Both admin endpoints scraped cleanly.
    let up = prometheus.query("up{job=\"mesh\"}").await;
    assert_eq!(up.len(), 2, "{up:?}");
    assert!(up.iter().all(|(_, v)| *v == 1.0), "{up:?}");

    // The edge Kiali draws, from the destination's reports.
    let edges = prometheus
        .query(
            "sum by (source_workload, destination_workload, destination_service, response_code) \
             (istio_requests_total{reporter=\"destination\"})",
        )
        .await;
    let ok = edges
        .iter()
        .find(|(m, _)| m["response_code"] == "200")
        .expect("a 200 edge");
    assert_eq!(ok.0["source_workload"], "orders");
    assert_eq!(ok.0["destination_workload"], "inventory");
    assert_eq!(
        ok.0["destination_service"],
        "inventory.shop.svc.cluster.local"
    );
    assert!(
        edges.iter().any(|(m, _)| m["response_code"] == "404"),
        "{edges:?}"
    );

    // Latency histograms in Istio's buckets answer the dashboards' quantile queries.
    let p50 = prometheus
        .query(
            "histogram_quantile(0.5, sum by (le) \
             (istio_request_duration_milliseconds_bucket{reporter=\"destination\"}))",
        )
        .await;
    assert!(p50[0].1.is_finite() && p50[0].1 > 0.0, "{p50:?}");
    let buckets = prometheus
        .query("count(istio_request_duration_milliseconds_bucket{reporter=\"destination\",response_code=\"200\"})")
        .await;
    // 19 finite bounds plus +Inf.
    assert_eq!(buckets[0].1, 20.0, "{buckets:?}");
    let expiry = prometheus
        .query("mesh_certificate_expiry_timestamp_seconds")
        .await;
    assert_eq!(expiry.len(), 2, "{expiry:?}");
    drop(prometheus);
    assert_eq!(server.shutdown().await, 0);
}

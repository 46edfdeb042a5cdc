//! etcd as the registry, against a real etcd server (Debian's `etcd-server`) started per test:
//! registration under a lease, watch-driven discovery, deregistration, lease expiry, invalid
//! records, an etcd outage and restart.
//!
//! The tests fail (never skip) when etcd is missing: install it with
//! `apt-get install etcd-server`, or point `ETCD_BIN` at an etcd binary.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use etcd_client::GetOptions;
use mesh_client::discovery::{Discovery, EtcdConfig, EtcdDiscovery, EtcdError, EtcdRegistration};
use mesh_core::{
    SpiffeId,
    model::{Endpoint, Health, Locality, Port, Protocol, Service, Snapshot},
};
use tokio::sync::watch;

const HOST: &str = "inventory.shop.svc.cluster.local";
/// The short lease used by every test, so expiry is observable quickly.
const TTL: Duration = Duration::from_secs(2);
/// How soon a change must reach a watcher.
const PROMPT: Duration = Duration::from_secs(1);
/// Upper bound for slower things (etcd start-up, reconnection after an outage).
const SLOW: Duration = Duration::from_secs(20);

mod etcd_server;
use etcd_server::*;

// --- helpers -----------------------------------------------------------------------------------

fn identity() -> SpiffeId {
    "spiffe://cluster.local/ns/shop/sa/inventory"
        .parse()
        .unwrap()
}

fn service() -> Service {
    Service::new(HOST.parse().unwrap())
        .with_port(Port::new(8080, Protocol::Http).with_name("http"))
        .with_port(Port::new(9090, Protocol::Grpc))
        .with_expected_identity(identity())
}

fn endpoint(address: &str) -> Endpoint {
    Endpoint::new(address.parse().unwrap())
        .with_identity(identity())
        .with_weight(3)
        .with_locality(Locality::new("us-east1", "us-east1-b", ""))
        .with_label("version", "v1")
}

fn addresses(snapshot: &Snapshot, host: &str) -> Vec<SocketAddr> {
    snapshot
        .endpoints(host)
        .map(|eps| eps.iter().map(|e| e.address).collect())
        .unwrap_or_default()
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

/// Waits until the published snapshot satisfies `ok`; returns it and how long it took.
async fn wait_for(
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    within: Duration,
    what: &str,
    ok: impl Fn(&Snapshot) -> bool,
) -> (Arc<Snapshot>, Duration) {
    let started = Instant::now();
    let found = tokio::time::timeout(within, async {
        loop {
            let snapshot = rx.borrow_and_update().clone();
            if ok(&snapshot) {
                return snapshot;
            }
            rx.changed().await.expect("discovery stopped");
        }
    })
    .await;
    match found {
        Ok(snapshot) => (snapshot, started.elapsed()),
        Err(_) => panic!(
            "{what}: not seen within {within:?}; last: {:?}",
            rx.borrow()
        ),
    }
}

/// Polls `ok` (for status fields, which have no channel) until it holds.
async fn eventually(within: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

// --- tests -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_watched_and_deregistration_removes_them() {
    let etcd = Etcd::start().await;
    let discovery = EtcdDiscovery::connect(etcd.config()).await.unwrap();
    let mut rx = discovery.subscribe();
    let first = discovery.current();
    assert!(first.is_empty());
    assert!(first.version() >= 1, "version is the etcd revision");
    assert_eq!(discovery.status().updates, 1);
    assert_eq!(discovery.status().last_error, None);

    let started = Instant::now();
    let a = EtcdRegistration::register(&etcd.config(), &service(), &endpoint("10.0.0.1:8080"))
        .await
        .unwrap();
    assert_eq!(a.service_key(), format!("/test/services/{HOST}"));
    assert_eq!(
        a.endpoint_key(),
        format!("/test/endpoints/{HOST}/10.0.0.1:8080")
    );
    let (seen, _) = wait_for(&mut rx, PROMPT, "first endpoint", |s| {
        addresses(s, HOST) == addrs(&["10.0.0.1:8080"])
    })
    .await;
    println!(
        "registration seen by the watcher {:?} after register() was called",
        started.elapsed()
    );
    // Every field survives the trip through etcd.
    assert_eq!(seen.service(HOST).unwrap().as_ref(), &service());
    assert_eq!(seen.endpoints(HOST).unwrap()[0], endpoint("10.0.0.1:8080"));
    assert!(seen.version() > first.version());
    let status = a.status();
    assert!(status.registered && status.lease_id.is_some());
    assert_eq!(status.registrations, 1);

    // The second instance (a draining one, to see health travel too) joins the same service
    // and, writing last, now owns the shared service record.
    let draining = endpoint("10.0.0.2:8080").with_health(Health::Draining);
    let started = Instant::now();
    let b = EtcdRegistration::register(&etcd.config(), &service(), &draining)
        .await
        .unwrap();
    let (both, _) = wait_for(&mut rx, PROMPT, "second endpoint", |s| {
        addresses(s, HOST) == addrs(&["10.0.0.1:8080", "10.0.0.2:8080"])
    })
    .await;
    println!("second registration seen after {:?}", started.elapsed());
    assert_eq!(both.endpoints(HOST).unwrap()[1].health, Health::Draining);
    assert!(both.version() > seen.version());

    // The service record's owner leaves: its endpoint goes at once, and the remaining instance
    // writes the service record again, so ports and identities stay known.
    let started = Instant::now();
    b.deregister().await.unwrap();
    let (left, _) = wait_for(&mut rx, PROMPT, "deregistered endpoint gone", |s| {
        addresses(s, HOST) == addrs(&["10.0.0.1:8080"])
            && s.service(HOST)
                .is_some_and(|svc| svc.as_ref() == &service())
    })
    .await;
    println!("deregistration seen after {:?}", started.elapsed());
    assert_eq!(left.endpoints(HOST).unwrap()[0], endpoint("10.0.0.1:8080"));

    let started = Instant::now();
    a.deregister().await.unwrap();
    wait_for(&mut rx, PROMPT, "service gone", |s| s.is_empty()).await;
    println!("last deregistration seen after {:?}", started.elapsed());
    let mut client = etcd.client().await;
    let left = client
        .get("/test/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(
        left.kvs().is_empty(),
        "revoking the leases removes every key"
    );
    assert_eq!(discovery.status().last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_registration_expires_with_its_lease() {
    let etcd = Etcd::start().await;
    let discovery = EtcdDiscovery::connect(etcd.config()).await.unwrap();
    let mut rx = discovery.subscribe();
    let registration =
        EtcdRegistration::register(&etcd.config(), &service(), &endpoint("10.0.0.1:8080"))
            .await
            .unwrap();
    wait_for(&mut rx, PROMPT, "registered", |s| {
        !addresses(s, HOST).is_empty()
    })
    .await;

    // A crash: no deregistration, the keep-alives just stop.
    drop(registration);
    let (_, took) = wait_for(&mut rx, TTL + Duration::from_secs(3), "expired", |s| {
        s.is_empty()
    })
    .await;
    println!("dropped registration expired after {took:?} (lease TTL {TTL:?})");
    assert!(
        took >= TTL / 2,
        "the endpoint must stay until the lease runs out, not vanish at once ({took:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_are_skipped_and_reported() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let ep = |addr: &str| format!("/test/endpoints/{HOST}/{addr}");
    client
        .put(ep("10.0.0.1:80"), r#"{"address":"10.0.0.1:80"}"#, None)
        .await
        .unwrap();
    client
        .put(ep("10.0.0.2:80"), "{not json", None)
        .await
        .unwrap();
    client
        .put(ep("10.0.0.3:80"), r#"{"address":"10.9.9.9:80"}"#, None)
        .await
        .unwrap();
    client.put("/test/elsewhere/x", "{}", None).await.unwrap();

    let discovery = EtcdDiscovery::connect(etcd.config()).await.unwrap();
    let mut rx = discovery.subscribe();
    let snapshot = discovery.current();
    assert_eq!(addresses(&snapshot, HOST), addrs(&["10.0.0.1:80"]));
    // No service record: the service exists with no ports or identities of its own.
    assert!(snapshot.service(HOST).unwrap().ports.is_empty());
    let error = discovery
        .status()
        .last_error
        .expect("invalid records reported");
    assert!(
        error.starts_with("3 invalid etcd record(s) skipped"),
        "{error}"
    );
    for needle in [
        "10.0.0.2:80: value is not a valid endpoint record",
        "differs from the key's 10.0.0.3:80",
        "/test/elsewhere/x: key does not follow the layout",
    ] {
        assert!(error.contains(needle), "{needle:?} missing from {error}");
    }

    // Fixing the records clears the report; a bad write arriving through the watch is skipped
    // without disturbing the rest.
    client.delete(ep("10.0.0.2:80"), None).await.unwrap();
    client.delete(ep("10.0.0.3:80"), None).await.unwrap();
    client.delete("/test/elsewhere/x", None).await.unwrap();
    eventually(PROMPT, "report cleared", || {
        discovery.status().last_error.is_none()
    })
    .await;
    client
        .put(
            ep("10.0.0.4:80"),
            r#"{"address":"10.0.0.4:80","weight":0}"#,
            None,
        )
        .await
        .unwrap();
    eventually(PROMPT, "bad weight reported", || {
        discovery
            .status()
            .last_error
            .is_some_and(|e| e.contains("weight must be at least 1"))
    })
    .await;
    client
        .put(ep("10.0.0.5:80"), r#"{"address":"10.0.0.5:80"}"#, None)
        .await
        .unwrap();
    wait_for(&mut rx, PROMPT, "valid record after an invalid one", |s| {
        addresses(s, HOST) == addrs(&["10.0.0.1:80", "10.0.0.5:80"])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_keeps_the_last_endpoints_and_a_restart_resyncs() {
    let mut etcd = Etcd::start().await;
    let discovery = EtcdDiscovery::connect(etcd.config()).await.unwrap();
    let mut rx = discovery.subscribe();
    let registration =
        EtcdRegistration::register(&etcd.config(), &service(), &endpoint("10.0.0.1:8080"))
            .await
            .unwrap();
    let (before, _) = wait_for(&mut rx, PROMPT, "registered", |s| {
        !addresses(s, HOST).is_empty()
    })
    .await;
    let updates = discovery.status().updates;
    let lease = registration.status().lease_id;

    etcd.kill().await;
    let took = eventually(SLOW, "discovery reports the outage", || {
        discovery.status().last_error.is_some()
    })
    .await;
    println!("outage noticed after {took:?}");
    eventually(SLOW, "registration reports the outage", || {
        let status = registration.status();
        !status.registered && status.last_error.is_some()
    })
    .await;
    // Longer than the lease TTL: clients still route to what they knew.
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    assert_eq!(
        discovery.current(),
        before,
        "the last snapshot stays in force"
    );
    assert_eq!(
        discovery.status().updates,
        updates,
        "nothing new is published"
    );
    let error = discovery.status().last_error.unwrap();
    assert!(
        error.contains("keeping the last known endpoints"),
        "{error}"
    );
    println!("while etcd is down: {error}");

    let restarted = Instant::now();
    etcd.run().await;
    let took = eventually(SLOW, "discovery resyncs", || {
        discovery.status().last_error.is_none()
    })
    .await;
    println!(
        "etcd restarted; discovery resynced {took:?} after it answered (total {:?})",
        restarted.elapsed()
    );
    eventually(SLOW, "registration re-registers", || {
        let status = registration.status();
        status.registered && status.registrations >= 2 && status.last_error.is_none()
    })
    .await;
    assert_eq!(
        addresses(&discovery.current(), HOST),
        addrs(&["10.0.0.1:8080"])
    );
    // etcd extends leases across its own restart, so the registration keeps its lease.
    println!(
        "lease before the outage {lease:?}, after {:?}",
        registration.status().lease_id
    );

    // The watch is live again: a new instance shows up promptly, and the old one still counts.
    let other = EtcdRegistration::register(&etcd.config(), &service(), &endpoint("10.0.0.2:8080"))
        .await
        .unwrap();
    wait_for(&mut rx, PROMPT, "new endpoint after the restart", |s| {
        addresses(s, HOST) == addrs(&["10.0.0.1:8080", "10.0.0.2:8080"])
    })
    .await;
    other.deregister().await.unwrap();
    registration.deregister().await.unwrap();
    wait_for(&mut rx, PROMPT, "both gone", |s| s.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_replaced_and_the_records_written_again() {
    let etcd = Etcd::start().await;
    let discovery = EtcdDiscovery::connect(etcd.config()).await.unwrap();
    let mut rx = discovery.subscribe();
    let registration =
        EtcdRegistration::register(&etcd.config(), &service(), &endpoint("10.0.0.1:8080"))
            .await
            .unwrap();
    wait_for(&mut rx, PROMPT, "registered", |s| {
        !addresses(s, HOST).is_empty()
    })
    .await;
    let lease = registration.status().lease_id.unwrap();

    // Someone (an operator, a lease expiring during a long pause) removes the lease.
    etcd.client().await.lease_revoke(lease).await.unwrap();
    let took = eventually(SLOW, "new lease", || {
        let status = registration.status();
        status.registered && status.lease_id.is_some_and(|id| id != lease)
    })
    .await;
    println!("lost lease replaced after {took:?}");
    assert_eq!(registration.status().registrations, 2);
    let mut client = etcd.client().await;
    let stored = client.get(registration.endpoint_key(), None).await.unwrap();
    assert_eq!(stored.kvs().len(), 1);
    assert_eq!(
        stored.kvs()[0].lease(),
        registration.status().lease_id.unwrap()
    );
    wait_for(&mut rx, PROMPT, "listed again", |s| {
        addresses(s, HOST) == addrs(&["10.0.0.1:8080"])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_repopulate_an_etcd_that_lost_its_data() {
    let mut etcd = Etcd::start().await;
    let discovery = EtcdDiscovery::connect(etcd.config()).await.unwrap();
    let mut rx = discovery.subscribe();
    let registration =
        EtcdRegistration::register(&etcd.config(), &service(), &endpoint("10.0.0.1:8080"))
            .await
            .unwrap();
    wait_for(&mut rx, PROMPT, "registered", |s| {
        !addresses(s, HOST).is_empty()
    })
    .await;
    let lease = registration.status().lease_id.unwrap();

    // etcd comes back empty (rebuilt from scratch): the old lease is unknown there, so the
    // registration grants a new one and writes its records again; discovery follows.
    etcd.kill().await;
    etcd.wipe();
    let restarted = Instant::now();
    etcd.run().await;
    eventually(SLOW, "registered under a new lease", || {
        let status = registration.status();
        status.registered && status.lease_id.is_some_and(|id| id != lease)
    })
    .await;
    let (snapshot, _) = wait_for(&mut rx, SLOW, "listed in the new etcd", |s| {
        addresses(s, HOST) == addrs(&["10.0.0.1:8080"])
            && s.service(HOST)
                .is_some_and(|svc| svc.as_ref() == &service())
    })
    .await;
    println!(
        "re-registered in a wiped etcd {:?} after its restart began (snapshot version {})",
        restarted.elapsed(),
        snapshot.version()
    );
    eventually(SLOW, "discovery healthy", || {
        discovery.status().last_error.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_can_start_before_etcd_and_registration_reports_it_missing() {
    let mut etcd = Etcd::new();
    // Registration needs etcd now and says so with a typed error.
    let refused =
        EtcdRegistration::register(&etcd.config(), &service(), &endpoint("10.0.0.1:8080")).await;
    assert!(
        matches!(
            refused,
            Err(EtcdError::Request { .. } | EtcdError::Timeout { .. })
        ),
        "{refused:?}"
    );
    // Discovery can start without it: empty, version 0, reporting why.
    let discovery = EtcdDiscovery::spawn(etcd.config()).unwrap();
    let mut rx = discovery.subscribe();
    assert_eq!(discovery.current().version(), 0);
    assert_eq!(discovery.status().updates, 0);
    eventually(SLOW, "connection failure reported", || {
        discovery.status().last_error.is_some()
    })
    .await;

    etcd.run().await;
    let _registration =
        EtcdRegistration::register(&etcd.config(), &service(), &endpoint("10.0.0.1:8080"))
            .await
            .unwrap();
    let (snapshot, _) = wait_for(&mut rx, SLOW, "registry read once etcd is up", |s| {
        !addresses(s, HOST).is_empty()
    })
    .await;
    assert!(snapshot.version() > 0);
    assert_eq!(discovery.status().last_error, None);
}

#[tokio::test]
async fn invalid_configuration_is_refused() {
    let none = EtcdConfig::new(Vec::<String>::new());
    assert!(matches!(
        EtcdDiscovery::spawn(none.clone()),
        Err(EtcdError::InvalidConfig { .. })
    ));
    assert!(matches!(
        EtcdRegistration::register(&none, &service(), &endpoint("10.0.0.1:80")).await,
        Err(EtcdError::InvalidConfig { .. })
    ));
}

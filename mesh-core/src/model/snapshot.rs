use std::{collections::BTreeMap, sync::Arc};

use super::{Endpoint, Service, ServiceName};

/// Everything discovery knows at one moment: services and their endpoints, with a version.
///
/// Snapshots are immutable values; a discovery backend publishes a new one on every change
/// (`mesh-client` will carry them on a watch channel). Endpoint lists are `Arc<[Endpoint]>`, so a
/// balancer takes one with [`Balancer::update`](crate::balance::Balancer::update) without copying,
/// and [`changes_since`](Self::changes_since) lets the watcher update only the services whose
/// endpoints or definitions changed.
///
/// ```
/// use std::sync::Arc;
/// use mesh_core::model::{Endpoint, Service, Snapshot};
///
/// let name = "reviews.shop".parse()?;
/// let eps: Arc<[Endpoint]> = vec![Endpoint::new("10.0.0.1:80".parse().unwrap())].into();
/// let v1 = Snapshot::new(1).with_service(Service::new(name), eps);
/// assert_eq!(v1.endpoints("reviews.shop").map(|e| e.len()), Some(1));
/// # Ok::<(), mesh_core::model::ServiceNameError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    version: u64,
    services: BTreeMap<ServiceName, Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    service: Arc<Service>,
    endpoints: Arc<[Endpoint]>,
}

/// What differs between two snapshots, by service name (each list sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotChanges {
    /// Services only in the newer snapshot.
    pub added: Vec<ServiceName>,
    /// Services only in the older snapshot.
    pub removed: Vec<ServiceName>,
    /// Services in both whose definition or endpoints differ.
    pub updated: Vec<ServiceName>,
}

impl SnapshotChanges {
    /// True if the snapshots hold the same services and endpoints.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()
    }
}

impl Snapshot {
    /// An empty snapshot at `version`.
    pub fn new(version: u64) -> Self {
        Self {
            version,
            services: BTreeMap::new(),
        }
    }

    /// Adds or replaces a service and its endpoints (builder form of [`insert`](Self::insert)).
    pub fn with_service(mut self, service: Service, endpoints: Arc<[Endpoint]>) -> Self {
        self.insert(service, endpoints);
        self
    }

    /// Adds or replaces a service and its endpoints, keyed by its hostname.
    pub fn insert(&mut self, service: Service, endpoints: Arc<[Endpoint]>) {
        let entry = Entry {
            service: Arc::new(service),
            endpoints,
        };
        self.services.insert(entry.service.hostname.clone(), entry);
    }

    /// Removes a service; returns whether it was present.
    pub fn remove(&mut self, hostname: &str) -> bool {
        self.services.remove(hostname).is_some()
    }

    /// Sets the version (publishers bump it on every change).
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// The version this snapshot was published at.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The service with this (normalised) hostname.
    pub fn service(&self, hostname: &str) -> Option<&Arc<Service>> {
        self.services.get(hostname).map(|e| &e.service)
    }

    /// The endpoints of the service with this (normalised) hostname.
    pub fn endpoints(&self, hostname: &str) -> Option<&Arc<[Endpoint]>> {
        self.services.get(hostname).map(|e| &e.endpoints)
    }

    /// All services with their endpoints, in hostname order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<Service>, &Arc<[Endpoint]>)> {
        self.services.values().map(|e| (&e.service, &e.endpoints))
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// True if there are no services.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Which services were added, removed or changed since `older`.
    ///
    /// Shared `Arc`s compare by pointer first, so publishers that reuse unchanged endpoint lists
    /// make this cheap.
    pub fn changes_since(&self, older: &Snapshot) -> SnapshotChanges {
        let mut changes = SnapshotChanges::default();
        for (name, entry) in &self.services {
            match older.services.get(name) {
                None => changes.added.push(name.clone()),
                Some(old) if !same_entry(old, entry) => changes.updated.push(name.clone()),
                Some(_) => {}
            }
        }
        changes.removed = older
            .services
            .keys()
            .filter(|name| !self.services.contains_key(*name))
            .cloned()
            .collect();
        changes
    }
}

fn same_entry(a: &Entry, b: &Entry) -> bool {
    (Arc::ptr_eq(&a.service, &b.service) || a.service == b.service)
        && (Arc::ptr_eq(&a.endpoints, &b.endpoints) || a.endpoints == b.endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Health;

    fn svc(name: &str) -> Service {
        Service::new(name.parse().unwrap())
    }

    fn eps(addrs: &[&str]) -> Arc<[Endpoint]> {
        addrs
            .iter()
            .map(|a| Endpoint::new(a.parse().unwrap()))
            .collect()
    }

    #[test]
    fn insert_lookup_remove() {
        let mut snap = Snapshot::new(3).with_service(svc("a"), eps(&["10.0.0.1:80"]));
        snap.insert(svc("B"), eps(&[]));
        assert_eq!(snap.version(), 3);
        assert_eq!(snap.len(), 2);
        assert!(snap.service("b").is_some(), "names are normalised");
        assert_eq!(snap.endpoints("a").map(|e| e.len()), Some(1));
        let names: Vec<_> = snap.iter().map(|(s, _)| s.hostname.to_string()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(snap.remove("a"));
        assert!(!snap.remove("a"));
        snap.set_version(4);
        assert_eq!(snap.version(), 4);
        assert!(!snap.is_empty());
    }

    #[test]
    fn changes_since_reports_added_removed_updated() {
        let shared = eps(&["10.0.0.1:80"]);
        let old = Snapshot::new(1)
            .with_service(svc("keep"), shared.clone())
            .with_service(svc("gone"), eps(&[]))
            .with_service(svc("health"), eps(&["10.0.0.2:80"]));
        let sick: Arc<[Endpoint]> =
            vec![Endpoint::new("10.0.0.2:80".parse().unwrap()).with_health(Health::Unhealthy)]
                .into();
        let new = Snapshot::new(2)
            .with_service(svc("keep"), shared)
            .with_service(svc("health"), sick)
            .with_service(svc("new"), eps(&[]));
        let changes = new.changes_since(&old);
        assert_eq!(changes.added, vec![ServiceName::new("new").unwrap()]);
        assert_eq!(changes.removed, vec![ServiceName::new("gone").unwrap()]);
        assert_eq!(changes.updated, vec![ServiceName::new("health").unwrap()]);
        assert!(new.changes_since(&new.clone()).is_empty());
    }
}

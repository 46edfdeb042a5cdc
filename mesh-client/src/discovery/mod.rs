//! Where services and endpoints come from.
//!
//! Every backend publishes whole, versioned [`Snapshot`]s through a `watch` channel, so
//! consumers (balancers, pools, the admin endpoint) always see one consistent view and never a
//! half-applied update. A backend that fails to refresh keeps publishing its last good snapshot
//! and reports the failure through [`DiscoveryStatus`].
//!
//! Backends: [`StaticDiscovery`] (fixed, for tests and embedding), [`FileDiscovery`] (the
//! embedded default: a YAML/JSON file, reloaded live) and [`EtcdDiscovery`] (a registry for
//! fleets beyond one machine; services announce themselves with [`EtcdRegistration`] under a
//! lease), and [`DnsDiscovery`] (A/AAAA or SRV records, refreshed by TTL).

mod dns;
mod etcd;
mod file;
mod merged;

use std::sync::{Arc, Mutex, PoisonError};

use mesh_core::model::Snapshot;
use tokio::sync::watch;

pub use dns::{DnsDiscovery, DnsDiscoveryConfig, DnsError, DnsRecords, DnsService};
pub use etcd::{EtcdConfig, EtcdDiscovery, EtcdError, EtcdRegistration, RegistrationStatus};
pub use file::{FileDiscovery, FileDiscoveryError};
pub use merged::MergedDiscovery;

/// A source of service snapshots.
pub trait Discovery: Send + Sync + 'static {
    /// A receiver that always holds the latest snapshot and wakes on every new one.
    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>>;

    /// The latest snapshot.
    fn current(&self) -> Arc<Snapshot> {
        self.subscribe().borrow().clone()
    }

    /// Health of the backend: when it last failed, and why.
    fn status(&self) -> DiscoveryStatus;

    /// What kind of backend this is (`static`, `file`, `etcd`, `dns`, `merged`), the `source`
    /// label of the `mesh_discovery_*` metrics. Other implementations are `custom` unless they
    /// say otherwise.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// The backends behind this one, each with its kind and status: itself, or for
    /// [`MergedDiscovery`] every source it merges (and itself, for conflicts between them).
    /// The admin endpoint reports one `mesh_discovery_*{source=...}` series per entry.
    fn backends(&self) -> Vec<(&'static str, DiscoveryStatus)> {
        vec![(self.kind(), self.status())]
    }
}

/// How a discovery backend is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryStatus {
    /// Snapshots published since start (including the first).
    pub updates: u64,
    /// The most recent refresh error; cleared by the next success. While set, the last good
    /// snapshot stays in force.
    pub last_error: Option<String>,
    /// Failed refreshes since start: rejected file edits, failed DNS lookups, lost or refused
    /// etcd connections and etcd revisions with records that had to be skipped.
    pub errors: u64,
}

/// A snapshot that changes only when told to: for tests and for embedding a fixed topology.
#[derive(Debug)]
pub struct StaticDiscovery {
    tx: watch::Sender<Arc<Snapshot>>,
    status: Mutex<DiscoveryStatus>,
}

impl StaticDiscovery {
    /// Starts with `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            tx: watch::Sender::new(Arc::new(snapshot)),
            status: Mutex::new(DiscoveryStatus {
                updates: 1,
                last_error: None,
                errors: 0,
            }),
        }
    }

    /// Publishes a replacement snapshot.
    pub fn publish(&self, snapshot: Snapshot) {
        self.tx.send_replace(Arc::new(snapshot));
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .updates += 1;
    }
}

impl Discovery for StaticDiscovery {
    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    fn current(&self) -> Arc<Snapshot> {
        // Read in place: no receiver to register and drop (this is read per request).
        self.tx.borrow().clone()
    }

    fn kind(&self) -> &'static str {
        "static"
    }

    fn status(&self) -> DiscoveryStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

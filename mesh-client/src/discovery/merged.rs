//! Several discovery backends seen as one.

use std::sync::{Arc, Mutex, PoisonError};

use mesh_core::model::{Service, Snapshot};
use tokio::{sync::watch, task::JoinHandle};

use super::{Discovery, DiscoveryStatus};

/// The union of several backends (say the static `services:` of the config file plus an etcd
/// registry), republished whenever any of them changes.
///
/// A service both backends know is taken from the one listed first, and the conflict is
/// reported in [`status`](Discovery::status) rather than silently mixing endpoint sets. Each
/// backend keeps its own last-good behaviour, so one failing keeps its last snapshot in the
/// union. Needs a tokio runtime; its tasks stop when it is dropped.
pub struct MergedDiscovery {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    sources: Vec<Arc<dyn Discovery>>,
    tx: watch::Sender<Arc<Snapshot>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    version: u64,
    updates: u64,
    conflict: Option<String>,
    /// Distinct conflicts seen (a republish with the same conflict is not counted again).
    conflicts: u64,
}

impl MergedDiscovery {
    /// Merges `sources`, earlier ones taking precedence.
    pub fn new(sources: Vec<Arc<dyn Discovery>>) -> Self {
        let inner = Arc::new(Inner {
            sources,
            tx: watch::Sender::new(Arc::new(Snapshot::new(0))),
            state: Mutex::new(State::default()),
        });
        inner.republish();
        let tasks = inner
            .sources
            .iter()
            .map(|source| {
                let mut rx = source.subscribe();
                let inner = inner.clone();
                tokio::spawn(async move {
                    while rx.changed().await.is_ok() {
                        inner.republish();
                    }
                })
            })
            .collect();
        Self { inner, tasks }
    }
}

impl Inner {
    fn republish(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.version += 1;
        let mut merged = Snapshot::new(state.version);
        let mut conflicts = Vec::new();
        for source in &self.sources {
            let snapshot = source.current();
            for (service, endpoints) in snapshot.iter() {
                let host = service.hostname.as_str();
                if merged.service(host).is_some() {
                    conflicts.push(host.to_owned());
                    continue;
                }
                merged.insert(Service::clone(service), endpoints.clone());
            }
        }
        let conflict = (!conflicts.is_empty()).then(|| {
            format!(
                "defined by more than one discovery backend (the first one listed wins): {}",
                conflicts.join(", ")
            )
        });
        if conflict.is_some() && conflict != state.conflict {
            state.conflicts += 1;
        }
        state.conflict = conflict;
        if let Some(conflict) = &state.conflict {
            tracing::warn!(%conflict, "discovery conflict");
        }
        state.updates += 1;
        self.tx.send_replace(Arc::new(merged));
    }
}

impl Discovery for MergedDiscovery {
    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.tx.subscribe()
    }

    fn current(&self) -> Arc<Snapshot> {
        // Read in place: no receiver to register and drop (this is read per request).
        self.inner.tx.borrow().clone()
    }

    fn status(&self) -> DiscoveryStatus {
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let errors: Vec<String> = self
            .inner
            .sources
            .iter()
            .filter_map(|s| s.status().last_error)
            .chain(state.conflict.clone())
            .collect();
        DiscoveryStatus {
            updates: state.updates,
            last_error: (!errors.is_empty()).then(|| errors.join("; ")),
            errors: self
                .inner
                .sources
                .iter()
                .map(|s| s.status().errors)
                .sum::<u64>()
                + state.conflicts,
        }
    }

    fn kind(&self) -> &'static str {
        "merged"
    }

    fn backends(&self) -> Vec<(&'static str, DiscoveryStatus)> {
        let mut all: Vec<_> = self
            .inner
            .sources
            .iter()
            .flat_map(|s| s.backends())
            .collect();
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.push((
            "merged",
            DiscoveryStatus {
                updates: state.updates,
                last_error: state.conflict.clone(),
                errors: state.conflicts,
            },
        ));
        all
    }
}

impl Drop for MergedDiscovery {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for MergedDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergedDiscovery")
            .field("sources", &self.inner.sources.len())
            .finish_non_exhaustive()
    }
}

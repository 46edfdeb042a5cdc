//! The embedded default: services from a config file, reloaded when it changes.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use mesh_core::{
    config::{ConfigError, MeshConfig},
    model::Snapshot,
};
use thiserror::Error;
use tokio::sync::watch;

use super::{Discovery, DiscoveryStatus};

/// The config file could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FileDiscoveryError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Its content is invalid.
    #[error("{path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field path.
        source: ConfigError,
    },
}

/// Services from a YAML/JSON file, polled for changes.
///
/// Edits apply live: a valid new version is published as a new snapshot (open connections are
/// untouched; balancers pick up the new endpoint set). An invalid edit is rejected with a precise
/// error in [`status`](Discovery::status) and a warning in the log, and the last good snapshot
/// stays in force. Polling compares file contents, so editors that replace the file, atomic
/// renames and in-place writes all work. The watch task stops when this value is dropped.
#[derive(Debug)]
pub struct FileDiscovery {
    tx: watch::Sender<Arc<Snapshot>>,
    status: Arc<Mutex<DiscoveryStatus>>,
    task: tokio::task::JoinHandle<()>,
}

fn load(path: &Path, version: u64) -> Result<(Vec<u8>, Snapshot), FileDiscoveryError> {
    let bytes = std::fs::read(path).map_err(|source| FileDiscoveryError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let snapshot = MeshConfig::from_yaml(&text)
        .and_then(|config| config.to_snapshot(version))
        .map_err(|source| FileDiscoveryError::Config {
            path: path.to_owned(),
            source,
        })?;
    Ok((bytes, snapshot))
}

impl FileDiscovery {
    /// Loads `path` now (failing if it is invalid) and re-reads it every `interval`.
    /// Must be called inside a tokio runtime.
    pub fn watch(path: impl Into<PathBuf>, interval: Duration) -> Result<Self, FileDiscoveryError> {
        let path = path.into();
        let (mut last, snapshot) = load(&path, 1)?;
        let tx = watch::Sender::new(Arc::new(snapshot));
        let status = Arc::new(Mutex::new(DiscoveryStatus {
            updates: 1,
            last_error: None,
            errors: 0,
        }));
        let (task_tx, task_status) = (tx.clone(), status.clone());
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut version = 1;
            // The contents (`None`: unreadable) of the last rejected version: it is not
            // re-parsed, nor counted again, until the file changes.
            let mut rejected: Option<Option<Vec<u8>>> = None;
            loop {
                ticker.tick().await;
                let current = std::fs::read(&path).ok();
                if current.as_deref() == Some(last.as_slice()) {
                    if rejected.take().is_some() {
                        // Back to the version in force: nothing to reload, nothing wrong.
                        let mut s = task_status.lock().unwrap_or_else(PoisonError::into_inner);
                        s.last_error = None;
                    }
                    continue;
                }
                if rejected.as_ref() == Some(&current) {
                    continue;
                }
                match load(&path, version + 1) {
                    Ok((bytes, snapshot)) => {
                        version += 1;
                        last = bytes;
                        tracing::info!(path = %path.display(), version, services = snapshot.len(), "service config reloaded");
                        task_tx.send_replace(Arc::new(snapshot));
                        let mut s = task_status.lock().unwrap_or_else(PoisonError::into_inner);
                        s.updates += 1;
                        s.last_error = None;
                        rejected = None;
                    }
                    Err(e) => {
                        let message = e.to_string();
                        let mut s = task_status.lock().unwrap_or_else(PoisonError::into_inner);
                        tracing::warn!(error = %message, "service config change rejected; keeping the last good version");
                        s.last_error = Some(message);
                        s.errors += 1;
                        rejected = Some(current);
                    }
                }
            }
        });
        Ok(Self { tx, status, task })
    }
}

impl Drop for FileDiscovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Discovery for FileDiscovery {
    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    fn current(&self) -> Arc<Snapshot> {
        // Read in place: no receiver to register and drop (this is read per request).
        self.tx.borrow().clone()
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    fn status(&self) -> DiscoveryStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

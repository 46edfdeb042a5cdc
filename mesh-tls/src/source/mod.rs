//! Where credentials come from, and how they stay fresh.
//!
//! A source produces an [`X509Svid`](crate::X509Svid) and a [`BundleSet`](crate::BundleSet) and
//! pushes replacements into [`Credentials`](crate::Credentials) as they change. Two exist today:
//! PEM files on disk, polled for changes ([`files`]), and the development CA renewing at
//! half-life ([`renewal`]). Both keep the last good material when a reload fails, so a bad or
//! half-written update never breaks handshakes.

pub mod files;
pub mod renewal;

use std::sync::{Arc, Mutex, PoisonError};

/// Shared status of a background source, readable while it runs.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) reloads: u64,
    pub(crate) last_error: Option<String>,
}

/// Controls a background source task; the task stops when this handle is dropped.
#[derive(Debug)]
pub struct SourceHandle {
    task: tokio::task::JoinHandle<()>,
    status: Arc<Mutex<Status>>,
}

impl SourceHandle {
    pub(crate) fn new(task: tokio::task::JoinHandle<()>, status: Arc<Mutex<Status>>) -> Self {
        Self { task, status }
    }

    /// How many times new material was swapped in.
    pub fn reloads(&self) -> u64 {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reloads
    }

    /// The most recent failure, cleared by the next success. While set, the previous material
    /// stays in use.
    pub fn last_error(&self) -> Option<String> {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_error
            .clone()
    }

    /// Stops the task now (dropping the handle does the same).
    pub fn stop(self) {}
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn record(status: &Mutex<Status>, result: Result<(), String>) {
    let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
    match result {
        Ok(()) => {
            status.reloads += 1;
            status.last_error = None;
        }
        Err(e) => status.last_error = Some(e),
    }
}

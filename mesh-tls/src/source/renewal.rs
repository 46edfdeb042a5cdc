//! The development CA renewing a workload's SVID at half-life.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use mesh_core::SpiffeId;
use rustls_pki_types::UnixTime;

use super::{SourceHandle, Status, record};
use crate::{Credentials, DevCa, dev_ca::write_svid};

/// Retry delays after a failed renewal: doubling from the first to the cap.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(30);
/// Floor between renewals, so a TTL shorter than the clock's resolution cannot spin.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Keeps `credentials` holding a fresh SVID for `id`, issued by `ca` with lifetime `ttl`.
///
/// Each SVID is replaced when half its lifetime has passed (as Istio's agent does), so a peer
/// with a clock a little ahead never sees an expired certificate. With `write_to`, every new
/// SVID is also written there (`svid.pem`, `svid.key`, `bundle.pem`) for other processes.
/// Must be called inside a tokio runtime; renewal stops when the handle is dropped.
pub fn spawn_renewal(
    ca: Arc<DevCa>,
    id: SpiffeId,
    ttl: Duration,
    credentials: Credentials,
    write_to: Option<PathBuf>,
) -> SourceHandle {
    let status = Arc::new(Mutex::new(Status::default()));
    let task_status = status.clone();
    let task = tokio::spawn(async move {
        let mut retry = RETRY_FIRST;
        loop {
            let due = credentials.svid().half_life();
            let wait = Duration::from_secs(due.as_secs().saturating_sub(UnixTime::now().as_secs()))
                .max(MIN_INTERVAL);
            tokio::time::sleep(wait).await;
            let renewed = ca.issue(&id, ttl).and_then(|svid| {
                if let Some(dir) = &write_to {
                    write_svid(dir, &svid, &ca.bundle())?;
                }
                Ok(svid)
            });
            match renewed {
                Ok(svid) => {
                    credentials.set_svid(svid);
                    record(&task_status, Ok(()));
                    retry = RETRY_FIRST;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %id, "SVID renewal failed; retrying");
                    record(&task_status, Err(e.to_string()));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_CAP);
                }
            }
        }
    });
    SourceHandle::new(task, status)
}

//! Access logs: one JSON line per request and per tunnel, written through `tracing` on the
//! [`ACCESS_LOG_TARGET`] target, formatted off the request path.
//!
//! The request path only decides whether to log (sampling, errors-only) and appends the record
//! to a bounded buffer; a background task wakes every [`FLUSH_INTERVAL`], formats what
//! accumulated and emits the `tracing` events (so requests never wake a task, and timestamps
//! are formatted off the request path too). When the buffer is full the record is dropped and
//! counted (`mesh_access_log_dropped_total`) rather than slowing traffic down, as Envoy's
//! buffered access logs do.
//!
//! Route the lines where you want them with a `tracing` filter on the target, for example
//! `RUST_LOG=mesh::access_log=info` with a subscriber writing the bare message.

use std::{
    cell::Cell,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mesh_core::{
    config::AccessLogSettings,
    rng::{Rng, SplitMix64},
};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use super::flags::ResponseFlags;

/// The `tracing` target access log lines are written to.
pub const ACCESS_LOG_TARGET: &str = "mesh::access_log";

/// Records waiting to be written before new ones are dropped.
const QUEUE: usize = 8192;

/// How often buffered records are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// One request or tunnel, as its access log line shows it. Field names follow Envoy's and
/// Istio's JSON access log format.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct AccessRecord {
    /// When the request (or tunnel) started, RFC 3339 UTC with milliseconds.
    pub start_time: String,
    /// The start as a time, formatted into `start_time` by the writer.
    #[serde(skip)]
    pub(crate) started: Option<SystemTime>,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// Milliseconds until the response ended (or the tunnel closed).
    pub duration: u64,
    /// HTTP method; `CONNECT` for a tunnel.
    pub method: String,
    /// Path and query; absent for tunnels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `HTTP/1.1`, `HTTP/2` or `TCP`.
    pub protocol: &'static str,
    /// Status code (0 when no response was received), 200 for an established tunnel.
    pub response_code: u16,
    /// Envoy response flags, `-` for none.
    pub response_flags: String,
    /// Body bytes (or tunnel bytes) received from the downstream.
    pub bytes_received: u64,
    /// Body bytes (or tunnel bytes) sent to the downstream.
    pub bytes_sent: u64,
    /// The request's authority (`Host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// The upstream endpoint (the CONNECT authority), when one was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<SocketAddr>,
    /// The service the request was for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_cluster: Option<String>,
    /// The caller's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downstream_remote_address: Option<SocketAddr>,
    /// The caller's SPIFFE ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downstream_peer_principal: Option<String>,
    /// The callee's SPIFFE ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_peer_principal: Option<String>,
    /// The W3C trace ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The authorization decision, when a policy decided (`deny: ns/name rule 0: reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authz: Option<String>,
    /// `user-agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl AccessRecord {
    /// Whether this record is a failure: status >= 400 (or none), or any response flag.
    pub fn is_failure(&self) -> bool {
        self.response_code == 0 || self.response_code >= 400 || self.response_flags != "-"
    }

    /// The JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Decides which records are logged and hands them to the writer task.
#[derive(Debug)]
pub(crate) struct AccessLogger {
    settings: AccessLogSettings,
    buffer: Option<Arc<Mutex<Vec<AccessRecord>>>>,
    dropped: Counter,
}

thread_local! {
    static SAMPLER: Cell<Option<SplitMix64>> = const { Cell::new(None) };
}

fn sample(fraction: f64) -> bool {
    if fraction >= 1.0 {
        return true;
    }
    if fraction <= 0.0 {
        return false;
    }
    let draw = SAMPLER.with(|cell| {
        let mut rng = cell.take().unwrap_or_else(SplitMix64::from_entropy);
        let value = rng.next_u64();
        cell.set(Some(rng));
        value
    });
    // 53 random bits as a fraction in [0, 1).
    ((draw >> 11) as f64) / ((1u64 << 53) as f64) < fraction
}

impl AccessLogger {
    /// A logger; with a tokio runtime at hand the writer is a background task, otherwise lines
    /// are written by the caller.
    pub(crate) fn new(settings: AccessLogSettings, dropped: Counter) -> Self {
        let buffer =
            (settings.enabled && tokio::runtime::Handle::try_current().is_ok()).then(|| {
                let buffer = Arc::new(Mutex::new(Vec::new()));
                let weak = Arc::downgrade(&buffer);
                tokio::spawn(async move {
                    let mut batch = Vec::new();
                    loop {
                        tokio::time::sleep(FLUSH_INTERVAL).await;
                        // The logger is gone once nothing holds the buffer: flush and stop.
                        let Some(buffer) = weak.upgrade() else { return };
                        std::mem::swap(
                            &mut batch,
                            &mut *buffer.lock().unwrap_or_else(PoisonError::into_inner),
                        );
                        drop(buffer);
                        for record in batch.drain(..) {
                            emit(record);
                        }
                    }
                });
                buffer
            });
        Self {
            settings,
            buffer,
            dropped,
        }
    }

    /// Whether any line can be written: callers skip collecting details when not.
    pub(crate) fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Logs `record` if the settings want it (failures always, unless logging is off;
    /// successes when sampled and not errors-only).
    pub(crate) fn log(&self, record: AccessRecord) {
        if !self.settings.enabled {
            return;
        }
        let wanted = if record.is_failure() {
            true
        } else {
            !self.settings.errors_only && sample(self.settings.sampling)
        };
        if !wanted {
            return;
        }
        match &self.buffer {
            Some(buffer) => {
                let mut buffer = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                if buffer.len() < QUEUE {
                    buffer.push(record);
                } else {
                    drop(buffer);
                    self.dropped.inc();
                }
            }
            None => emit(record),
        }
    }
}

impl Drop for AccessLogger {
    /// Writes what is still buffered.
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            let records =
                std::mem::take(&mut *buffer.lock().unwrap_or_else(PoisonError::into_inner));
            for record in records {
                emit(record);
            }
        }
    }
}

fn emit(mut record: AccessRecord) {
    if let Some(started) = record.started.take() {
        record.start_time = rfc3339(started);
    }
    tracing::info!(target: ACCESS_LOG_TARGET, "{}", record.to_json());
}

/// RFC 3339 UTC with milliseconds (`2026-05-01T10:00:00.123Z`), without a date library.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Renders flags for a record.
pub(crate) fn flags_text(flags: ResponseFlags) -> String {
    flags.as_str().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // a leap year's Feb 29
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn failures_are_always_logged_and_successes_sampled() {
        assert!(sample(1.0));
        assert!(!sample(0.0));
        let hits = (0..10_000).filter(|_| sample(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
        let ok = AccessRecord {
            response_code: 200,
            response_flags: "-".into(),
            ..AccessRecord::default()
        };
        assert!(!ok.is_failure());
        let flagged = AccessRecord {
            response_flags: "UF".into(),
            ..ok.clone()
        };
        assert!(flagged.is_failure());
        let json = ok.to_json();
        assert!(json.contains("\"response_code\":200"), "{json}");
        assert!(!json.contains("path"), "{json}");
    }
}

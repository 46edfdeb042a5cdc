//! Log levels changed at runtime, as Envoy's and istio-agent's `/logging` do.
//!
//! [`init_logging`] installs a `tracing` subscriber (formatted lines on stderr) whose filter can
//! be replaced while the process runs, and returns the [`LogControl`] the admin endpoint uses.
//! Applications with their own subscriber keep it and hand the admin endpoint a control built
//! from their reload handle with [`LogControl::from_reload`].

use std::{
    fmt,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use thiserror::Error;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, reload, util::SubscriberInitExt};

/// A log filter could not be applied.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LogError {
    /// The directives are not valid `EnvFilter` syntax.
    #[error(
        "invalid log filter {filter:?}: {reason}; use a level (error, warn, info, debug, trace) or directives such as mesh_client=debug,info"
    )]
    InvalidFilter {
        /// What was given.
        filter: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The subscriber the filter belongs to is gone, or another subscriber is already global.
    #[error("cannot change the log filter: {0}")]
    Unavailable(String),
}

type Setter = dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync;

/// Changes the process's log filter at runtime. Cheap to clone.
#[derive(Clone)]
pub struct LogControl {
    setter: Arc<Setter>,
    current: Arc<Mutex<String>>,
}

static GLOBAL: OnceLock<LogControl> = OnceLock::new();

impl LogControl {
    /// A control over the filter behind `handle` (from `tracing_subscriber::reload::Layer`),
    /// whose filter is currently `current`.
    pub fn from_reload<S: 'static>(handle: reload::Handle<EnvFilter, S>, current: &str) -> Self {
        Self {
            setter: Arc::new(move |filter| handle.reload(filter).map_err(|e| e.to_string())),
            current: Arc::new(Mutex::new(current.to_owned())),
        }
    }

    /// The control [`init_logging`] installed, if it ran.
    pub fn global() -> Option<Self> {
        GLOBAL.get().cloned()
    }

    /// The filter in force, as last set.
    pub fn current(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the filter with `directives` (`debug`, `info,mesh_client::hbone=trace`).
    pub fn set(&self, directives: &str) -> Result<(), LogError> {
        let filter = parse(directives)?;
        (self.setter)(filter).map_err(LogError::Unavailable)?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = directives.to_owned();
        tracing::info!(filter = directives, "log filter changed");
        Ok(())
    }
}

impl fmt::Debug for LogControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogControl")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

fn parse(directives: &str) -> Result<EnvFilter, LogError> {
    let invalid = |reason: String| LogError::InvalidFilter {
        filter: directives.to_owned(),
        reason,
    };
    if directives.trim().is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| invalid(e.to_string()))
}

/// Installs the global `tracing` subscriber: formatted events on stderr, filtered by
/// `RUST_LOG` when set, else by `default`, changeable later through the returned control (and
/// [`LogControl::global`]). Fails if the filter is invalid or a global subscriber exists.
pub fn init_logging(default: &str) -> Result<LogControl, LogError> {
    let initial = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => value,
        _ => default.to_owned(),
    };
    let (layer, handle) = reload::Layer::new(parse(&initial)?);
    tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init()
        .map_err(|e| LogError::Unavailable(e.to_string()))?;
    let control = LogControl::from_reload(handle, &initial);
    let _ = GLOBAL.set(control.clone());
    Ok(control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::Registry;

    #[test]
    fn filters_are_validated_and_applied() {
        let (layer, handle) = reload::Layer::<EnvFilter, Registry>::new(EnvFilter::new("info"));
        let subscriber = tracing_subscriber::registry().with(layer);
        let control = LogControl::from_reload(handle, "info");
        tracing::subscriber::with_default(subscriber, || {
            assert!(!tracing::enabled!(tracing::Level::DEBUG));
            control.set("debug").unwrap();
            assert!(tracing::enabled!(tracing::Level::DEBUG));
            assert_eq!(control.current(), "debug");
            let err = control.set("mesh_client=loud").unwrap_err();
            assert!(err.to_string().contains("mesh_client=loud"), "{err}");
            assert!(control.set("  ").is_err());
            assert_eq!(control.current(), "debug");
        });
    }
}

//! Keeping remote key sets fresh: one task per URL fetches at start, then every refresh
//! interval, retrying failures with capped full-jitter backoff and keeping the last good keys.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use mesh_core::{
    resilience::{Backoff, BackoffConfig},
    rng::SplitMix64,
};
use mesh_policy::authn::jwt::{JwksStore, RemoteJwks};
use tokio::{
    runtime::Handle,
    sync::{Notify, watch},
    task::JoinHandle,
};

use super::fetch::JwksClient;

/// istiod's default JWKS refresh interval (`PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);

/// How often key sets are refreshed and how failures are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksRefreshConfig {
    /// Time between successful fetches (default 20 min, as istiod).
    pub refresh_interval: Duration,
    /// Retry delays after a failure: full jitter under `min(max, base * 2^n)`, like istiod's
    /// doubling from 1 s (`PILOT_JWT_PUB_KEY_REFRESH_INTERVAL_ON_FAILURE`) up to the refresh
    /// interval. A success resets it.
    pub retry: BackoffConfig,
}

impl Default for JwksRefreshConfig {
    fn default() -> Self {
        Self {
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            retry: BackoffConfig {
                base: Duration::from_secs(1),
                max: DEFAULT_REFRESH_INTERVAL,
            },
        }
    }
}

impl JwksRefreshConfig {
    /// This config with another refresh interval.
    #[must_use]
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// This config with other retry delays.
    #[must_use]
    pub fn with_retry(mut self, base: Duration, max: Duration) -> Self {
        self.retry = BackoffConfig { base, max };
        self
    }
}

/// How one remote key set is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksSourceStatus {
    /// The URL (and [`JwksStore`] key).
    pub url: String,
    /// Keys in force from the last successful fetch; `None` until one succeeds (tokens of
    /// this issuer are refused meanwhile).
    pub keys: Option<usize>,
    /// When the last fetch succeeded.
    pub last_success: Option<SystemTime>,
    /// Successful fetches so far.
    pub successes: u64,
    /// Failed fetches so far.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The last failure, cleared by the next success. While set, the last good keys (if
    /// any) stay in force.
    pub last_error: Option<String>,
}

/// Fetches the key sets an [`Authenticator`](mesh_policy::authn::Authenticator) needs into
/// its [`JwksStore`], and keeps them fresh.
///
/// ```no_run
/// # async fn demo(authn: mesh_policy::authn::Authenticator, store: mesh_policy::authn::JwksStore) {
/// use mesh_client::authn::{JwksClient, JwksRefreshConfig, JwksRefresher, JwksTls};
/// let refresher = JwksRefresher::spawn(
///     JwksClient::new(&JwksTls::default()),
///     store,
///     authn.remote_jwks(),
///     JwksRefreshConfig::default(),
/// );
/// // On policy changes: refresher.set_sources(new_authenticator.remote_jwks());
/// # }
/// ```
///
/// Dropping the refresher stops its tasks; the keys stay in the store.
#[derive(Debug)]
pub struct JwksRefresher {
    shared: Arc<Shared>,
    runtime: Handle,
    tasks: Mutex<HashMap<String, SourceTask>>,
}

#[derive(Debug)]
struct Shared {
    client: JwksClient,
    store: JwksStore,
    config: JwksRefreshConfig,
    status: Mutex<BTreeMap<String, JwksSourceStatus>>,
    attempts: watch::Sender<u64>,
}

#[derive(Debug)]
struct SourceTask {
    source: RemoteJwks,
    wake: Arc<Notify>,
    handle: JoinHandle<()>,
}

impl JwksRefresher {
    /// Starts fetching `sources` (at once, then periodically) into `store`.
    ///
    /// The tasks run on the current Tokio runtime (also used by
    /// [`set_sources`](Self::set_sources), which may then be called from any thread). An
    /// invalid retry config (zero base, max below base) is replaced by the default one, with a
    /// warning.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn spawn(
        client: JwksClient,
        store: JwksStore,
        sources: Vec<RemoteJwks>,
        mut config: JwksRefreshConfig,
    ) -> Self {
        if let Err(error) = config.retry.validate() {
            tracing::warn!(%error, "JWKS refresher: invalid retry config, using the default");
            config.retry = JwksRefreshConfig::default().retry;
        }
        let refresher = Self {
            shared: Arc::new(Shared {
                client,
                store,
                config,
                status: Mutex::new(BTreeMap::new()),
                attempts: watch::Sender::new(0),
            }),
            runtime: Handle::current(),
            tasks: Mutex::new(HashMap::new()),
        };
        refresher.set_sources(sources);
        refresher
    }

    /// Replaces the set of key sets kept fresh (after a policy change). New URLs are fetched
    /// at once; URLs no longer needed stop being fetched and are removed from the store;
    /// unchanged ones keep their schedule and keys.
    pub fn set_sources(&self, sources: Vec<RemoteJwks>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted: HashMap<String, RemoteJwks> =
            sources.into_iter().map(|s| (s.url.clone(), s)).collect();
        tasks.retain(|url, task| {
            let keep = wanted.get(url) == Some(&task.source);
            if !keep {
                task.handle.abort();
                if !wanted.contains_key(url) {
                    self.shared.store.remove(url);
                    self.shared.status().remove(url);
                }
            }
            keep
        });
        for (url, source) in wanted {
            if tasks.contains_key(&url) {
                continue;
            }
            self.shared
                .status()
                .entry(url.clone())
                .or_insert_with(|| JwksSourceStatus {
                    url: url.clone(),
                    ..JwksSourceStatus::default()
                });
            let wake = Arc::new(Notify::new());
            let handle = self
                .runtime
                .spawn(run(self.shared.clone(), source.clone(), wake.clone()));
            tasks.insert(
                url,
                SourceTask {
                    source,
                    wake,
                    handle,
                },
            );
        }
    }

    /// Fetches every key set now instead of at its next scheduled time (e.g. when a token
    /// names an unknown `kid` after the issuer rotated keys).
    pub fn refresh_now(&self) {
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        for task in tasks.values() {
            task.wake.notify_one();
        }
    }

    /// The state of every key set, by URL.
    pub fn status(&self) -> Vec<JwksSourceStatus> {
        self.shared.status().values().cloned().collect()
    }

    /// A counter bumped after every fetch attempt (success or failure), to wait for
    /// refreshes without polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.attempts.subscribe()
    }
}

impl Drop for JwksRefresher {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner);
        for task in tasks.values() {
            task.handle.abort();
        }
    }
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, JwksSourceStatus>> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One URL's loop: fetch, record, wait (refresh interval or backoff, or a wake-up).
async fn run(shared: Arc<Shared>, source: RemoteJwks, wake: Arc<Notify>) {
    let retry = shared.config.retry;
    let mut backoff = match Backoff::new(retry, SplitMix64::from_entropy()) {
        Ok(backoff) => backoff,
        // Validated in `spawn`; nothing sensible to do otherwise but stop.
        Err(_) => return,
    };
    loop {
        let result = shared.client.fetch(&source).await;
        let wait = match result {
            Ok(jwks) => {
                let keys = jwks.keys().len();
                if shared.store.get(&source.url).as_deref() != Some(&jwks) {
                    tracing::info!(url = %source.url, keys, "JWKS updated");
                    shared.store.insert(source.url.clone(), jwks);
                }
                if let Some(status) = shared.status().get_mut(&source.url) {
                    status.keys = Some(keys);
                    status.last_success = Some(SystemTime::now());
                    status.successes += 1;
                    status.consecutive_failures = 0;
                    status.last_error = None;
                }
                backoff.reset();
                shared.config.refresh_interval
            }
            Err(error) => {
                let kept = shared.store.get(&source.url).is_some();
                tracing::warn!(url = %source.url, %error, kept_last_good = kept, "JWKS fetch failed");
                if let Some(status) = shared.status().get_mut(&source.url) {
                    status.failures += 1;
                    status.consecutive_failures = status.consecutive_failures.saturating_add(1);
                    status.last_error = Some(error.to_string());
                }
                // Full jitter may draw ~0; a floor keeps a dead server from being hammered.
                backoff.next_delay().max(retry.base / 4)
            }
        };
        shared.attempts.send_modify(|n| *n += 1);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

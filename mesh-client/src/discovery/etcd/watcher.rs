//! Following the registry: read the whole prefix, then watch it from the next revision.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use mesh_core::{
    model::{Endpoint, Service, ServiceName, Snapshot},
    resilience::Backoff,
    rng::SplitMix64,
};
use tokio::{sync::watch, task::JoinHandle};

use super::{
    EtcdConfig, EtcdError, connect,
    record::{EndpointRecord, KeyKind, Keys, RecordError, ServiceRecord},
    timed,
};
use crate::discovery::{Discovery, DiscoveryStatus};

/// How many skipped records `last_error` names before summarising the rest.
const LISTED_INVALID: usize = 3;

/// Services and endpoints from etcd, following every change.
///
/// The background task reads everything under the prefix (the
/// [key layout](EtcdConfig#key-layout)), then watches the prefix from the revision after that
/// read, so no change between the two is missed. Each batch of changes (one etcd revision)
/// produces a whole new [`Snapshot`] whose [`version`](Snapshot::version) is that etcd revision
/// (which only grows, unless the etcd cluster is rebuilt from empty and starts counting again);
/// endpoint lists of services that did not change are shared with the previous snapshot, so
/// balancers keep their state. A change that
/// leaves the result identical (a registrar rewriting the same record) publishes nothing.
///
/// Invalid records are skipped with a warning and listed in
/// [`status().last_error`](Discovery::status); the rest of the registry is still used. When
/// etcd becomes unreachable the last snapshot stays in force, the error is reported, and the task
/// reconnects with capped backoff, reading the prefix afresh before watching again. The task
/// stops when this value is dropped.
pub struct EtcdDiscovery {
    tx: watch::Sender<Arc<Snapshot>>,
    status: Arc<Mutex<DiscoveryStatus>>,
    task: JoinHandle<()>,
}

impl fmt::Debug for EtcdDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDiscovery")
            .field("version", &self.tx.borrow().version())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl EtcdDiscovery {
    /// Reads the registry now and publishes it before returning (so callers start with real
    /// endpoints), then follows it in the background. Fails if the configuration is invalid or
    /// etcd cannot be read within [`request_timeout`](EtcdConfig::request_timeout). Must be
    /// called inside a tokio runtime.
    pub async fn connect(config: EtcdConfig) -> Result<Self, EtcdError> {
        let (mut follower, backoff) = Follower::new(config)?;
        let mut client = connect(&follower.config).await?;
        let revision = follower.resync(&mut client).await?;
        Ok(follower.spawn(backoff, Some((client, revision))))
    }

    /// Starts with an empty snapshot (version 0, not counted in
    /// [`updates`](DiscoveryStatus::updates)) and connects in the background: for processes that
    /// must start even while etcd is down. Fails only for an invalid configuration. Must be
    /// called inside a tokio runtime.
    pub fn spawn(config: EtcdConfig) -> Result<Self, EtcdError> {
        let (follower, backoff) = Follower::new(config)?;
        Ok(follower.spawn(backoff, None))
    }
}

impl Drop for EtcdDiscovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Discovery for EtcdDiscovery {
    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    fn current(&self) -> Arc<Snapshot> {
        // Read in place: no receiver to register and drop (this is read per request).
        self.tx.borrow().clone()
    }

    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn status(&self) -> DiscoveryStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One key's content, parsed once when it arrives.
enum Parsed {
    Service(ServiceName, Service),
    Endpoint(ServiceName, Endpoint),
    Invalid(String),
}

/// The background task's state: the registry as last read, and where to publish.
struct Follower {
    config: EtcdConfig,
    keys: Keys,
    tx: watch::Sender<Arc<Snapshot>>,
    status: Arc<Mutex<DiscoveryStatus>>,
    records: BTreeMap<String, Parsed>,
}

impl Follower {
    fn new(config: EtcdConfig) -> Result<(Self, Backoff<SplitMix64>), EtcdError> {
        config.validate()?;
        let backoff = Backoff::new(config.reconnect_backoff, SplitMix64::from_entropy())
            .map_err(|source| EtcdError::Backoff { source })?;
        let follower = Self {
            keys: Keys::new(&config.prefix),
            config,
            tx: watch::Sender::new(Arc::new(Snapshot::new(0))),
            status: Arc::new(Mutex::new(DiscoveryStatus::default())),
            records: BTreeMap::new(),
        };
        Ok((follower, backoff))
    }

    fn spawn(self, backoff: Backoff<SplitMix64>, pending: Option<(Client, i64)>) -> EtcdDiscovery {
        let tx = self.tx.clone();
        let status = self.status.clone();
        let task = tokio::spawn(self.run(backoff, pending));
        EtcdDiscovery { tx, status, task }
    }

    /// Follows the registry forever: watch until it fails, then back off, reconnect and resync.
    async fn run(mut self, mut backoff: Backoff<SplitMix64>, mut pending: Option<(Client, i64)>) {
        loop {
            let (mut client, revision) = match pending.take() {
                Some(ready) => ready,
                None => match self.reconnect().await {
                    Ok(ready) => ready,
                    Err(e) => {
                        self.fail(&e);
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue;
                    }
                },
            };
            let e = self.follow(&mut client, revision, &mut backoff).await;
            self.fail(&e);
            drop(client);
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn reconnect(&mut self) -> Result<(Client, i64), EtcdError> {
        let mut client = connect(&self.config).await?;
        let revision = self.resync(&mut client).await?;
        tracing::info!(endpoints = %self.config.describe(), revision, "etcd discovery resynced");
        Ok((client, revision))
    }

    /// Replaces everything known with a fresh read of the prefix and publishes it; returns the
    /// revision the read saw.
    async fn resync(&mut self, client: &mut Client) -> Result<i64, EtcdError> {
        let response = timed(
            self.config.request_timeout,
            "get",
            client.get(self.keys.root(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        self.records.clear();
        for kv in response.kvs() {
            self.store(String::from_utf8_lossy(kv.key()).into_owned(), kv.value());
        }
        self.publish(revision);
        Ok(revision)
    }

    /// Watches from `revision + 1` and applies every change until the stream fails; returns why.
    async fn follow(
        &mut self,
        client: &mut Client,
        revision: i64,
        backoff: &mut Backoff<SplitMix64>,
    ) -> EtcdError {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision.saturating_add(1));
        let watching = timed(
            self.config.request_timeout,
            "watch",
            client.watch(self.keys.root(), Some(options)),
        )
        .await;
        let mut stream = match watching {
            Ok(stream) => stream,
            Err(e) => return e,
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => {
                    return EtcdError::StreamEnded {
                        operation: "watch",
                        reason: "closed by etcd".to_owned(),
                    };
                }
                Err(source) => {
                    return EtcdError::Request {
                        operation: "watch",
                        source,
                    };
                }
            };
            if response.canceled() {
                let reason = if response.compact_revision() > 0 {
                    format!(
                        "revisions up to {} were compacted; reading everything again",
                        response.compact_revision()
                    )
                } else if response.cancel_reason().is_empty() {
                    "cancelled by etcd".to_owned()
                } else {
                    response.cancel_reason().to_owned()
                };
                return EtcdError::StreamEnded {
                    operation: "watch",
                    reason,
                };
            }
            if response.created() {
                // Connected, read and watching: the next outage starts backing off afresh.
                backoff.reset();
            }
            if response.events().is_empty() {
                continue;
            }
            let mut latest = 0;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                latest = latest.max(kv.mod_revision());
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                match event.event_type() {
                    EventType::Put => self.store(key, kv.value()),
                    EventType::Delete => {
                        self.records.remove(&key);
                    }
                }
            }
            self.publish(response.header().map_or(latest, |h| h.revision()));
        }
    }

    fn store(&mut self, key: String, value: &[u8]) {
        let parsed = parse(&self.keys, &key, value).unwrap_or_else(|e| {
            let reason = e.to_string();
            tracing::warn!(%key, %reason, "skipping invalid etcd discovery record");
            Parsed::Invalid(reason)
        });
        self.records.insert(key, parsed);
    }

    /// Builds the snapshot of everything valid; publishes it if it differs from the current one
    /// (or nothing was published yet), and reports the skipped records.
    fn publish(&mut self, revision: i64) {
        let current = self.tx.borrow().clone();
        let mut services: BTreeMap<&ServiceName, (Option<&Service>, Vec<Endpoint>)> =
            BTreeMap::new();
        let mut invalid = Vec::new();
        for (key, parsed) in &self.records {
            match parsed {
                Parsed::Service(name, service) => {
                    services.entry(name).or_default().0 = Some(service)
                }
                Parsed::Endpoint(name, endpoint) => {
                    services.entry(name).or_default().1.push(endpoint.clone());
                }
                Parsed::Invalid(reason) => invalid.push(format!("{key}: {reason}")),
            }
        }
        let mut snapshot = Snapshot::new(u64::try_from(revision).unwrap_or(0));
        for (name, (service, endpoints)) in services {
            let service = service
                .cloned()
                .unwrap_or_else(|| Service::new(name.clone()));
            // Unchanged lists keep their Arc, so balancers for those services are left alone.
            let endpoints: Arc<[Endpoint]> = match current.endpoints(name.as_str()) {
                Some(old) if old.as_ref() == endpoints.as_slice() => old.clone(),
                _ => endpoints.into(),
            };
            snapshot.insert(service, endpoints);
        }
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if status.updates == 0 || !snapshot.changes_since(&current).is_empty() {
            tracing::info!(
                revision,
                services = snapshot.len(),
                skipped = invalid.len(),
                "etcd discovery snapshot published"
            );
            self.tx.send_replace(Arc::new(snapshot));
            status.updates += 1;
        }
        let summary = summarise(&invalid);
        if summary.is_some() && summary != status.last_error {
            // Records had to be skipped (counted once per distinct set, not per revision).
            status.errors += 1;
        }
        status.last_error = summary;
    }

    /// Reports a connection failure; the published snapshot is left as it is.
    fn fail(&self, error: &EtcdError) {
        let version = self.tx.borrow().version();
        let message = format!(
            "etcd {}: {error}; keeping the last known endpoints (version {version}) and \
             reconnecting",
            self.config.describe()
        );
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.errors += 1;
        let previous = status.last_error.replace(message.clone());
        if previous.as_deref() != Some(message.as_str()) {
            tracing::warn!(error = %message, "etcd discovery lost its connection");
        }
    }
}

fn parse(keys: &Keys, key: &str, value: &[u8]) -> Result<Parsed, RecordError> {
    Ok(match keys.parse(key)? {
        KeyKind::Service(name) => {
            let service = ServiceRecord::decode(value)?.into_service(name.clone())?;
            Parsed::Service(name, service)
        }
        KeyKind::Endpoint(name, address) => {
            let endpoint = EndpointRecord::decode(value)?.into_endpoint(address)?;
            Parsed::Endpoint(name, endpoint)
        }
    })
}

fn summarise(invalid: &[String]) -> Option<String> {
    if invalid.is_empty() {
        return None;
    }
    let mut message = format!(
        "{} invalid etcd record(s) skipped: {}",
        invalid.len(),
        invalid
            .iter()
            .take(LISTED_INVALID)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    if invalid.len() > LISTED_INVALID {
        message.push_str(&format!("; and {} more", invalid.len() - LISTED_INVALID));
    }
    Some(message)
}

//! Announcing one endpoint in etcd for as long as the process lives.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use etcd_client::{
    Client, EventType, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions,
    WatchResponse,
};
use mesh_core::{
    model::{Endpoint, Service},
    resilience::Backoff,
    rng::SplitMix64,
};
use tokio::task::JoinHandle;

use super::{
    EtcdConfig, EtcdError, connect,
    record::{EndpointRecord, Keys, ServiceRecord},
    timed,
};

/// How a registration is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistrationStatus {
    /// The lease the records are attached to, once one was granted.
    pub lease_id: Option<i64>,
    /// True while the records are written and the lease is being renewed; false during an outage
    /// (other instances then still list this endpoint until the lease's TTL runs out).
    pub registered: bool,
    /// How many times the records were written: 1 after [`EtcdRegistration::register`], one more
    /// for every rewrite after a reconnection, a lost lease or a deleted record.
    pub registrations: u64,
    /// The most recent failure; cleared when the records are written again.
    pub last_error: Option<String>,
}

/// One endpoint (and its service record) announced in etcd under a lease.
///
/// [`register`](Self::register) writes `<prefix>/services/<hostname>` and
/// `<prefix>/endpoints/<hostname>/<ip:port>` (the [key layout](EtcdConfig#key-layout)) attached
/// to a lease of [`lease_ttl`](EtcdConfig::lease_ttl), and a background task renews the lease
/// every third of its TTL. So the endpoint is listed exactly while this process is alive and in
/// touch with etcd:
///
/// - [`deregister`](Self::deregister) revokes the lease, removing both keys at once: call it
///   when shutting down, before draining, so clients stop picking this endpoint.
/// - Dropping the value (or the process dying) stops the renewals; etcd removes the keys when the
///   TTL runs out.
/// - If etcd becomes unreachable the task reconnects with capped backoff; it keeps the lease if it
///   survived (etcd extends leases across its own restarts) or grants a new one, and writes the
///   records again. If the lease is lost while connected (revoked, expired during a long pause),
///   it is replaced at once. If another instance's lease takes the shared service record with it,
///   this instance writes the record again.
pub struct EtcdRegistration {
    task: JoinHandle<()>,
    shared: Arc<Mutex<Shared>>,
    config: EtcdConfig,
    service_key: String,
    endpoint_key: String,
}

impl fmt::Debug for EtcdRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistration")
            .field("endpoint_key", &self.endpoint_key)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// What the task shares with the handle: its status, and the client and lease that
/// [`EtcdRegistration::deregister`] revokes with.
struct Shared {
    status: RegistrationStatus,
    client: Option<Client>,
}

/// A connected registration: the records are written under `lease`.
struct Session {
    client: Client,
    lease: i64,
    ttl: Duration,
    /// The revision of the last write; the watch for deletions starts after it.
    revision: i64,
}

/// Why [`Registrar::maintain`] returned without an error.
enum Interrupted {
    /// The lease is gone (revoked or expired); grant a new one on the same connection.
    LeaseLost,
}

impl EtcdRegistration {
    /// Writes `service`'s record and `endpoint`'s record under a new lease and starts renewing it.
    ///
    /// Returns once the records are in etcd, so the endpoint is discoverable when this succeeds;
    /// fails if the configuration is invalid, the service uses a protocol that has no record
    /// form, or etcd does not accept the writes within
    /// [`request_timeout`](EtcdConfig::request_timeout). Must be called inside a tokio runtime.
    pub async fn register(
        config: &EtcdConfig,
        service: &Service,
        endpoint: &Endpoint,
    ) -> Result<Self, EtcdError> {
        config.validate()?;
        let backoff = Backoff::new(config.reconnect_backoff, SplitMix64::from_entropy())
            .map_err(|source| EtcdError::Backoff { source })?;
        let keys = Keys::new(&config.prefix);
        let encode = |value: Result<Vec<u8>, serde_json::Error>| {
            value.map_err(|source| EtcdError::Encode { source })
        };
        let registrar = Registrar {
            config: config.clone(),
            service_key: keys.service(&service.hostname),
            endpoint_key: keys.endpoint(&service.hostname, endpoint.address),
            service_value: encode(serde_json::to_vec(&ServiceRecord::from_service(service)?))?,
            endpoint_value: encode(serde_json::to_vec(&EndpointRecord::from_endpoint(endpoint)))?,
            shared: Arc::new(Mutex::new(Shared {
                status: RegistrationStatus::default(),
                client: None,
            })),
        };
        let client = connect(config).await?;
        let session = registrar.establish(client, None).await?;
        tracing::info!(
            key = %registrar.endpoint_key,
            lease = session.lease,
            ttl = ?session.ttl,
            "registered in etcd"
        );
        let (shared, service_key, endpoint_key) = (
            registrar.shared.clone(),
            registrar.service_key.clone(),
            registrar.endpoint_key.clone(),
        );
        let task = tokio::spawn(registrar.run(backoff, session));
        Ok(Self {
            task,
            shared,
            config: config.clone(),
            service_key,
            endpoint_key,
        })
    }

    /// How the registration is doing.
    pub fn status(&self) -> RegistrationStatus {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status
            .clone()
    }

    /// The key of the service record (`<prefix>/services/<hostname>`).
    pub fn service_key(&self) -> &str {
        &self.service_key
    }

    /// The key of the endpoint record (`<prefix>/endpoints/<hostname>/<ip:port>`).
    pub fn endpoint_key(&self) -> &str {
        &self.endpoint_key
    }

    /// Stops renewing and revokes the lease, so etcd deletes the records now and watchers drop
    /// the endpoint within one round trip.
    ///
    /// If etcd cannot be reached this fails, and the records disappear when the lease's TTL runs
    /// out instead. A lease that is already gone counts as success.
    pub async fn deregister(mut self) -> Result<(), EtcdError> {
        self.task.abort();
        // Wait until the task is gone so it cannot write the records again after the revoke.
        let _ = (&mut self.task).await;
        let (lease, client) = {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            shared.status.registered = false;
            (shared.status.lease_id, shared.client.take())
        };
        let Some(lease) = lease else { return Ok(()) };
        let mut client = match client {
            Some(client) => client,
            None => connect(&self.config).await?,
        };
        let timeout = self.config.request_timeout;
        match timed(timeout, "lease revoke", client.lease_revoke(lease)).await {
            Ok(_) => {
                tracing::info!(key = %self.endpoint_key, lease, "deregistered from etcd");
                Ok(())
            }
            Err(e) => {
                // Revoking a lease that already expired fails; that is the outcome we wanted.
                match timed(timeout, "lease ttl", client.lease_time_to_live(lease, None)).await {
                    Ok(ttl) if ttl.ttl() <= 0 => Ok(()),
                    _ => Err(e),
                }
            }
        }
    }
}

impl Drop for EtcdRegistration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The background task: keeps the records written and the lease alive.
struct Registrar {
    config: EtcdConfig,
    service_key: String,
    endpoint_key: String,
    service_value: Vec<u8>,
    endpoint_value: Vec<u8>,
    shared: Arc<Mutex<Shared>>,
}

impl Registrar {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reconnects and re-establishes forever, backing off after failures.
    async fn run(self, mut backoff: Backoff<SplitMix64>, first: Session) {
        let mut pending = Some(first);
        loop {
            let session = match pending.take() {
                Some(session) => Ok(session),
                None => match connect(&self.config).await {
                    Ok(client) => {
                        // Re-use the lease if etcd still has it (it extends leases across its
                        // own restarts); `establish` checks.
                        let lease = self.shared().status.lease_id;
                        self.establish(client, lease).await
                    }
                    Err(e) => Err(e),
                },
            };
            let error = match session {
                Ok(session) => {
                    backoff.reset();
                    let client = session.client.clone();
                    match self.maintain(session).await {
                        Ok(Interrupted::LeaseLost) => {
                            tracing::warn!(
                                key = %self.endpoint_key,
                                "etcd lease lost; registering again with a new lease"
                            );
                            {
                                // The records went with the lease.
                                let mut shared = self.shared();
                                shared.status.registered = false;
                                shared.status.lease_id = None;
                            }
                            match self.establish(client, None).await {
                                Ok(session) => {
                                    pending = Some(session);
                                    continue;
                                }
                                Err(e) => e,
                            }
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            self.fail(&error);
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Makes sure a live lease exists (re-using `lease` if etcd still has it) and writes both
    /// records under it.
    async fn establish(
        &self,
        mut client: Client,
        lease: Option<i64>,
    ) -> Result<Session, EtcdError> {
        let timeout = self.config.request_timeout;
        let alive = match lease {
            Some(id) => {
                let ttl = timed(timeout, "lease ttl", client.lease_time_to_live(id, None)).await?;
                (ttl.ttl() > 0).then(|| (id, ttl.granted_ttl()))
            }
            None => None,
        };
        let (lease, granted) = match alive {
            Some(alive) => alive,
            None => {
                let grant = timed(
                    timeout,
                    "lease grant",
                    client.lease_grant(self.config.lease_ttl_secs(), None),
                )
                .await?;
                (grant.id(), grant.ttl())
            }
        };
        {
            let mut shared = self.shared();
            shared.status.lease_id = Some(lease);
            shared.client = Some(client.clone());
        }
        let revision = self.write(&mut client, lease).await?;
        let ttl = Duration::from_secs(u64::try_from(granted).unwrap_or(1).max(1));
        Ok(Session {
            client,
            lease,
            ttl,
            revision,
        })
    }

    /// Writes both records under `lease` in one transaction; returns its revision.
    async fn write(&self, client: &mut Client, lease: i64) -> Result<i64, EtcdError> {
        let options = || Some(PutOptions::new().with_lease(lease));
        let txn = Txn::new().and_then([
            TxnOp::put(
                self.service_key.as_str(),
                self.service_value.clone(),
                options(),
            ),
            TxnOp::put(
                self.endpoint_key.as_str(),
                self.endpoint_value.clone(),
                options(),
            ),
        ]);
        let response = timed(self.config.request_timeout, "put", client.txn(txn)).await?;
        let mut shared = self.shared();
        shared.status.registered = true;
        shared.status.registrations += 1;
        shared.status.last_error = None;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// Renews the lease every third of its TTL and rewrites the records if either is deleted,
    /// until the connection fails (error) or the lease is gone.
    async fn maintain(&self, mut session: Session) -> Result<Interrupted, EtcdError> {
        let timeout = self.config.request_timeout;
        let client = &mut session.client;
        let (mut keeper, mut renewals) = timed(
            timeout,
            "lease keep-alive",
            client.lease_keep_alive(session.lease),
        )
        .await?;
        let from = WatchOptions::new().with_start_revision(session.revision.saturating_add(1));
        let mut deletions = timed(
            timeout,
            "watch",
            client.watch(self.service_key.as_str(), Some(from.clone())),
        )
        .await?;
        timed(
            timeout,
            "watch",
            deletions.watch(self.endpoint_key.as_str(), Some(from)),
        )
        .await?;
        let period = (session.ttl / 3).max(Duration::from_millis(100));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let step = tokio::select! {
                _ = ticks.tick() => Self::renew(&mut keeper, &mut renewals, timeout, period).await,
                message = deletions.message() => self.repair(client, session.lease, message).await,
            };
            if let Some(interrupted) = step? {
                return Ok(interrupted);
            }
        }
    }

    /// Renews the lease once; `Some` if etcd says it is gone.
    async fn renew(
        keeper: &mut LeaseKeeper,
        renewals: &mut LeaseKeepAliveStream,
        timeout: Duration,
        period: Duration,
    ) -> Result<Option<Interrupted>, EtcdError> {
        timed(timeout, "lease keep-alive", keeper.keep_alive()).await?;
        // Answers are due well within a TTL-third; waiting longer would risk the lease.
        match tokio::time::timeout(period, renewals.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => Ok(None),
            Ok(Ok(Some(_))) => Ok(Some(Interrupted::LeaseLost)),
            Ok(Ok(None)) => Err(EtcdError::StreamEnded {
                operation: "lease keep-alive",
                reason: "closed by etcd".to_owned(),
            }),
            Ok(Err(source)) => Err(EtcdError::Request {
                operation: "lease keep-alive",
                source,
            }),
            Err(_) => Err(EtcdError::Timeout {
                operation: "lease keep-alive",
                after: period,
            }),
        }
    }

    /// Handles one message of the watch on our own keys: writes the records again if either was
    /// deleted; `Some` if that failed because the lease is gone.
    async fn repair(
        &self,
        client: &mut Client,
        lease: i64,
        message: Result<Option<WatchResponse>, etcd_client::Error>,
    ) -> Result<Option<Interrupted>, EtcdError> {
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => {
                return Err(EtcdError::StreamEnded {
                    operation: "watch",
                    reason: "closed by etcd".to_owned(),
                });
            }
            Err(source) => {
                return Err(EtcdError::Request {
                    operation: "watch",
                    source,
                });
            }
        };
        if response.canceled() {
            return Err(EtcdError::StreamEnded {
                operation: "watch",
                reason: response.cancel_reason().to_owned(),
            });
        }
        let deleted = response
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete);
        if !deleted {
            return Ok(None);
        }
        tracing::info!(
            key = %self.endpoint_key,
            "etcd registration record deleted; writing it again"
        );
        let Err(e) = self.write(client, lease).await else {
            return Ok(None);
        };
        // Most likely the lease went with the records; check before treating it as an outage.
        let timeout = self.config.request_timeout;
        let ttl = timed(timeout, "lease ttl", client.lease_time_to_live(lease, None)).await?;
        if ttl.ttl() <= 0 {
            Ok(Some(Interrupted::LeaseLost))
        } else {
            Err(e)
        }
    }

    fn fail(&self, error: &EtcdError) {
        let message = format!(
            "etcd {}: {error}; retrying (the endpoint stays listed until its lease expires)",
            self.config.describe()
        );
        let mut shared = self.shared();
        shared.status.registered = false;
        shared.client = None;
        if shared.status.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(key = %self.endpoint_key, error = %message, "etcd registration failed");
        }
        shared.status.last_error = Some(message);
    }
}

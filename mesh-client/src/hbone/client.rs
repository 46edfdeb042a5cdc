//! The outbound side: open tunnels to destinations over pooled HBONE connections.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use mesh_core::SpiffeId;
use mesh_tls::{ExpectedIdentities, MeshTls};
use tokio_util::sync::CancellationToken;

use super::{
    H2Stream, TunnelError, TunnelOptions, WorkloadInfo,
    connection::{Connection, Slot, Timeouts},
    headers::connect_request,
    settings::{
        CLIENT_MAX_STREAMS_PER_CONNECTION, HBONE_PORT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT,
    },
};

/// Where a tunnel goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The destination workload's HBONE address: its IP and (usually) port 15008. This IP is
    /// also the IP in the CONNECT authority, as ztunnel requires.
    pub hbone_addr: SocketAddr,
    /// The application port on that workload.
    pub target_port: u16,
    /// The identities the destination may present.
    pub expected: ExpectedIdentities,
}

impl Destination {
    /// A destination at `ip`, HBONE on the conventional port 15008.
    pub fn new(ip: std::net::IpAddr, target_port: u16, expected: ExpectedIdentities) -> Self {
        Self {
            hbone_addr: SocketAddr::new(ip, HBONE_PORT),
            target_port,
            expected,
        }
    }

    /// The CONNECT authority: the dialed IP with the target port.
    pub fn authority(&self) -> SocketAddr {
        SocketAddr::new(self.hbone_addr.ip(), self.target_port)
    }
}

/// Settings for [`HboneClient`]. Defaults follow ztunnel.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HboneClientConfig {
    /// TCP connect plus HTTP/2 handshake limit (the TLS handshake has its own, in `TlsOptions`).
    pub connect_timeout: Duration,
    /// How long to wait for the CONNECT's answer.
    pub response_timeout: Duration,
    /// Connections without streams for this long are closed.
    pub idle_timeout: Duration,
    /// Streams per connection before another connection is opened (capped by the peer).
    pub max_streams_per_connection: usize,
    /// Keepalive PING interval.
    pub keepalive_interval: Duration,
    /// A PING unanswered this long closes the connection.
    pub keepalive_timeout: Duration,
    /// Who we are, for the `baggage` header.
    pub workload: WorkloadInfo,
    /// Where handshakes, tunnels and pool state are recorded (`None`: not recorded).
    pub telemetry: Option<crate::observe::Telemetry>,
}

impl Default for HboneClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_streams_per_connection: CLIENT_MAX_STREAMS_PER_CONNECTION,
            keepalive_interval: KEEPALIVE_INTERVAL,
            keepalive_timeout: KEEPALIVE_TIMEOUT,
            workload: WorkloadInfo::default(),
            telemetry: None,
        }
    }
}

/// Counters describing the pool, for tests, metrics and `/config_dump`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections opened (each cost one TLS handshake) since creation.
    pub connections_opened: u64,
    /// Connections currently pooled.
    pub connections_open: usize,
    /// Tunnels currently open.
    pub streams_open: usize,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    source: SpiffeId,
    expected: ExpectedIdentities,
    addr: SocketAddr,
}

#[derive(Default)]
struct KeyEntry {
    conns: Mutex<Vec<Arc<Connection>>>,
    /// Held while dialing (one handshake in flight per key); holds the last dial's error.
    dialing: tokio::sync::Mutex<Option<String>>,
    /// Bumped after every dial, so a waiter can tell that a dial finished while it queued.
    attempts: AtomicU64,
}

/// Opens HBONE tunnels: pooled, multiplexed HTTP/2 CONNECT streams over mutual TLS.
///
/// Connections are pooled per (our identity, expected destination identities, destination
/// address); each carries up to `min(100, peer's MAX_CONCURRENT_STREAMS)` tunnels before another is
/// opened, and only one handshake per key is in flight at a time, so a burst of tunnels to a new
/// destination costs one handshake, not a storm. Idle connections close after `idle_timeout`.
///
/// Create it inside a tokio runtime (it spawns its reaper and connection tasks there). Cloning is
/// cheap; clones share the pool. Dropping the last clone (or calling [`close`](Self::close))
/// closes every connection.
#[derive(Clone)]
pub struct HboneClient {
    inner: Arc<Inner>,
}

struct Inner {
    tls: MeshTls,
    config: HboneClientConfig,
    timeouts: Timeouts,
    baggage: Option<String>,
    pool: Mutex<HashMap<PoolKey, Arc<KeyEntry>>>,
    opened: AtomicU64,
    shutdown: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl HboneClient {
    /// A client presenting `tls`'s credentials.
    pub fn new(tls: MeshTls, config: HboneClientConfig) -> Self {
        let mut workload = config.workload.clone();
        if workload.namespace.is_none() {
            workload.namespace = tls
                .credentials()
                .svid()
                .spiffe_id()
                .namespace()
                .map(str::to_owned);
        }
        let inner = Arc::new(Inner {
            baggage: workload.baggage(),
            timeouts: Timeouts {
                connect: config.connect_timeout,
                response: config.response_timeout,
                keepalive_interval: config.keepalive_interval,
                keepalive_timeout: config.keepalive_timeout,
            },
            tls,
            config,
            pool: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        spawn_reaper(Arc::downgrade(&inner), inner.shutdown.clone());
        if let Some(telemetry) = &inner.config.telemetry {
            let weak = Arc::downgrade(&inner);
            telemetry.add_state_source(weak);
        }
        Self { inner }
    }

    /// Opens a tunnel to `dest` and returns it once the destination answered 200.
    pub async fn connect(&self, dest: &Destination) -> Result<H2Stream, TunnelError> {
        self.connect_with(dest, &TunnelOptions::default()).await
    }

    /// [`connect`](Self::connect) with per-tunnel options (trace context, original client).
    pub async fn connect_with(
        &self,
        dest: &Destination,
        options: &TunnelOptions,
    ) -> Result<H2Stream, TunnelError> {
        let slot = self.checkout(dest).await?;
        let conn = slot.connection().clone();
        let forwarded_for = options.original_client.unwrap_or(conn.local_addr());
        let request = connect_request(
            dest.authority(),
            self.inner.baggage.as_deref(),
            forwarded_for,
            options,
        )?;
        let stream = conn
            .open_stream(slot, request, self.inner.timeouts.response)
            .await?;
        Ok(match &self.inner.config.telemetry {
            Some(telemetry) => {
                let meter = outbound_meter(telemetry, dest, options, &stream);
                stream.with_meter(Some(meter))
            }
            None => stream,
        })
    }

    /// The verified identity of the server a tunnel would use, opening a connection if needed.
    pub async fn peer_identity(&self, dest: &Destination) -> Result<SpiffeId, TunnelError> {
        let slot = self.checkout(dest).await?;
        Ok(slot.connection().peer().clone())
    }

    async fn checkout(&self, dest: &Destination) -> Result<Slot, TunnelError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(TunnelError::PoolClosed);
        }
        let key = PoolKey {
            source: self.inner.tls.credentials().svid().spiffe_id().clone(),
            expected: dest.expected.clone(),
            addr: dest.hbone_addr,
        };
        let entry = {
            let mut pool = self
                .inner
                .pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            pool.entry(key).or_default().clone()
        };
        if let Some(slot) = reserve(&entry) {
            return Ok(slot);
        }
        let seen_attempts = entry.attempts.load(Ordering::Acquire);
        let mut last_error = entry.dialing.lock().await;
        if let Some(slot) = reserve(&entry) {
            return Ok(slot);
        }
        // A dial that finished while we queued failed: share its verdict instead of repeating
        // it at once (that repetition is the connection storm pooling exists to prevent).
        if entry.attempts.load(Ordering::Acquire) > seen_attempts {
            if let Some(reason) = last_error.as_ref() {
                return Err(TunnelError::Connect {
                    addr: dest.hbone_addr,
                    source: std::io::Error::other(format!(
                        "a concurrent dial to the same destination just failed: {reason}"
                    )),
                });
            }
        }
        let result = tokio::select! {
            r = Connection::open(
                &self.inner.tls,
                dest.hbone_addr,
                &dest.expected,
                self.inner.config.max_streams_per_connection,
                &self.inner.timeouts,
            ) => r,
            () = self.inner.shutdown.cancelled() => Err(TunnelError::PoolClosed),
        };
        entry.attempts.fetch_add(1, Ordering::AcqRel);
        if let Some(telemetry) = &self.inner.config.telemetry
            && !matches!(result, Err(TunnelError::PoolClosed))
        {
            let outcome = result
                .as_ref()
                .map(|_| ())
                .map_err(crate::observe::connect_reason);
            telemetry.handshake(crate::observe::Direction::Outbound, outcome);
        }
        match result {
            Ok(conn) => {
                *last_error = None;
                self.inner.opened.fetch_add(1, Ordering::Relaxed);
                let conn = Arc::new(conn);
                entry
                    .conns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(conn.clone());
                conn.try_acquire().ok_or_else(|| TunnelError::Http2 {
                    addr: dest.hbone_addr,
                    reason: "the server allows no concurrent streams".to_owned(),
                    refused: true,
                })
            }
            Err(e) => {
                *last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Pool counters.
    pub fn stats(&self) -> PoolStats {
        pool_stats(&self.inner)
    }

    /// Closes every pooled connection and refuses new tunnels. Open tunnels are reset.
    pub fn close(&self) {
        self.inner.shutdown.cancel();
        self.inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The TLS endpoint this client presents.
    pub fn tls(&self) -> &MeshTls {
        &self.inner.tls
    }
}

/// Meters an outbound tunnel: TCP metrics as the source, for the service named in `options`.
fn outbound_meter(
    telemetry: &crate::observe::Telemetry,
    dest: &Destination,
    options: &TunnelOptions,
    stream: &H2Stream,
) -> crate::observe::TunnelMeter {
    let service = options
        .service_host
        .as_deref()
        .unwrap_or(crate::observe::UNKNOWN);
    let flow = telemetry.flow(
        crate::observe::Reporter::Source,
        crate::observe::RequestProtocol::Tcp,
        service,
        stream.peer_identity(),
        stream.peer_baggage(),
    );
    let record = telemetry
        .access_log_enabled()
        .then(|| crate::observe::AccessRecord {
            direction: "outbound",
            method: "CONNECT".to_owned(),
            protocol: "TCP",
            response_code: 200,
            upstream_host: Some(dest.authority()),
            upstream_cluster: Some(service.to_owned()),
            upstream_peer_principal: stream.peer_identity().map(|p| p.as_str().to_owned()),
            trace_id: match &options.trace {
                Some(trace) => Some(trace.trace_id()),
                None => options
                    .traceparent
                    .as_deref()
                    .and_then(crate::observe::TraceContext::parse_traceparent)
                    .map(|t| t.trace_id()),
            },
            ..crate::observe::AccessRecord::default()
        });
    let meter = crate::observe::TunnelMeter::open(flow, telemetry, record);
    // Raw tunnels have a span of their own; a tunnel opened for an HTTP request carries that
    // request's client span instead.
    match &options.trace {
        Some(trace) => meter.with_span(
            telemetry,
            crate::observe::spans::SpanKind::Client,
            trace,
            |span| {
                span.attr("server.address", service);
                span.attr("network.peer.address", dest.authority().ip().to_string());
                span.attr("network.peer.port", i64::from(dest.authority().port()));
                if let Some(peer) = stream.peer_identity() {
                    span.attr("mesh.peer.principal", peer.as_str());
                }
            },
        ),
        None => meter,
    }
}

impl crate::observe::StateSource for Inner {
    fn report(&self, report: &mut crate::observe::StateReport) {
        let stats = pool_stats(self);
        report.pool_connections += stats.connections_open;
        report.pool_connections_opened += stats.connections_opened;
        report.pool_streams += stats.streams_open;
    }
}

fn reserve(entry: &KeyEntry) -> Option<Slot> {
    let mut conns = entry.conns.lock().unwrap_or_else(PoisonError::into_inner);
    conns.retain(|c| !c.is_closed());
    conns.iter().find_map(|c| c.try_acquire())
}

fn pool_stats(inner: &Inner) -> PoolStats {
    let pool = inner.pool.lock().unwrap_or_else(PoisonError::into_inner);
    let mut stats = PoolStats {
        connections_opened: inner.opened.load(Ordering::Relaxed),
        ..PoolStats::default()
    };
    for entry in pool.values() {
        let conns = entry.conns.lock().unwrap_or_else(PoisonError::into_inner);
        for c in conns.iter().filter(|c| !c.is_closed()) {
            stats.connections_open += 1;
            stats.streams_open += c.active_streams();
        }
    }
    stats
}

/// Closes connections idle longer than the idle timeout, and forgets dead ones.
fn spawn_reaper(inner: std::sync::Weak<Inner>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let period = match inner.upgrade() {
                Some(i) => (i.config.idle_timeout / 4)
                    .clamp(Duration::from_millis(50), Duration::from_secs(30)),
                None => return,
            };
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = shutdown.cancelled() => return,
            }
            let Some(inner) = inner.upgrade() else { return };
            let now = Instant::now();
            let idle_timeout = inner.config.idle_timeout;
            let mut pool = inner.pool.lock().unwrap_or_else(PoisonError::into_inner);
            pool.retain(|_, entry| {
                let mut conns = entry.conns.lock().unwrap_or_else(PoisonError::into_inner);
                conns.retain(|c| {
                    !c.is_closed() && c.idle_for(now).is_none_or(|idle| idle < idle_timeout)
                });
                !conns.is_empty() || Arc::strong_count(entry) > 1
            });
        }
    });
}

impl fmt::Debug for HboneClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HboneClient")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

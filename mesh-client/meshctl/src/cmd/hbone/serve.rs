//! `meshctl hbone serve`: accept HBONE tunnels, forward or echo them, drain on a signal.

use std::{io::Write, net::SocketAddr, sync::Arc, time::Duration};

use mesh_client::{
    hbone::{
        Delivery, ForwardTo, HboneServer, HboneServerConfig, InboundRequest, InboundTunnel, Verdict,
    },
    observe::{AdminServer, CredentialsState, LogControl, Telemetry, WorkloadLabels},
};
use mesh_tls::{Credentials, MeshTls, TlsOptions, source::files::FileSource};
use tokio::{
    io::{AsyncWriteExt, BufReader},
    sync::watch,
};

use super::{init_logging, load_identity, parse_addr, setup};
use crate::{
    cli::HboneServeArgs,
    cmd::{Outcome, rfc3339},
    error::Error,
};

/// How often the certificate files are checked for a rotated SVID or bundle.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How long open tunnels may finish after the first SIGINT/SIGTERM.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Read buffer of an echo tunnel: large enough for HBONE's big DATA frames.
const ECHO_BUFFER: usize = 64 * 1024;

/// `meshctl hbone serve`.
pub(super) fn run(args: &HboneServeArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    // Everything that can be checked without the network is checked first.
    let listen = parse_addr("--listen", &args.listen, "0.0.0.0:15008")?;
    let delivery = match &args.delivery.forward {
        Some(target) => Delivery::Forward(ForwardTo::Fixed(parse_addr(
            "--forward",
            target,
            "127.0.0.1:8080",
        )?)),
        None => Delivery::Handler(Arc::new(echo)),
    };
    let admin = args
        .admin
        .as_deref()
        .map(|a| parse_addr("--admin", a, "127.0.0.1:15020"))
        .transpose()?;
    let mode = if args.delivery.echo {
        "echo"
    } else {
        "forward"
    };
    let (source, credentials) = load_identity(&args.identity)?;
    let tls = MeshTls::new(credentials.clone(), TlsOptions::default()).map_err(Error::Tls)?;
    let logs = init_logging("info")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(setup("the async runtime"))?;
    let admin = admin.map(|listen| Admin { listen, logs, mode });
    let result = runtime.block_on(serve(
        listen,
        delivery,
        admin,
        source,
        credentials,
        tls,
        out,
    ));
    // Drained already (or told to stop at once); whatever is left is not worth waiting for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// What `--admin` asks for.
struct Admin {
    listen: SocketAddr,
    logs: LogControl,
    /// `echo` or `forward`, for `/config_dump`.
    mode: &'static str,
}

/// Serves until the first signal, then drains; a second signal stops at once.
async fn serve(
    listen: SocketAddr,
    delivery: Delivery,
    admin: Option<Admin>,
    source: FileSource,
    credentials: Credentials,
    tls: MeshTls,
    out: &mut dyn Write,
) -> Result<Outcome, Error> {
    // Installed before anything is announced, so a signal sent right after the "listening"
    // line drains instead of killing the process.
    let mut signals = Signals::install()?;
    let id = credentials.svid().spiffe_id().clone();
    let _watch = source.watch(credentials.clone(), RELOAD_INTERVAL);
    // Subscribed here, not in the task, so a rotation right after start-up is not missed.
    tokio::spawn(log_reloads(credentials.clone(), credentials.subscribe()));

    // Metrics are recorded only when someone can read them.
    let telemetry = admin
        .as_ref()
        .map(|_| Telemetry::new(WorkloadLabels::peer(Some(&id), None), &Default::default()));
    let mut config = HboneServerConfig::default();
    config.listen = listen;
    config.telemetry = telemetry.clone();
    let server = HboneServer::bind(tls, config, delivery)
        .await
        .map_err(|source| Error::Listen {
            addr: listen,
            source,
        })?;
    server.set_policy(log_tunnel);
    let addr = server.local_addr();
    let admin_server = match (admin, telemetry) {
        (Some(admin), Some(telemetry)) => {
            let state = CredentialsState::register(
                credentials.clone(),
                &telemetry,
                serde_json::json!({
                    "inbound": { "listen": addr.to_string(), "mode": admin.mode },
                    "admin": { "listen": admin.listen.to_string() },
                }),
            );
            let server = AdminServer::bind(admin.listen, telemetry, state, Some(admin.logs))
                .await
                .map_err(|source| Error::Listen {
                    addr: admin.listen,
                    source,
                })?;
            Some(server)
        }
        _ => None,
    };
    writeln!(out, "listening on {addr} as {id}")?;
    if let Some(admin) = &admin_server {
        writeln!(out, "admin endpoint on {}", admin.local_addr())?;
    }
    out.flush()?;

    let signal = signals.next().await;
    tracing::info!(
        "{signal} received: draining open tunnels for up to {}s (send it again to stop now)",
        DRAIN_DEADLINE.as_secs()
    );
    tokio::select! {
        cut = server.shutdown(DRAIN_DEADLINE) => {
            if cut > 0 {
                tracing::warn!("stopped; {cut} tunnels were still open and have been cut off");
            } else {
                tracing::info!("stopped; every tunnel finished");
            }
        }
        signal = signals.next() => {
            tracing::warn!("{signal} received again: stopping without waiting for open tunnels");
        }
    }
    Ok(Outcome::Clean)
}

/// The inbound policy: lets every tunnel of an accepted trust domain through (mTLS already
/// verified the peer) and logs who it is. It runs for every CONNECT that passed validation, in
/// either delivery mode.
fn log_tunnel(request: &InboundRequest<'_>) -> Verdict {
    tracing::info!(
        peer_addr = %request.peer_addr,
        target = %request.target,
        "tunnel from {}",
        request.peer
    );
    Verdict::Allow
}

/// `--echo`: copies the tunnel's bytes back until the client half-closes, then closes too.
fn echo(tunnel: InboundTunnel) {
    tokio::spawn(async move {
        let InboundTunnel { peer, stream, .. } = tunnel;
        let (reader, mut writer) = tokio::io::split(stream);
        let mut reader = BufReader::with_capacity(ECHO_BUFFER, reader);
        match tokio::io::copy_buf(&mut reader, &mut writer).await {
            Ok(bytes) => {
                if let Err(e) = writer.shutdown().await {
                    tracing::debug!(%peer, error = %e, "echo tunnel could not be closed cleanly");
                }
                tracing::debug!(%peer, bytes, "echo tunnel finished");
            }
            // Dropping the stream without a shutdown resets it, as a TCP RST would.
            Err(e) => tracing::info!(%peer, error = %e, "echo tunnel ended abnormally"),
        }
    });
}

/// Logs each rotation the file watcher swaps in.
async fn log_reloads(credentials: Credentials, mut changes: watch::Receiver<u64>) {
    while changes.changed().await.is_ok() {
        let svid = credentials.svid();
        tracing::info!(
            valid_until = rfc3339(svid.not_after().as_secs()),
            "reloaded the SVID or trust bundle; new handshakes present {}",
            svid.spiffe_id()
        );
    }
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), registered once so none is lost between waits.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> Result<Self, Error> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(setup("the SIGINT handler"))?,
            terminate: signal(SignalKind::terminate()).map_err(setup("the SIGTERM handler"))?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> Result<Self, Error> {
        Ok(Self {})
    }

    /// Waits for the next signal and names it.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.interrupt.recv() => "SIGINT",
            Some(()) = self.terminate.recv() => "SIGTERM",
            // Both streams ended: no signal can arrive any more.
            else => std::future::pending().await,
        }
    }

    /// Waits for the next signal and names it.
    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        }
    }
}

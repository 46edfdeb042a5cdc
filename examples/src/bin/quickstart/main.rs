//! `quickstart`: an HTTP service and its client in two processes, talking through an HBONE tunnel
//! (HTTP/2 CONNECT over mutual TLS, Istio ambient's data path), each knowing who the other is.
//!
//! Run it with `cargo run --release --bin quickstart`. With no arguments it is the launcher:
//!
//! 1. A development CA for `quickstart.mesh.local` issues SVIDs to `inventory` (the service) and
//!    `orders` (its client), written as PEM files into a temporary directory.
//! 2. It starts `quickstart server` (this same executable) as a child process: an HBONE server
//!    whose tunnels carry plain HTTP/1.1, served with hyper. Every response names the caller's
//!    SPIFFE ID, which the mTLS handshake verified; the HTTP layer never sees a certificate.
//! 3. Once the server prints `listening on ADDR as ID`, it runs `quickstart client` as a second
//!    child process: it opens a tunnel (verifying that the server really is `inventory`), sends
//!    `GET /stock` over it with hyper's HTTP/1.1 client, and prints the response.
//! 4. It closes the server's stdin, which the server takes as the request to drain and stop.
//!
//! The modes can also be run by hand with certificates from `meshctl ca issue`:
//!
//! ```text
//! quickstart server --cert svid.pem --key svid.key --bundle bundle.pem [--listen 127.0.0.1:15008] \
//!     [--admin 127.0.0.1:15020]
//! quickstart client --cert svid.pem --key svid.key --bundle bundle.pem \
//!     --server 127.0.0.1:15008 --expect-id spiffe://quickstart.mesh.local/ns/shop/sa/inventory
//! ```
//!
//! The server stops when its stdin closes (Ctrl-D) or on Ctrl-C. Every network step has a
//! timeout; each mode exits 0 when everything behaved as described and 1 with a message
//! otherwise.
#![forbid(unsafe_code)]

mod client;
mod launcher;
mod server;

use std::{
    convert::Infallible,
    fmt::Display,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HOST},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use mesh_client::{
    hbone::{
        Delivery, Destination, HboneClient, HboneClientConfig, HboneServer, HboneServerConfig,
        InboundTunnel,
    },
    observe::{AdminServer, CredentialsState, Telemetry, WorkloadLabels},
};
use mesh_core::{SpiffeId, TrustDomain};
use mesh_tls::{
    Credentials, DevCa, ExpectedIdentities, MeshTls, TlsOptions, source::files::FileSource,
    write_svid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

/// The trust domain of both workloads.
const TRUST_DOMAIN: &str = "quickstart.mesh.local";
/// The service.
const SERVER_ID: &str = "spiffe://quickstart.mesh.local/ns/shop/sa/inventory";
/// Its client.
const CLIENT_ID: &str = "spiffe://quickstart.mesh.local/ns/shop/sa/orders";
/// The application port the tunnel is for: the CONNECT authority's port. The server serves HTTP
/// on every tunnel whatever the port; a real workload would route by it.
const APP_PORT: u16 = 8080;
/// Upper bound for every network step and for each child process.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// SVID lifetime: the quickstart needs seconds, but an hour shows a realistic certificate.
const SVID_TTL: Duration = Duration::from_secs(3600);
/// How often the server re-reads its certificate files (a rotated SVID is used at once).
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How long open tunnels may finish when the server is asked to stop.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// An HTTP service and its client talking through an HBONE tunnel, in two processes.
///
/// Without a mode, runs both: creates a development CA and SVIDs, starts `quickstart server`,
/// runs `quickstart client` against it, and stops the server.
#[derive(Debug, Parser)]
#[command(name = "quickstart")]
struct Cli {
    /// Run one side only (the launcher starts both).
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// The inventory service: HTTP/1.1 inside HBONE tunnels. Prints `listening on ADDR as ID`.
    ///
    /// Stops, after draining open tunnels, when its stdin closes or on Ctrl-C.
    Server(ServerArgs),
    /// The orders client: one HBONE tunnel, one `GET /stock` over it, the response printed.
    Client(ClientArgs),
}

/// A workload's SVID files, as `meshctl ca issue` or the launcher writes them.
#[derive(Debug, Args)]
struct Identity {
    /// The SVID certificate chain (svid.pem).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// The SVID's private key (svid.key).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The trust bundle of the SVID's trust domain (bundle.pem).
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
}

#[derive(Debug, Args)]
struct ServerArgs {
    #[command(flatten)]
    identity: Identity,
    /// Where to accept HBONE.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Also serve the admin endpoint here (/metrics, /stats/prometheus, /healthz/ready,
    /// /config_dump), such as 127.0.0.1:15020; port 0 picks one. Announced as
    /// `admin endpoint on ADDR` after the `listening on` line.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct ClientArgs {
    #[command(flatten)]
    identity: Identity,
    /// The server's HBONE address, as its `listening on` line gives it.
    #[arg(long, value_name = "ADDR")]
    server: SocketAddr,
    /// The identity the server must prove.
    #[arg(long, value_name = "SPIFFE_ID", default_value = SERVER_ID)]
    expect_id: SpiffeId,
}

/// Why the quickstart did not go as described.
#[derive(Debug, thiserror::Error)]
enum QuickstartError {
    /// A step did not finish within [`STEP_TIMEOUT`].
    #[error("{step}: no result within {STEP_TIMEOUT:?}")]
    Timeout {
        /// What was being done.
        step: &'static str,
    },
    /// A step failed.
    #[error("{step}: {reason}")]
    Failed {
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// Something other than what the quickstart shows happened.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match &cli.mode {
        None => "quickstart",
        Some(Mode::Server(_)) => "quickstart server",
        Some(Mode::Client(_)) => "quickstart client",
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.mode {
            None => launcher::launch().await,
            Some(Mode::Server(args)) => server::server(args).await,
            Some(Mode::Client(args)) => client::client(args).await,
        }
    });
    // The server's stdin reader may still sit in a blocking read (after Ctrl-C); do not wait.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Loads an SVID and its bundle from files, checking that they belong together.
fn load_identity(args: &Identity) -> Result<(FileSource, Credentials), QuickstartError> {
    let source = FileSource {
        cert: args.cert.clone(),
        key: args.key.clone(),
        bundle: args.bundle.clone(),
        federated: Vec::new(),
    };
    let credentials = source
        .credentials()
        .map_err(failed("load the SVID and trust bundle"))?;
    Ok((source, credentials))
}

/// Runs `fut` with the step timeout, handing back its own result.
async fn within<F: Future>(what: &'static str, fut: F) -> Result<F::Output, QuickstartError> {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .map_err(|_| QuickstartError::Timeout { step: what })
}

/// Runs a fallible `fut` with the step timeout; its error becomes a [`QuickstartError`].
async fn step<T, E: Display>(
    what: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, QuickstartError> {
    within(what, fut).await?.map_err(failed(what))
}

/// Builds the error for a failed step, for use with `map_err`.
fn failed<E: Display>(what: &'static str) -> impl Fn(E) -> QuickstartError {
    move |e| QuickstartError::Failed {
        step: what,
        reason: e.to_string(),
    }
}

/// Parses one of the quickstart's constants.
fn parse<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, QuickstartError>
where
    T::Err: Display,
{
    value.parse().map_err(|e| {
        QuickstartError::Unexpected(format!("the {what} {value:?} does not parse: {e}"))
    })
}

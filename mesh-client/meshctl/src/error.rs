//! Why a meshctl command could not do its job.
//!
//! Every variant renders as a complete sentence an operator can act on; `main` prints it as
//! `meshctl: <message>` and exits with [`Error::exit_status`]: 1 when a tunnel failed on the
//! network, 2 when the command could not do its job. The library's own errors are kept as
//! sources, prefixed with what meshctl was doing when they happened.

use std::{io, net::SocketAddr, path::PathBuf};

use mesh_client::hbone::TunnelError;
use mesh_policy::authz::PolicyError;
use mesh_tls::{CaError, PemError, TlsConfigError, source::files::FileSourceError};
use thiserror::Error;

/// Exit status of a command that could not do its job (bad arguments, unusable files).
pub(crate) const EXIT_ERROR: u8 = 2;
/// Exit status of a tunnel that failed on the network (refused, denied, wrong identity, reset).
pub(crate) const EXIT_TUNNEL: u8 = 1;

/// A command failed.
#[derive(Debug, Error)]
pub(crate) enum Error {
    /// An argument's value is malformed (trust domain, SPIFFE ID, duration).
    #[error("invalid {flag} {value:?}: {reason}")]
    InvalidArg {
        /// The flag, as typed (`--ttl`).
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it was rejected, and what would be accepted.
        reason: String,
    },
    /// `ca init` would replace an existing CA.
    #[error(
        "{} already holds a CA ({}); pass --force to replace it (SVIDs issued by the old CA will no longer verify)",
        dir.display(), existing.join(", ")
    )]
    CaExists {
        /// The output directory.
        dir: PathBuf,
        /// The CA files found there.
        existing: Vec<&'static str>,
    },
    /// A file's existence could not be checked (permissions, I/O error).
    #[error("cannot check whether {} exists: {source}", path.display())]
    Stat {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Generating a CA or writing it to disk failed.
    #[error("cannot create the CA: {0}")]
    CreateCa(#[source] CaError),
    /// `ca issue` could not load its CA.
    #[error("cannot load the CA from {}: {source}{hint}", dir.display())]
    LoadCa {
        /// The CA directory given with `--ca`.
        dir: PathBuf,
        /// What went wrong.
        source: CaError,
        /// Advice for the common case of a directory that holds no CA (may be empty).
        hint: &'static str,
    },
    /// The CA refused to issue, or writing the SVID failed.
    #[error("cannot issue an SVID: {0}")]
    Issue(#[source] CaError),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A policy file holds a document that is not a valid AuthorizationPolicy.
    #[error("{}: {source}", path.display())]
    Policy {
        /// The file given with `--policy`.
        path: PathBuf,
        /// Which document and field, and why (boxed: errors travel in every `Result`).
        source: Box<PolicyError>,
    },
    /// A file is not the PEM it should be; the message names the file.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// Writing the report to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Output(#[source] io::Error),
    /// The workload's SVID or trust bundle could not be loaded.
    #[error(
        "cannot load this workload's identity from --cert {}, --key {} and --bundle {}: {source}",
        cert.display(), key.display(), bundle.display()
    )]
    Identity {
        /// `--cert`.
        cert: PathBuf,
        /// `--key`.
        key: PathBuf,
        /// `--bundle`.
        bundle: PathBuf,
        /// What is wrong with them (boxed: it is large, and errors travel in every `Result`).
        source: Box<FileSourceError>,
    },
    /// rustls refused the TLS settings.
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[source] TlsConfigError),
    /// The async runtime, a signal handler or logging could not be set up.
    #[error("cannot set up {what}: {reason}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// `hbone serve` could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The `--listen` address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The tunnel could not be opened: refused, denied, unexpected identity, timeout...
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    /// An open tunnel failed while carrying bytes (reset by the server, connection lost).
    #[error("the tunnel to {addr} failed: {}", explain_tunnel_io(source))]
    TunnelIo {
        /// The HBONE address dialed.
        addr: SocketAddr,
        /// What happened.
        source: io::Error,
    },
    /// A workload's admin endpoint could not be read.
    #[error("admin endpoint {addr}: {reason}")]
    Admin {
        /// The address given.
        addr: String,
        /// What went wrong, and what to check.
        reason: String,
    },
    /// Reading the bytes to send from stdin failed.
    #[error("cannot read stdin: {0}")]
    Input(#[source] io::Error),
}

/// Says in mesh terms what the tunnel's I/O errors mean (the stream maps RST_STREAM to
/// `ConnectionReset` and GOAWAY to `ConnectionAborted`).
fn explain_tunnel_io(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionReset => format!(
            "the server reset it ({err}); the server or the application behind it closed the connection abruptly"
        ),
        io::ErrorKind::ConnectionAborted => {
            format!("the server closed the HBONE connection ({err})")
        }
        _ => err.to_string(),
    }
}

impl Error {
    /// The process exit status for this error: [`EXIT_TUNNEL`] when a tunnel failed on the
    /// network, [`EXIT_ERROR`] otherwise.
    pub(crate) fn exit_status(&self) -> u8 {
        match self {
            Self::Tunnel(_) | Self::TunnelIo { .. } => EXIT_TUNNEL,
            _ => EXIT_ERROR,
        }
    }
}

impl From<io::Error> for Error {
    /// Commands write their report with `?`; the only I/O they do on an `io::Error` path without
    /// naming a file is writing to stdout.
    fn from(err: io::Error) -> Self {
        Self::Output(err)
    }
}

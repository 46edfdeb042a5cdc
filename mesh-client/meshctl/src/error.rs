//! Why a meshctl command could not do its job.
//!
//! Every variant renders as a complete sentence an operator can act on; `main` prints it as
//! `meshctl: <message>` and exits with status 2. The library's own errors are kept as sources,
//! prefixed with what meshctl was doing when they happened.

use std::{io, path::PathBuf};

use mesh_tls::{CaError, PemError};
use thiserror::Error;

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
    /// A file is not the PEM it should be; the message names the file.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// Writing the report to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Output(#[source] io::Error),
}

impl From<io::Error> for Error {
    /// Commands write their report with `?`; the only I/O they do on an `io::Error` path without
    /// naming a file is writing to stdout.
    fn from(err: io::Error) -> Self {
        Self::Output(err)
    }
}

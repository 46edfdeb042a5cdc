//! `meshctl hbone serve` and `meshctl hbone connect`: HBONE tunnels from the shell.
//!
//! Both load the workload's identity from the files `meshctl ca issue` writes, validate every
//! argument before touching the network (so bad input exits 2 without side effects), and only
//! then start a tokio runtime: the rest of meshctl stays synchronous.

mod connect;
mod serve;

use std::{
    io::{self, IsTerminal, Write},
    net::SocketAddr,
};

use mesh_client::observe::LogControl;
use mesh_tls::{Credentials, source::files::FileSource};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, reload, util::SubscriberInitExt};

use super::Outcome;
use crate::{
    cli::{HboneCommand, IdentityArgs},
    error::Error,
};

/// Runs a `meshctl hbone` subcommand.
pub(crate) fn run(command: HboneCommand, out: &mut dyn Write) -> Result<Outcome, Error> {
    match command {
        HboneCommand::Serve(args) => serve::run(&args, out),
        HboneCommand::Connect(args) => connect::run(&args),
    }
}

/// Parses an `ip:port` flag value; `example` shows a valid one in the error.
fn parse_addr(flag: &'static str, value: &str, example: &str) -> Result<SocketAddr, Error> {
    value.parse().map_err(|_| Error::InvalidArg {
        flag,
        value: value.to_owned(),
        reason: format!(
            "expected an IP address and port such as {example} (IPv6 as [::1]:15008); host names are not resolved"
        ),
    })
}

/// Loads the SVID and bundle once, checking that the SVID chains to its own bundle. The source is
/// returned so a long-running command can keep watching the files.
fn load_identity(args: &IdentityArgs) -> Result<(FileSource, Credentials), Error> {
    let source = FileSource {
        cert: args.cert.clone(),
        key: args.key.clone(),
        bundle: args.bundle.clone(),
        federated: Vec::new(),
    };
    let credentials = source.credentials().map_err(|e| Error::Identity {
        cert: args.cert.clone(),
        key: args.key.clone(),
        bundle: args.bundle.clone(),
        source: Box::new(e),
    })?;
    Ok((source, credentials))
}

/// Sends `tracing` events to stderr, filtered by `RUST_LOG` or else by `default` (`info`,
/// `warn`, ...). Colors only on a terminal, so captured logs stay plain text. The returned
/// control changes the filter later (the admin endpoint's `/logging`).
fn init_logging(default: &str) -> Result<LogControl, Error> {
    let directives = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => value,
        _ => default.to_owned(),
    };
    let filter = EnvFilter::try_new(&directives).map_err(|e| Error::InvalidArg {
        flag: "RUST_LOG",
        value: directives.clone(),
        reason: format!("{e}; use a level such as info or debug, or meshctl=debug,info"),
    })?;
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(io::stderr().is_terminal()),
        )
        .try_init()
        .map_err(|e| Error::Setup {
            what: "logging",
            reason: e.to_string(),
        })?;
    Ok(LogControl::from_reload(handle, &directives))
}

/// Builds the error for a failed set-up step, for use with `map_err`.
fn setup<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Setup {
        what,
        reason: e.to_string(),
    }
}

//! The commands, one module per command group, and the dispatch from parsed arguments to them.
//!
//! Each command writes its report to the `out` it is given (stdout in production) and returns an
//! [`Outcome`] or an [`Error`]; it never prints errors or exits itself, so `main` alone decides
//! how failures look and which exit status they get.

mod admin;
mod authz;
mod ca;
mod cert;
mod config;
mod hbone;

use std::{io::Write, time::Duration};

use rustls_pki_types::UnixTime;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{cli::Command, error::Error};

/// How a command that ran to completion judged what it examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing is wrong (or the command only makes changes and made them).
    Clean,
    /// The command worked, and what it examined has problems it reported (exit status 1).
    Problems,
}

/// Runs one parsed command.
pub(crate) fn run(command: Command, out: &mut dyn Write) -> Result<Outcome, Error> {
    match command {
        Command::Ca(command) => ca::run(command, out),
        Command::Cert(command) => cert::run(command, out),
        Command::Hbone(command) => hbone::run(command, out),
        Command::Authz(command) => authz::run(command, out),
        Command::Config(command) => config::run(command, out),
        Command::Status(args) => admin::status(&args, out),
        Command::Endpoints(args) => admin::endpoints(&args, out),
    }
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC timestamp (`2026-05-01T10:00:00Z`),
/// the form logs and other tools print, so times can be compared at a glance.
pub(crate) fn rfc3339(unix_secs: u64) -> String {
    i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        // Only a certificate dated beyond year 9999 gets here; show the raw value, not nothing.
        .unwrap_or_else(|| format!("{unix_secs} seconds after the Unix epoch"))
}

/// The time from `now` until `later`, or zero if it has passed.
pub(crate) fn until(now: UnixTime, later: u64) -> Duration {
    Duration::from_secs(later.saturating_sub(now.as_secs()))
}

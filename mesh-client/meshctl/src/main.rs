//! `meshctl`: the mesh operator's command-line tool.
//!
//! This file only parses the command line, hands it to [`cmd::run`], and turns the result into
//! an exit status; what each command does lives in `cmd/`. Exit statuses follow the convention
//! of `grep` and `diff`, which shell scripts already understand:
//!
//! - `0`: done, and nothing is wrong;
//! - `1`: done, and what was examined has problems (for example `cert inspect` on an expired
//!   certificate); for `hbone`, the tunnel failed on the network (refused, denied, unexpected
//!   server identity, reset);
//! - `2`: the command could not do its job (bad arguments, unreadable files, CA errors). clap's
//!   own usage errors use 2 as well.
//!
//! Errors are printed to stderr as `meshctl: <message>`, so they stand apart from the report on
//! stdout and can be attributed when meshctl runs inside a larger script.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cli;
mod cmd;
mod duration;
mod error;

use std::{
    io::{self, Write},
    process::ExitCode,
};

use clap::Parser;

use crate::{cli::Cli, cmd::Outcome, error::Error};

/// Exit status when the command succeeded and found nothing wrong.
const EXIT_OK: u8 = 0;
/// Exit status when the command succeeded but what it examined has problems.
const EXIT_PROBLEMS: u8 = 1;

fn main() -> ExitCode {
    // On a usage error clap prints its message with usage hints and exits with status 2.
    let cli = Cli::parse();
    // Not locked for the whole run: `hbone connect` writes the tunnel's bytes through tokio's
    // stdout, from another thread, which would wait forever for a lock held here.
    let mut out = io::stdout();
    let result = cmd::run(cli.command, &mut out)
        .and_then(|outcome| out.flush().map(|()| outcome).map_err(Error::Output));
    match result {
        Ok(Outcome::Clean) => ExitCode::from(EXIT_OK),
        Ok(Outcome::Problems) => ExitCode::from(EXIT_PROBLEMS),
        Err(err) => {
            // Whatever part of the report was produced goes out before the error explaining why
            // it stopped; if stdout itself is the problem there is nothing more to do with it.
            let _ = out.flush();
            report(&err);
            ExitCode::from(err.exit_status())
        }
    }
}

/// Prints `err` to stderr, unless it is stdout having been closed by its reader
/// (`meshctl cert inspect f.pem | head -1`), which is not worth a message.
fn report(err: &Error) {
    if matches!(err, Error::Output(io) if io.kind() == io::ErrorKind::BrokenPipe) {
        return;
    }
    // If stderr is gone too there is no one left to tell; the exit status still says it failed.
    let _ = writeln!(io::stderr().lock(), "meshctl: {err}");
}

//! `meshctl cert inspect`: what a PEM file's certificates say, and what would stop them working.
//!
//! The judging is [`mesh_tls::inspect::inspect_pem`]'s, the same rules the handshake applies; this
//! module reads the file and lays the result out for someone debugging a failed handshake.

use std::{fs, io, io::Write, path::Path};

use mesh_tls::inspect::{CertReport, inspect_pem};
use rustls_pki_types::UnixTime;

use super::{Outcome, rfc3339, until};
use crate::{
    cli::{CertCommand, CertInspectArgs},
    duration::format_duration,
    error::Error,
};

/// Runs a `meshctl cert` subcommand.
pub(crate) fn run(command: CertCommand, out: &mut dyn Write) -> Result<Outcome, Error> {
    match command {
        CertCommand::Inspect(args) => inspect(&args, out),
    }
}

/// `meshctl cert inspect FILE`: one block per certificate; [`Outcome::Problems`] if any has one.
fn inspect(args: &CertInspectArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let path = &args.file;
    let pem = fs::read(path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    // One clock reading for the whole file, so every certificate is judged at the same instant.
    let now = UnixTime::now();
    let reports = inspect_pem(&pem, &path.display().to_string(), now)?;
    for report in &reports {
        if report.index > 0 {
            writeln!(out)?;
        }
        render(out, path, reports.len(), report, now)?;
    }
    Ok(if reports.iter().any(|r| !r.problems.is_empty()) {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

/// Writes one certificate's block.
fn render(
    out: &mut dyn Write,
    path: &Path,
    count: usize,
    report: &CertReport,
    now: UnixTime,
) -> io::Result<()> {
    writeln!(
        out,
        "{}: certificate {} of {count}",
        path.display(),
        report.index + 1
    )?;
    // inspect_pem has no flag for "could not be parsed"; such reports carry empty fields and
    // the parse error among their problems, so show only that.
    if report.serial.is_empty() {
        return render_problems(out, &report.problems);
    }
    let spiffe_id = match (&report.spiffe_id, report.is_ca) {
        (Some(id), _) => id.clone(),
        (None, true) => "none (CA certificate)".to_owned(),
        (None, false) => "none".to_owned(),
    };
    field(out, "SPIFFE ID", &spiffe_id)?;
    field(out, "URI SANs", &or_none(report.uri_sans.join(", ")))?;
    field(out, "subject", &or_none(report.subject.clone()))?;
    field(out, "issuer", &or_none(report.issuer.clone()))?;
    field(out, "serial", &report.serial)?;
    field(out, "not before", &rfc3339(report.not_before))?;
    field(out, "not after", &rfc3339(report.not_after))?;
    field(out, "time left", &time_left(report, now))?;
    field(out, "CA", if report.is_ca { "yes" } else { "no" })?;
    render_problems(out, &report.problems)
}

/// Writes `problems: none`, or `problems:` followed by one `- problem` line each.
fn render_problems(out: &mut dyn Write, problems: &[String]) -> io::Result<()> {
    if problems.is_empty() {
        return field(out, "problems", "none");
    }
    writeln!(out, "  problems:")?;
    for problem in problems {
        writeln!(out, "    - {problem}")?;
    }
    Ok(())
}

/// Writes one `  name:  value` line, values aligned.
fn field(out: &mut dyn Write, name: &str, value: &str) -> io::Result<()> {
    let label = format!("{name}:");
    writeln!(out, "  {label:<12}{value}")
}

/// `(none)` for empty values, so a blank never looks like a formatting accident.
fn or_none(value: String) -> String {
    if value.is_empty() {
        "(none)".to_owned()
    } else {
        value
    }
}

/// How long the certificate has left, or how far it is outside its validity window.
fn time_left(report: &CertReport, now: UnixTime) -> String {
    let now_secs = now.as_secs();
    if now_secs < report.not_before {
        format!(
            "none yet: valid in {}",
            format_duration(until(now, report.not_before))
        )
    } else if now_secs > report.not_after {
        let ago = std::time::Duration::from_secs(now_secs - report.not_after);
        format!("none: expired {} ago", format_duration(ago))
    } else {
        format_duration(until(now, report.not_after))
    }
}

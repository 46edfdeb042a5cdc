//! `meshctl ca init` and `meshctl ca issue`: a development CA on disk, and SVIDs issued from it.
//!
//! The CA itself is [`mesh_tls::DevCa`]; this module adds what a command line needs around it:
//! argument validation with messages that name the flag, a guard against replacing a CA by
//! accident, and a report of which files were written and what each is for.

use std::{
    fs, io,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use mesh_core::{SpiffeId, TrustDomain};
use mesh_tls::{CaError, DevCa, dev_ca::files, inspect::inspect_pem, write_svid};
use rustls_pki_types::UnixTime;

use super::{Outcome, rfc3339, until};
use crate::{
    cli::{CaCommand, CaInitArgs, CaIssueArgs},
    duration::{format_duration, parse_duration},
    error::Error,
};

/// The files whose presence means a directory already holds a CA. `bundle.pem` alone does not
/// count: SVID directories have one too, and replacing it there is what `ca issue` does anyway.
const CA_FILES: [&str; 2] = [files::CA_KEY, files::CA_CERT];

/// Runs a `meshctl ca` subcommand.
pub(crate) fn run(command: CaCommand, out: &mut dyn Write) -> Result<Outcome, Error> {
    match command {
        CaCommand::Init(args) => init(&args, out),
        CaCommand::Issue(args) => issue(&args, out),
    }
}

/// `meshctl ca init`: generate a CA and write it, unless one is there already.
fn init(args: &CaInitArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let trust_domain = parse_trust_domain(&args.trust_domain)?;
    let existing = existing_ca_files(&args.out)?;
    if !existing.is_empty() && !args.force {
        return Err(Error::CaExists {
            dir: args.out.clone(),
            existing,
        });
    }
    // Checked, then written: a concurrent `ca init` into the same directory could slip between
    // the two, which is acceptable for a development tool run by hand.
    let ca = DevCa::generate(trust_domain).map_err(Error::CreateCa)?;
    ca.write(&args.out).map_err(Error::CreateCa)?;

    let td = ca.trust_domain();
    if !existing.is_empty() {
        writeln!(
            out,
            "replaced the CA in {} (--force); SVIDs issued by the old CA no longer verify against the new bundle",
            args.out.display()
        )?;
    }
    writeln!(out, "created a development CA for trust domain {td}")?;
    list_files(
        out,
        &args.out,
        &[
            (files::CA_CERT, "CA certificate".to_owned()),
            (
                files::CA_KEY,
                format!(
                    "CA private key (mode 0600): whoever holds it can issue identities in {td}"
                ),
            ),
            (
                files::BUNDLE,
                "trust bundle: give it to workloads so they trust this CA".to_owned(),
            ),
        ],
    )?;
    writeln!(
        out,
        "next: meshctl ca issue --ca {} --id {}/ns/NAMESPACE/sa/SERVICE_ACCOUNT --out DIR",
        args.out.display(),
        td.id_string()
    )?;
    Ok(Outcome::Clean)
}

/// `meshctl ca issue`: load the CA, issue an SVID and write it.
fn issue(args: &CaIssueArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    // All arguments are validated before any file is touched.
    let id = parse_workload_id(&args.id)?;
    let ttl = parse_duration(&args.ttl).map_err(|e| Error::InvalidArg {
        flag: "--ttl",
        value: args.ttl.clone(),
        reason: e.to_string(),
    })?;
    let ca = DevCa::load(&args.ca_dir).map_err(|source| load_error(&args.ca_dir, source))?;
    check_within_ca_lifetime(&ca, ttl, &args.ttl)?;
    let svid = ca.issue(&id, ttl).map_err(Error::Issue)?;
    write_svid(&args.out, &svid, &ca.bundle()).map_err(Error::Issue)?;

    let not_after = svid.not_after().as_secs();
    writeln!(out, "issued an SVID for {id}")?;
    writeln!(
        out,
        "valid until {} ({} from now)",
        rfc3339(not_after),
        format_duration(until(UnixTime::now(), not_after))
    )?;
    list_files(
        out,
        &args.out,
        &[
            (files::SVID_CERT, "certificate".to_owned()),
            (files::SVID_KEY, "private key (mode 0600)".to_owned()),
            (
                files::BUNDLE,
                format!("trust bundle of {}", ca.trust_domain()),
            ),
        ],
    )?;
    Ok(Outcome::Clean)
}

/// Refuses a TTL that would outlive the CA: peers stop trusting the SVID when the CA expires,
/// so the later expiry date printed and inspected would be a lie.
fn check_within_ca_lifetime(ca: &DevCa, ttl: Duration, ttl_arg: &str) -> Result<(), Error> {
    let now = UnixTime::now();
    let reports = inspect_pem(ca.cert_pem().as_bytes(), "the CA certificate", now)?;
    let Some(ca_not_after) = reports.first().map(|r| r.not_after) else {
        return Ok(());
    };
    let left = until(now, ca_not_after);
    if ttl <= left {
        return Ok(());
    }
    Err(Error::InvalidArg {
        flag: "--ttl",
        value: ttl_arg.to_owned(),
        reason: format!(
            "the SVID would outlive its CA, which expires at {} ({} from now); use a shorter TTL",
            rfc3339(ca_not_after),
            format_duration(left)
        ),
    })
}

/// Parses `--trust-domain`, explaining the common slip of passing a workload's whole ID.
fn parse_trust_domain(value: &str) -> Result<TrustDomain, Error> {
    value.parse::<TrustDomain>().map_err(|e| {
        // The trust-domain parser reports `spiffe://td/path` as a scheme error, which would
        // mislead here: the scheme is fine, the path is what does not belong.
        let reason = match value.parse::<SpiffeId>() {
            Ok(id) if !id.path().is_empty() => format!(
                "that is a workload's SPIFFE ID; give its trust domain alone: {}",
                id.trust_domain()
            ),
            _ => e.to_string(),
        };
        Error::InvalidArg {
            flag: "--trust-domain",
            value: value.to_owned(),
            reason,
        }
    })
}

/// Parses `--id`, which must name a workload, not the trust domain itself.
fn parse_workload_id(value: &str) -> Result<SpiffeId, Error> {
    let invalid = |reason: String| Error::InvalidArg {
        flag: "--id",
        value: value.to_owned(),
        reason,
    };
    let id: SpiffeId = value.parse().map_err(|e| invalid(format!("{e}")))?;
    if id.path().is_empty() {
        // The bare `spiffe://td` names the trust domain (CA certificates carry it); an SVID
        // with it would claim to be the whole domain.
        return Err(invalid(format!(
            "that is the ID of the trust domain itself; an SVID names a workload, such as {}/ns/NAMESPACE/sa/SERVICE_ACCOUNT",
            id.trust_domain().id_string()
        )));
    }
    Ok(id)
}

/// Which of [`CA_FILES`] exist in `dir` (a dangling symlink counts: writing would replace it).
fn existing_ca_files(dir: &Path) -> Result<Vec<&'static str>, Error> {
    let mut existing = Vec::new();
    for name in CA_FILES {
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => existing.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Stat { path, source }),
        }
    }
    Ok(existing)
}

/// Wraps a CA loading error, pointing at `ca init` when the directory simply holds no CA.
fn load_error(dir: &Path, source: CaError) -> Error {
    let hint = match &source {
        CaError::Io { source: io, .. } if io.kind() == io::ErrorKind::NotFound => {
            "; create one with `meshctl ca init`"
        }
        _ => "",
    };
    Error::LoadCa {
        dir: dir.to_owned(),
        source,
        hint,
    }
}

/// Lists written files with what each is for, paths aligned, so the operator knows which file
/// goes where without reading the docs.
fn list_files(out: &mut dyn Write, dir: &Path, entries: &[(&str, String)]) -> io::Result<()> {
    let paths: Vec<PathBuf> = entries.iter().map(|(name, _)| dir.join(name)).collect();
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let width = shown.iter().map(|p| p.chars().count()).max().unwrap_or(0);
    for (path, (_, what)) in shown.iter().zip(entries) {
        writeln!(out, "  {path:<width$}  {what}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_domain_accepts_both_forms_and_explains_a_workload_id() {
        assert_eq!(
            parse_trust_domain("example.org").unwrap().as_str(),
            "example.org"
        );
        assert_eq!(
            parse_trust_domain("spiffe://example.org").unwrap().as_str(),
            "example.org"
        );
        let err = parse_trust_domain("spiffe://example.org/ns/a/sa/b").unwrap_err();
        assert!(
            err.to_string()
                .contains("give its trust domain alone: example.org"),
            "{err}"
        );
        let err = parse_trust_domain("Example.org").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid --trust-domain"),
            "{err}"
        );
    }

    #[test]
    fn workload_id_must_have_a_path() {
        assert!(parse_workload_id("spiffe://example.org/ns/a/sa/b").is_ok());
        let err = parse_workload_id("spiffe://example.org").unwrap_err();
        assert!(err.to_string().contains("trust domain itself"), "{err}");
        let err = parse_workload_id("example.org/ns/a").unwrap_err();
        assert!(err.to_string().starts_with("invalid --id"), "{err}");
    }
}

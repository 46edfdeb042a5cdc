//! `meshctl authz check`: decide a described request against AuthorizationPolicy files, with
//! the engine the mesh enforces them with ([`mesh_policy::authz`]), and explain the decision.
//!
//! The decision is the command's output, not its status: ALLOW and DENY both exit 0, so a
//! script reads the first word. Only unusable input (a missing file, a document that is not a
//! valid policy, a malformed flag) exits 2.

mod request;

use std::{fs, io, io::Write};

use mesh_policy::authz::{
    ActionTaken, AuthorizationPolicy, Authorizer, AuthzRequest, Decision, Verdict, Workload,
    parse_policies,
};

use super::Outcome;
use crate::{
    cli::{AuthzCheckArgs, AuthzCommand},
    error::Error,
};

/// Runs a `meshctl authz` subcommand.
pub(crate) fn run(command: AuthzCommand, out: &mut dyn Write) -> Result<Outcome, Error> {
    match command {
        AuthzCommand::Check(args) => check(&args, out),
    }
}

/// `meshctl authz check`.
fn check(args: &AuthzCheckArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    // Flags first, then files: a typo in a flag is reported before any file is read.
    let workload = request::workload(args)?;
    let request = request::request(args)?;
    let mut policies = Vec::new();
    for path in &args.policies {
        let text = fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let loaded = parse_policies(&text).map_err(|source| Error::Policy {
            path: path.clone(),
            source: Box::new(source),
        })?;
        policies.extend(loaded);
    }
    let authz = Authorizer::new(&policies, &workload);
    let decision = authz.evaluate(&request);
    render(out, &decision, &request, &workload, &authz, &policies)?;
    Ok(Outcome::Clean)
}

/// The report: the verdict line, then one indented line per detail.
fn render(
    out: &mut dyn Write,
    d: &Decision<'_>,
    request: &AuthzRequest,
    workload: &Workload,
    authz: &Authorizer,
    policies: &[AuthorizationPolicy],
) -> io::Result<()> {
    let word = if d.allowed { "ALLOW" } else { "DENY" };
    let summary = match (d.action_taken, d.policy, d.rule_index) {
        (ActionTaken::Deny, Some(p), Some(r)) => format!("DENY policy {p} rule {r} matched"),
        (ActionTaken::Allow, Some(p), Some(r)) => format!("ALLOW policy {p} rule {r} matched"),
        (ActionTaken::NoAllowPolicies, ..) => "no ALLOW policy applies to this workload".into(),
        (ActionTaken::NoAllowMatched, ..) => "no ALLOW policy matched".into(),
        (other, ..) => other.to_string(),
    };
    writeln!(out, "{word} {summary}")?;
    field(out, "reason", &d.reason.to_string())?;
    if let Verdict::AskProviders(delegations) = d.verdict() {
        for delegation in delegations {
            field(
                out,
                "custom",
                &format!("allowed only if {delegation} allows it too"),
            )?;
        }
    } else {
        for delegation in &d.delegate {
            field(out, "custom", &format!("{delegation} matched"))?;
        }
    }
    for report in &d.reported {
        field(out, "reported", &report.to_string())?;
    }
    if let Some(dry_run) = &d.dry_run {
        field(out, "dry-run", &dry_run.to_string())?;
    }
    field(out, "request", &describe(request))?;
    let labels: Vec<String> = workload
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let applied = authz.policies().count();
    field(
        out,
        "workload",
        &format!(
            "namespace {}{}; {applied} of {} policies apply",
            workload.namespace,
            if labels.is_empty() {
                String::new()
            } else {
                format!(" (labels {})", labels.join(", "))
            },
            policies.len()
        ),
    )
}

/// One line of the request, the way an operator would say it.
fn describe(r: &AuthzRequest) -> String {
    let who = match &r.source_principal {
        Some(id) => format!("{id} at {}", r.source_ip),
        None => format!("a plaintext peer at {}", r.source_ip),
    };
    let to = match r.destination_ip {
        std::net::IpAddr::V4(ip) => format!("{ip}:{}", r.destination_port),
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", r.destination_port),
    };
    let what = match &r.http {
        None => "raw TCP (L4)".to_owned(),
        Some(h) => format!("HTTP {} {} (host {})", h.method, h.path, h.host),
    };
    let mut line = format!("{what} from {who} to {to}");
    if let Some(principal) = r.auth.as_ref().and_then(|a| a.principal.as_deref()) {
        line.push_str(&format!(", JWT principal {principal}"));
    }
    line
}

/// Writes `  name:     value`, values aligned.
fn field(out: &mut dyn Write, name: &str, value: &str) -> io::Result<()> {
    let label = format!("{name}:");
    writeln!(out, "  {label:<10}{value}")
}

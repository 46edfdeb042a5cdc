//! `meshctl config check`: validate configuration files the way the mesh loads them.
//!
//! Each file may hold several YAML documents; each is recognised by `apiVersion`/`kind` and
//! handed to the loader the mesh itself uses: the mesh config (no `kind`; its workload,
//! services, health checks and traffic sections, but not the files it names), DestinationRule and
//! VirtualService ([`mesh_core::traffic`]), AuthorizationPolicy, RequestAuthentication and
//! PeerAuthentication ([`mesh_policy`]). References across documents and files are checked
//! too (a route's subset must be defined by its host's DestinationRule; one rule per host).
//!
//! Output, in file and document order: `FILE:DOC: Kind name: summary` for each valid
//! document, `FILE:DOC:FIELD: reason` for each problem (all of them, not just the first).
//! Exit status 0 when every document is valid, 1 when any has a problem, 2 when a file
//! cannot be read (the others are still checked).

mod split;
mod summary;

use std::{fs, io::Write};

use mesh_core::{
    config::{MeshConfig, ServiceTraffic},
    traffic::{
        DestinationRule, LoadOptions, ResourceKind, TrafficConfig, TrafficErrorKind,
        TrafficResource, VirtualService, parse_resources_with,
    },
};
use mesh_policy::{
    authn::jwt::parse_request_authentications,
    authz::{Action, PolicyError, PolicyErrorKind, parse_policies},
    peer_authn::parse_peer_authentications,
};
use serde::Deserialize;

use self::split::Document;
use super::Outcome;
use crate::{
    cli::{ConfigCheckArgs, ConfigCommand},
    error::Error,
};

/// Runs a `meshctl config` subcommand.
pub(crate) fn run(command: ConfigCommand, out: &mut dyn Write) -> Result<Outcome, Error> {
    match command {
        ConfigCommand::Check(args) => check(&args, out),
    }
}

/// What was found in one document.
#[derive(Debug, Default)]
struct Report {
    /// The summary, printed when there are no problems.
    summary: Option<String>,
    /// `FIELD: reason` lines.
    problems: Vec<String>,
}

/// Where a traffic resource came from, to place reference problems.
#[derive(Debug, Clone)]
struct Origin {
    /// Index into the reports.
    report: usize,
    /// For resources from a mesh config: the section they stand for.
    section: Option<ServiceTraffic>,
}

/// Every document of every file, and the traffic resources for the cross-checks.
#[derive(Debug, Default)]
struct Checker {
    /// `(file, document number, report)`, in order.
    reports: Vec<(String, usize, Report)>,
    rules: Vec<(DestinationRule, Origin)>,
    services: Vec<(VirtualService, Origin)>,
    options: LoadOptions,
    /// The `extension_providers` of the mesh configs read (`None`: no mesh config given).
    providers: Option<Vec<String>>,
    /// CUSTOM AuthorizationPolicies: report index, policy and provider name.
    custom: Vec<(usize, String, String)>,
}

/// `meshctl config check`.
fn check(args: &ConfigCheckArgs, out: &mut dyn Write) -> Result<Outcome, Error> {
    let mut checker = Checker {
        options: LoadOptions {
            default_namespace: args.namespace.clone(),
            domain_suffix: args.domain_suffix.clone(),
        },
        ..Checker::default()
    };
    let mut unreadable = None;
    for path in &args.files {
        match fs::read_to_string(path) {
            Ok(text) => checker.file(&path.display().to_string(), &text),
            Err(source) => {
                unreadable.get_or_insert_with(|| (path.clone(), source));
            }
        }
    }
    checker.cross_check();
    let mut problems = false;
    for (file, number, report) in &checker.reports {
        if report.problems.is_empty() {
            if let Some(summary) = &report.summary {
                writeln!(out, "{file}:{number}: {summary}")?;
            }
        }
        for problem in &report.problems {
            problems = true;
            writeln!(out, "{file}:{number}:{problem}")?;
        }
    }
    if let Some((path, source)) = unreadable {
        return Err(Error::Read { path, source });
    }
    Ok(if problems {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

/// The fields a document's kind is recognised by.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    kind: Option<serde_yaml_ng::Value>,
}

impl Checker {
    fn file(&mut self, file: &str, text: &str) {
        let documents = split::documents(text);
        if documents.is_empty() {
            let report = Report {
                problems: vec![".: the file holds no YAML documents".to_owned()],
                ..Report::default()
            };
            self.reports.push((file.to_owned(), 1, report));
        }
        for document in documents {
            let index = self.reports.len();
            self.reports
                .push((file.to_owned(), document.number, Report::default()));
            let report = self.document(index, &document);
            if let Some(report) = report {
                self.reports[index].2 = report;
            } else {
                // An empty document: nothing to report.
                self.reports.pop();
            }
        }
    }

    /// Checks one document; `None` for an empty one.
    fn document(&mut self, index: usize, document: &Document) -> Option<Report> {
        let mut report = Report::default();
        let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&document.text) {
            Ok(v) => v,
            Err(e) => {
                report.problems.push(format!(".: {e}"));
                return Some(report);
            }
        };
        if value.is_null() {
            return None;
        }
        if !value.is_mapping() {
            report
                .problems
                .push(".: a document must be a mapping (a config, or a resource with apiVersion and kind)".to_owned());
            return Some(report);
        }
        let header = Header::deserialize(&value).unwrap_or_default();
        let text = |v: &Option<serde_yaml_ng::Value>| {
            v.as_ref()
                .map(|v| v.as_str().map_or_else(|| format!("{v:?}"), str::to_owned))
        };
        let kind = text(&header.kind);
        let api_version = text(&header.api_version);
        let yaml = document.text.as_str();
        match (kind.as_deref(), api_version.as_deref()) {
            (None, None) => self.mesh_config(index, yaml, &mut report),
            (Some("DestinationRule" | "VirtualService"), _) => {
                self.traffic(index, yaml, &mut report);
            }
            (Some("AuthorizationPolicy"), _) => {
                let parsed = parse_policies(yaml);
                for p in parsed.iter().flatten() {
                    if let Action::Custom { provider } = &p.action {
                        self.custom.push((index, p.id.to_string(), provider.clone()));
                    }
                }
                policy(
                    &mut report,
                    parsed.map(|p| p.iter().map(summary::authorization_policy).collect()),
                );
            }
            (Some("RequestAuthentication"), _) => policy(
                &mut report,
                parse_request_authentications(yaml)
                    .map(|p| p.iter().map(summary::request_authentication).collect()),
            ),
            (Some("PeerAuthentication"), _) => policy(
                &mut report,
                parse_peer_authentications(yaml)
                    .map(|p| p.iter().map(summary::peer_authentication).collect()),
            ),
            (None, Some(api_version)) => report
                .problems
                .push(format!("kind: missing (apiVersion is {api_version}); the mesh reads DestinationRule, VirtualService, AuthorizationPolicy, RequestAuthentication, PeerAuthentication, and its own config (no apiVersion or kind)")),
            (Some(kind), api_version) => report.problems.push(format!(
                "kind: not supported: {kind}{}; the mesh reads DestinationRule, VirtualService, AuthorizationPolicy, RequestAuthentication, PeerAuthentication, and its own config (no apiVersion or kind)",
                api_version.map(|v| format!(" ({v})")).unwrap_or_default()
            )),
        }
        Some(report)
    }

    fn mesh_config(&mut self, index: usize, yaml: &str, report: &mut Report) {
        let config = match MeshConfig::from_yaml(yaml) {
            Ok(c) => c,
            Err(e) => {
                report.problems.push(config_problem(&e));
                return;
            }
        };
        self.providers
            .get_or_insert_with(Vec::new)
            .extend(config.extension_providers.iter().map(|p| p.name.clone()));
        // The checks the runtime applies when it starts: workload sections, services and
        // endpoints, health checks, then every traffic section (all of their problems).
        let workload = config
            .workload_settings()
            .map_err(|e| report.problems.push(config_problem(&e)))
            .ok();
        if let Err(e) = config.to_snapshot(1) {
            report.problems.push(config_problem(&e));
        }
        if let Err(e) = config.health_checks() {
            report.problems.push(config_problem(&e));
        }
        // Later checks build on earlier ones (the workload settings read the services too),
        // so one mistake can be reported by several: keep each problem once.
        let mut seen = std::collections::HashSet::new();
        report.problems.retain(|p| seen.insert(p.clone()));
        match config.traffic_sections() {
            Ok(sections) => {
                report.summary = Some(summary::mesh_config(
                    &config,
                    workload.as_ref(),
                    sections.len(),
                ));
                for section in sections {
                    let origin = Origin {
                        report: index,
                        section: Some(section.clone()),
                    };
                    if let Some(routes) = section.routes {
                        self.services.push((routes, origin.clone()));
                    }
                    self.rules.push((section.rule, origin));
                }
            }
            Err(errors) => report.problems.extend(errors.iter().map(config_problem)),
        }
    }

    fn traffic(&mut self, index: usize, yaml: &str, report: &mut Report) {
        match parse_resources_with(yaml, &self.options) {
            Ok(resources) => {
                for resource in resources {
                    let origin = Origin {
                        report: index,
                        section: None,
                    };
                    match resource {
                        TrafficResource::DestinationRule(r) => {
                            report.summary = Some(summary::destination_rule(&r));
                            self.rules.push((*r, origin));
                        }
                        TrafficResource::VirtualService(v) => {
                            report.summary = Some(summary::virtual_service(&v));
                            self.services.push((v, origin));
                        }
                        _ => {}
                    }
                }
            }
            Err(errors) => {
                for e in errors.errors() {
                    let reason = match e.kind {
                        TrafficErrorKind::Unsupported => format!("not supported: {}", e.reason),
                        _ => e.reason.clone(),
                    };
                    report.problems.push(format!("{}: {reason}", e.path));
                }
            }
        }
    }

    /// Checks the traffic resources of every file against each other, and CUSTOM policies
    /// against the extension providers of the mesh configs (when one was given).
    fn cross_check(&mut self) {
        if let Some(providers) = &self.providers {
            for (index, id, provider) in &self.custom {
                if providers.contains(provider) {
                    continue;
                }
                let known = if providers.is_empty() {
                    "none".to_owned()
                } else {
                    providers.join(", ")
                };
                if let Some((_, _, report)) = self.reports.get_mut(*index) {
                    report.problems.push(format!(
                        "spec.provider.name: CUSTOM policy {id} names {provider:?}, which is not \
                         an extension provider of the mesh config (configured: {known})"
                    ));
                }
            }
        }
        let rules = self.rules.iter().map(|(r, _)| r.clone()).collect();
        let services = self.services.iter().map(|(v, _)| v.clone()).collect();
        let Err(errors) = TrafficConfig::new(rules, services) else {
            return;
        };
        for e in errors {
            let origin = match e.kind {
                ResourceKind::DestinationRule => self.rules.get(e.index).map(|(_, o)| o),
                ResourceKind::VirtualService => self.services.get(e.index).map(|(_, o)| o),
            };
            let Some(origin) = origin else { continue };
            let path = match &origin.section {
                Some(section) => section.config_path(&e),
                None => format!("spec.{}", e.path),
            };
            if let Some((_, _, report)) = self.reports.get_mut(origin.report) {
                report.problems.push(format!("{path}: {}", e.reason));
            }
        }
    }
}

/// `FIELD: reason` for a mesh config error.
fn config_problem(e: &mesh_core::config::ConfigError) -> String {
    let message = e.to_string();
    // The error displays as `path: reason`; keep it, with `.` for the document itself.
    if e.path().is_empty() {
        format!(".: {message}")
    } else {
        message
    }
}

/// Records a security policy loader's result.
fn policy(report: &mut Report, result: Result<Vec<String>, PolicyError>) {
    match result {
        Ok(summaries) => report.summary = summaries.into_iter().next(),
        Err(e) => {
            let reason = match e.kind {
                PolicyErrorKind::Unsupported => format!("not supported: {}", e.reason),
                _ => e.reason.clone(),
            };
            report.problems.push(format!("{}: {reason}", e.path));
        }
    }
}

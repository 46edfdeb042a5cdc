//! From the raw document to a validated [`AuthorizationPolicy`], applying the checks of Istio's
//! `ValidateAuthorizationPolicy` (and its dry-run annotation check) so a policy this mesh loads
//! is one istiod would accept, and one it refuses is refused here too, with the same reason.

use std::collections::BTreeMap;

use super::{
    Cx,
    document::{RawAction, RawFrom, RawMetadata, RawPolicy, RawRule, RawSpec, RawTo},
};
use crate::authz::{
    DRY_RUN_ANNOTATION,
    condition::ConditionKey,
    error::PolicyError,
    model::{Action, AuthorizationPolicy, Operation, PolicyId, Rule, Source},
    pattern::StringPattern,
};

/// Validates one document. Errors carry the policy's `namespace/name` once it is known.
pub(super) fn convert(cx: &Cx, raw: RawPolicy) -> Result<AuthorizationPolicy, PolicyError> {
    let id = policy_id(cx, &raw.metadata)?;
    convert_spec(
        cx,
        &id,
        &raw.metadata.annotations,
        raw.spec.unwrap_or_default(),
    )
    .map_err(|mut err| {
        err.policy = Some(id.clone());
        err
    })
}

/// `metadata.name` is required; the namespace defaults to `default` as with `kubectl apply`.
pub(crate) fn policy_id(cx: &Cx, metadata: &RawMetadata) -> Result<PolicyId, PolicyError> {
    let name = match metadata.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => return Err(cx.invalid("metadata.name", "every policy needs a name")),
    };
    let namespace = match metadata.namespace.as_deref() {
        None => "default".to_owned(),
        Some("") => return Err(cx.invalid("metadata.namespace", "must not be empty")),
        Some(ns) => ns.to_owned(),
    };
    Ok(PolicyId { namespace, name })
}

fn convert_spec(
    cx: &Cx,
    id: &PolicyId,
    annotations: &BTreeMap<String, String>,
    spec: RawSpec,
) -> Result<AuthorizationPolicy, PolicyError> {
    if spec.target_ref.is_some() || spec.target_refs.is_some() {
        let field = if spec.target_ref.is_some() {
            "targetRef"
        } else {
            "targetRefs"
        };
        return Err(cx.unsupported(
            format!("spec.{field}"),
            "targetRef binds a policy to a gateway or waypoint; this mesh enforces policy inside \
             the workload, so select workloads with spec.selector.matchLabels instead",
        ));
    }
    let selector = spec
        .selector
        .map(|s| selector(cx, s.match_labels.unwrap_or_default()))
        .transpose()?;
    let raw_action = spec.action.unwrap_or(RawAction::Allow);
    let rules_given = spec.rules.as_ref().is_some_and(|r| !r.is_empty());
    let action = match raw_action {
        RawAction::Allow => Action::Allow,
        RawAction::Deny => Action::Deny,
        RawAction::Audit => Action::Audit,
        RawAction::Custom => {
            let provider = spec.provider.as_ref().and_then(|p| p.name.clone());
            match provider {
                Some(provider) if !provider.is_empty() => Action::Custom { provider },
                _ if !rules_given => return Err(meaningless(cx, "CUSTOM")),
                _ => return Err(cx.invalid("spec.provider.name", "must not be empty")),
            }
        }
    };
    if spec.provider.is_some() && raw_action != RawAction::Custom {
        return Err(cx.invalid(
            "spec.provider",
            format!("`provider` must not be with non CUSTOM action, found {action}"),
        ));
    }
    if matches!(action, Action::Deny | Action::Custom { .. }) && !rules_given {
        return Err(meaningless(cx, &action.to_string()));
    }
    let dry_run = dry_run(cx, annotations, &action)?;
    let custom = matches!(action, Action::Custom { .. });
    let rules = spec
        .rules
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, rule)| convert_rule(cx, &format!("spec.rules[{i}]"), rule, custom))
        .collect::<Result<_, _>>()?;
    Ok(AuthorizationPolicy {
        id: id.clone(),
        action,
        dry_run,
        selector,
        rules,
    })
}

fn meaningless(cx: &Cx, action: &str) -> PolicyError {
    cx.invalid(
        "spec.rules",
        format!(
            "{action} action without `rules` is meaningless as it will never be triggered, add \
             an empty rule `{{}}` if you want it be triggered for every request"
        ),
    )
}

/// `matchLabels`, with Istio's refusals of empty keys and wildcards.
pub(crate) fn selector(
    cx: &Cx,
    labels: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, PolicyError> {
    for (k, v) in &labels {
        let path = format!("spec.selector.matchLabels[{k}]");
        if k.is_empty() {
            return Err(cx.invalid(path, "empty key is not supported in selector"));
        }
        if k.contains('*') || v.contains('*') {
            return Err(cx.invalid(
                path,
                format!("wildcard is not supported in selector: {k}={v}"),
            ));
        }
    }
    Ok(labels)
}

/// The `istio.io/dry-run` annotation: a Go boolean, on ALLOW or DENY policies only.
fn dry_run(
    cx: &Cx,
    annotations: &BTreeMap<String, String>,
    action: &Action,
) -> Result<bool, PolicyError> {
    let Some(value) = annotations.get(DRY_RUN_ANNOTATION) else {
        return Ok(false);
    };
    let path = format!("metadata.annotations[{DRY_RUN_ANNOTATION}]");
    if !matches!(action, Action::Allow | Action::Deny) {
        return Err(cx.invalid(
            path,
            format!("the annotation {DRY_RUN_ANNOTATION} currently only supports action ALLOW/DENY, found action {action}"),
        ));
    }
    // strconv.ParseBool's spellings, which is what istiod reads the annotation with.
    match value.as_str() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(cx.invalid(
            path,
            format!("invalid value {value:?}: expected \"true\" or \"false\""),
        )),
    }
}

fn convert_rule(cx: &Cx, path: &str, rule: RawRule, custom: bool) -> Result<Rule, PolicyError> {
    if rule.from.as_ref().is_some_and(Vec::is_empty) {
        return Err(cx.invalid(format!("{path}.from"), "`from` must not be empty"));
    }
    if rule.to.as_ref().is_some_and(Vec::is_empty) {
        return Err(cx.invalid(format!("{path}.to"), "`to` must not be empty"));
    }
    let from = (rule.from.unwrap_or_default().into_iter().enumerate())
        .map(|(j, f)| convert_source(cx, &format!("{path}.from[{j}]"), f, custom))
        .collect::<Result<_, _>>()?;
    let to = (rule.to.unwrap_or_default().into_iter().enumerate())
        .map(|(j, t)| convert_operation(cx, &format!("{path}.to[{j}]"), t))
        .collect::<Result<_, _>>()?;
    let mut when = Vec::new();
    for (j, c) in rule.when.unwrap_or_default().into_iter().enumerate() {
        let cpath = format!("{path}.when[{j}]");
        let condition = cx.condition(&cpath, c.key, c.values, c.not_values)?;
        // Istio refuses source.namespace, source.principal and every request.auth.* key here.
        let refused_for_custom = matches!(
            condition.key,
            ConditionKey::SourceNamespace
                | ConditionKey::SourcePrincipal
                | ConditionKey::RequestPrincipal
                | ConditionKey::RequestAudiences
                | ConditionKey::RequestPresenter
                | ConditionKey::RequestClaim(_)
        );
        if custom && refused_for_custom {
            return Err(not_with_custom(
                cx,
                format!("{cpath}.key"),
                &condition.key.to_string(),
            ));
        }
        when.push(condition);
    }
    Ok(Rule { from, to, when })
}

fn not_with_custom(cx: &Cx, path: String, what: &str) -> PolicyError {
    cx.invalid(
        path,
        format!("{what} is currently not supported with CUSTOM action"),
    )
}

fn convert_source(cx: &Cx, path: &str, from: RawFrom, custom: bool) -> Result<Source, PolicyError> {
    let Some(raw) = from.source else {
        return Err(cx.invalid(format!("{path}.source"), "`from.source` must not be nil"));
    };
    let path = format!("{path}.source");
    for (field, given) in [
        ("serviceAccounts", raw.service_accounts.is_some()),
        ("notServiceAccounts", raw.not_service_accounts.is_some()),
    ] {
        if given {
            return Err(cx.unsupported(
                format!("{path}.{field}"),
                "write the identities as principals (TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT)",
            ));
        }
    }
    if custom {
        for (field, given) in [
            ("principals", &raw.principals),
            ("notPrincipals", &raw.not_principals),
            ("requestPrincipals", &raw.request_principals),
            ("notRequestPrincipals", &raw.not_request_principals),
            ("namespaces", &raw.namespaces),
            ("notNamespaces", &raw.not_namespaces),
        ] {
            if given.as_ref().is_some_and(|v| !v.is_empty()) {
                return Err(not_with_custom(
                    cx,
                    format!("{path}.{field}"),
                    &format!("from.{field}"),
                ));
            }
        }
    }
    let p = |field: &str| format!("{path}.{field}");
    let source = Source {
        principals: cx.principals(&p("principals"), raw.principals)?,
        not_principals: cx.principals(&p("notPrincipals"), raw.not_principals)?,
        request_principals: cx.patterns(&p("requestPrincipals"), raw.request_principals)?,
        not_request_principals: cx
            .patterns(&p("notRequestPrincipals"), raw.not_request_principals)?,
        namespaces: cx.patterns(&p("namespaces"), raw.namespaces)?,
        not_namespaces: cx.patterns(&p("notNamespaces"), raw.not_namespaces)?,
        ip_blocks: cx.ips(&p("ipBlocks"), raw.ip_blocks)?,
        not_ip_blocks: cx.ips(&p("notIpBlocks"), raw.not_ip_blocks)?,
        remote_ip_blocks: cx.ips(&p("remoteIpBlocks"), raw.remote_ip_blocks)?,
        not_remote_ip_blocks: cx.ips(&p("notRemoteIpBlocks"), raw.not_remote_ip_blocks)?,
    };
    if source == Source::default() {
        return Err(cx.invalid(path, "`from.source` must not be empty"));
    }
    Ok(source)
}

fn convert_operation(cx: &Cx, path: &str, to: RawTo) -> Result<Operation, PolicyError> {
    let Some(raw) = to.operation else {
        return Err(cx.invalid(
            format!("{path}.operation"),
            "`to.operation` must not be nil",
        ));
    };
    let path = format!("{path}.operation");
    let p = |field: &str| format!("{path}.{field}");
    for (field, paths) in [("paths", &raw.paths), ("notPaths", &raw.not_paths)] {
        for (i, value) in paths.iter().flatten().enumerate() {
            if value.contains("{*}") || value.contains("{**}") {
                return Err(cx.unsupported(
                    format!("{path}.{field}[{i}]"),
                    "path templates ({*}, {**}) are not implemented; use exact, prefix (/a/*) or suffix (*/b) paths",
                ));
            }
        }
    }
    let operation = Operation {
        hosts: lowercase(cx.patterns(&p("hosts"), raw.hosts)?),
        not_hosts: lowercase(cx.patterns(&p("notHosts"), raw.not_hosts)?),
        ports: cx.ports(&p("ports"), raw.ports)?,
        not_ports: cx.ports(&p("notPorts"), raw.not_ports)?,
        methods: cx.patterns(&p("methods"), raw.methods)?,
        not_methods: cx.patterns(&p("notMethods"), raw.not_methods)?,
        paths: cx.patterns(&p("paths"), raw.paths)?,
        not_paths: cx.patterns(&p("notPaths"), raw.not_paths)?,
    };
    if operation == Operation::default() {
        return Err(cx.invalid(path, "`to.operation` must not be empty"));
    }
    Ok(operation)
}

/// Hosts compare case-insensitively; storing them lowercased lets the engine index them.
fn lowercase(patterns: Vec<StringPattern>) -> Vec<StringPattern> {
    use StringPattern::{Exact, Prefix, Presence, Suffix};
    patterns
        .into_iter()
        .map(|p| match p {
            Exact(s) => Exact(s.to_ascii_lowercase()),
            Prefix(s) => Prefix(s.to_ascii_lowercase()),
            Suffix(s) => Suffix(s.to_ascii_lowercase()),
            Presence => Presence,
        })
        .collect()
}

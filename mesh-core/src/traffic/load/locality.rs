//! `loadBalancer.localityLbSetting`: `distribute`, `failover` and `failoverPriority`, with
//! istiod's validation (and overlaps refused whichever order they are written in).

use super::cx::{Cx, join};
use crate::{
    balance::{
        Distribute, LocalityPattern, LocalityRules, PriorityLabel, REGION_LABEL, RegionFailover,
        SUBZONE_LABEL, ZONE_LABEL,
    },
    traffic::raw::istio,
};

/// The rules of a `localityLbSetting` at `path`; problems go to `cx`.
pub(crate) fn locality_rules(cx: &mut Cx, path: &str, raw: &istio::LocalityLb) -> LocalityRules {
    let distribute = raw.distribute.as_deref().unwrap_or_default();
    let failover = raw.failover.as_deref().unwrap_or_default();
    let priority = raw.failover_priority.as_deref().unwrap_or_default();
    if !distribute.is_empty() && !failover.is_empty() {
        cx.invalid(
            path,
            "set only one of distribute and failover (distribute replaces failover for the callers it matches)",
        );
    }
    LocalityRules {
        distribute: distribute_rules(cx, &join(path, "distribute"), distribute),
        failover: failover_rules(cx, &join(path, "failover"), failover),
        failover_priority: priority_labels(
            cx,
            &join(path, "failoverPriority"),
            priority,
            !failover.is_empty(),
        ),
        labels: Default::default(),
    }
}

fn pattern(cx: &mut Cx, path: String, text: &Option<String>) -> Option<LocalityPattern> {
    let Some(text) = text else {
        cx.invalid(
            path,
            "a locality is required (region, region/zone, ... or *)",
        );
        return None;
    };
    text.parse()
        .map_err(|e: crate::balance::LocalityPatternError| cx.invalid(path, e.to_string()))
        .ok()
}

/// Refuses a pattern overlapping one listed before it.
fn no_overlap(cx: &mut Cx, path: String, seen: &[(String, LocalityPattern)], p: &LocalityPattern) {
    if let Some((other, _)) = seen.iter().find(|(_, q)| q.overlaps(p)) {
        cx.invalid(
            path,
            format!("locality {p} overlaps {other}; a locality may match only one entry"),
        );
    }
}

fn distribute_rules(cx: &mut Cx, path: &str, raw: &[istio::LocalityDistribute]) -> Vec<Distribute> {
    let mut out = Vec::new();
    let mut froms: Vec<(String, LocalityPattern)> = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let from = pattern(cx, join(&here, "from"), &d.from);
        if let Some(from) = &from {
            no_overlap(cx, join(&here, "from"), &froms, from);
            froms.push((format!("{here}.from"), from.clone()));
        }
        let to_path = join(&here, "to");
        let mut to: Vec<(LocalityPattern, u32)> = Vec::new();
        let mut seen: Vec<(String, LocalityPattern)> = Vec::new();
        let mut total = 0u64;
        let entries = d.to.clone().unwrap_or_default();
        if entries.is_empty() {
            cx.invalid(
                &to_path,
                "at least one destination locality with a weight is required",
            );
        }
        for (key, &weight) in &entries {
            let here = join(&to_path, key);
            if !(1..=100).contains(&weight) {
                cx.invalid(&here, format!("weight {weight} must be between 1 and 100"));
            }
            total += u64::from(weight);
            if let Some(p) = pattern(cx, here.clone(), &Some(key.clone())) {
                no_overlap(cx, here.clone(), &seen, &p);
                seen.push((key.clone(), p.clone()));
                to.push((p, weight));
            }
        }
        if !entries.is_empty() && total != 100 {
            cx.invalid(
                &to_path,
                format!("the weights sum to {total}; they must sum to 100 (percent)"),
            );
        }
        if let Some(from) = from {
            out.push(Distribute { from, to });
        }
    }
    out
}

fn region(cx: &mut Cx, path: String, text: &Option<String>) -> Option<String> {
    let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else {
        cx.invalid(path, "a region is required");
        return None;
    };
    if text.contains('/') {
        cx.invalid(
            path,
            format!("{text:?}: failover names regions only (no zone or subzone)"),
        );
        None
    } else if text.contains('*') {
        cx.invalid(
            path,
            format!("{text:?}: failover regions may not contain '*'"),
        );
        None
    } else {
        Some(text.to_owned())
    }
}

fn failover_rules(cx: &mut Cx, path: &str, raw: &[istio::LocalityFailover]) -> Vec<RegionFailover> {
    let mut out = Vec::new();
    for (i, f) in raw.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let from = region(cx, join(&here, "from"), &f.from);
        let to = region(cx, join(&here, "to"), &f.to);
        if let (Some(from), Some(to)) = (from, to) {
            if from == to {
                cx.invalid(
                    join(&here, "to"),
                    format!("failover from {from:?} to itself; name a different region"),
                );
            } else {
                out.push(RegionFailover { from, to });
            }
        }
    }
    out
}

fn priority_labels(
    cx: &mut Cx,
    path: &str,
    raw: &[String],
    with_failover: bool,
) -> Vec<PriorityLabel> {
    let mut out = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let label = PriorityLabel::parse(text);
        if label.value.as_deref().is_some_and(|v| v.contains('=')) {
            cx.invalid(&here, format!("{text:?}: write label or label=value"));
            continue;
        }
        if let Err(reason) =
            super::policy::check_label(&label.key, label.value.as_deref().unwrap_or(""))
        {
            cx.invalid(&here, reason);
            continue;
        }
        if with_failover && [REGION_LABEL, ZONE_LABEL, SUBZONE_LABEL].contains(&label.key.as_str())
        {
            cx.invalid(
                &here,
                format!(
                    "{}: a topology label cannot be combined with failover (failover already orders by locality)",
                    label.key
                ),
            );
            continue;
        }
        out.push(label);
    }
    out
}

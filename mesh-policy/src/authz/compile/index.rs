//! The rules of one action, indexed so a request only visits rules that could match it.
//!
//! Most rules name their callers exactly (`principals: [cluster.local/ns/a/sa/b]`), a
//! namespace, source IP blocks, or a port. Such a rule can only match a request carrying one of
//! those values, so it is filed under them; a request then visits the rules filed under its
//! principal, its namespace, its address's buckets (a `/24` one for rules whose blocks are all
//! that narrow, a `/16` one for the others) and its port, plus the rules that could not be
//! filed. Each rule is filed under one dimension only, so the six lists never share a
//! rule, and each list is in rule order, so merging them visits rules in policy order and the
//! first match is the one a linear scan would have found.

use super::{
    cidr::{Bucket, bucket_of, buckets, fine_bucket, fine_bucket_of},
    hash::{FastMap, text_key},
    rule::CompiledRule,
};
use crate::authz::{
    model::{Rule, Source},
    pattern::StringPattern,
    view::View,
};

/// How a rule needing HTTP attributes is judged on a raw TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpMode {
    /// ALLOW: such a rule cannot match (refusing is the safe side).
    Skip,
    /// DENY, CUSTOM, AUDIT: its HTTP parts are assumed to match (refusing is the safe side).
    Assume,
}

/// All rules of one action (enforced or dry-run), in policy order.
#[derive(Debug, Default)]
pub(crate) struct RuleGroup {
    rules: Vec<CompiledRule>,
    /// Keyed by [`text_key`] of the principal: the request's key is computed once per
    /// evaluation and shared by every group (hashing the ID dominated the probes). Two values
    /// with one key share a list, which is harmless: every candidate rule is matched in full.
    by_principal: FastMap<u64, Vec<u32>>,
    /// Keyed by [`text_key`] of the namespace, likewise.
    by_namespace: FastMap<u64, Vec<u32>>,
    by_source_ip: FastMap<Bucket, Vec<u32>>,
    /// Rules whose source blocks are all `/24` (`/64`) or narrower, by fine bucket.
    by_source_net: FastMap<Bucket, Vec<u32>>,
    by_port: FastMap<u16, Vec<u32>>,
    unindexed: Vec<u32>,
    /// Policies in the group, including rule-less ones (`spec: {}`).
    pub(crate) policies: usize,
    /// Rules that need HTTP attributes.
    pub(crate) http_rules: usize,
}

impl RuleGroup {
    /// Adds the rules of the policy at `policy` (its index in the authorizer's list).
    pub(crate) fn add_policy(&mut self, policy: usize, rules: &[Rule]) {
        self.policies += 1;
        for (rule_index, rule) in rules.iter().enumerate() {
            let Ok(id) = u32::try_from(self.rules.len()) else {
                // Four billion rules do not fit in memory anyway; stop indexing rather than wrap.
                continue;
            };
            let compiled = CompiledRule::new(policy, rule_index, rule);
            self.http_rules += usize::from(!compiled.http_fields.is_empty());
            self.rules.push(compiled);
            if let Some(keys) = exact_keys(&rule.from, |s| &s.principals) {
                file(&mut self.by_principal, keys.into_iter().map(text_key), id);
            } else if let Some(keys) = exact_keys(&rule.from, |s| &s.namespaces) {
                file(&mut self.by_namespace, keys.into_iter().map(text_key), id);
            } else if let Some(keys) = fine_ip_keys(&rule.from) {
                file(&mut self.by_source_net, keys, id);
            } else if let Some(keys) = ip_keys(&rule.from) {
                file(&mut self.by_source_ip, keys, id);
            } else if let Some(ports) = port_keys(rule) {
                file(&mut self.by_port, ports, id);
            } else {
                self.unindexed.push(id);
            }
        }
    }

    /// Whether the group holds no rule (it may still count rule-less policies).
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that may match `v`, in policy order, each judged by `mode` on raw TCP.
    pub(crate) fn matching<'g>(
        &'g self,
        v: &View<'_>,
        mode: TcpMode,
    ) -> impl Iterator<Item = &'g CompiledRule> {
        // Each index is probed only if some rule is filed in it: most groups use one or two
        // of them, and a probe hashes the request's value.
        fn probe<K: std::hash::Hash + Eq>(
            index: &FastMap<K, Vec<u32>>,
            key: impl FnOnce() -> Option<K>,
        ) -> &[u32] {
            if index.is_empty() {
                return &[];
            }
            key()
                .and_then(|key| index.get(&key))
                .map_or(&[], Vec::as_slice)
        }
        let lists = [
            probe(&self.by_principal, || v.principal_key()),
            probe(&self.by_namespace, || v.namespace_key()),
            probe(&self.by_source_ip, || Some(bucket_of(v.source_ip))),
            probe(&self.by_source_net, || Some(fine_bucket_of(v.source_ip))),
            probe(&self.by_port, || Some(v.port)),
            &self.unindexed,
        ];
        let skip_http = mode == TcpMode::Skip && v.http.is_none();
        Merge::new(lists)
            .filter_map(|id| self.rules.get(usize::try_from(id).ok()?))
            .filter(move |rule| !skip_http || rule.http_fields.is_empty())
            .filter(move |rule| rule.matches(v))
    }

    /// The first matching rule in policy order.
    pub(crate) fn first_match<'g>(
        &'g self,
        v: &View<'_>,
        mode: TcpMode,
    ) -> Option<&'g CompiledRule> {
        if self.rules.is_empty() {
            return None;
        }
        self.matching(v, mode).next()
    }

    /// The first matching rule of each policy that has one.
    pub(crate) fn first_match_per_policy<'g>(
        &'g self,
        v: &View<'_>,
        mode: TcpMode,
    ) -> Vec<&'g CompiledRule> {
        let mut out: Vec<&CompiledRule> = Vec::new();
        if self.rules.is_empty() {
            return out;
        }
        for rule in self.matching(v, mode) {
            if out.last().is_none_or(|last| last.policy != rule.policy) {
                out.push(rule);
            }
        }
        out
    }
}

/// The union of a source field's values, when every source constrains it with exact values
/// only (so the request must carry one of them for the rule to match).
fn exact_keys<'r>(
    from: &'r [Source],
    field: impl Fn(&'r Source) -> &'r Vec<StringPattern>,
) -> Option<Vec<&'r str>> {
    if from.is_empty() {
        return None;
    }
    let mut keys = Vec::new();
    for source in from {
        let patterns = field(source);
        if patterns.is_empty() {
            return None;
        }
        for pattern in patterns {
            match pattern {
                StringPattern::Exact(value) => keys.push(value.as_str()),
                _ => return None,
            }
        }
    }
    Some(keys)
}

/// The fine buckets of the sources' IP blocks, when every source lists blocks of at least
/// `/24` (`/64`).
fn fine_ip_keys(from: &[Source]) -> Option<Vec<Bucket>> {
    if from.is_empty() || from.iter().any(|s| s.ip_blocks.is_empty()) {
        return None;
    }
    from.iter()
        .flat_map(|s| &s.ip_blocks)
        .map(fine_bucket)
        .collect()
}

/// The buckets of the sources' IP blocks, when every source lists blocks narrow enough.
fn ip_keys(from: &[Source]) -> Option<Vec<Bucket>> {
    if from.is_empty() || from.iter().any(|s| s.ip_blocks.is_empty()) {
        return None;
    }
    let mut keys = Vec::new();
    for block in from.iter().flat_map(|s| &s.ip_blocks) {
        keys.extend(buckets(block)?);
    }
    Some(keys)
}

/// The union of the operations' ports, when every operation lists ports.
fn port_keys(rule: &Rule) -> Option<Vec<u16>> {
    if rule.to.is_empty() || rule.to.iter().any(|op| op.ports.is_empty()) {
        return None;
    }
    Some(
        rule.to
            .iter()
            .flat_map(|op| op.ports.iter().copied())
            .collect(),
    )
}

fn file<K: std::hash::Hash + Eq, Q: Into<K>>(
    index: &mut FastMap<K, Vec<u32>>,
    keys: impl IntoIterator<Item = Q>,
    id: u32,
) {
    for key in keys {
        let ids = index.entry(key.into()).or_default();
        // A key listed twice in one rule files the rule once.
        if ids.last() != Some(&id) {
            ids.push(id);
        }
    }
}

/// Merges sorted lists of distinct rule ids without allocating.
struct Merge<'a> {
    /// The non-empty lists first (`live` of them): a request usually has candidates in one
    /// or two, and each step only looks at those.
    lists: [&'a [u32]; 6],
    live: usize,
}

impl<'a> Merge<'a> {
    fn new(all: [&'a [u32]; 6]) -> Self {
        let mut lists: [&[u32]; 6] = [&[]; 6];
        let mut live = 0;
        for list in all.into_iter().filter(|l| !l.is_empty()) {
            if let Some(slot) = lists.get_mut(live) {
                *slot = list;
                live += 1;
            }
        }
        Self { lists, live }
    }
}

impl Iterator for Merge<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let live = self.lists.get_mut(..self.live).unwrap_or_default();
        let list = match live {
            [] => return None,
            [only] => only,
            many => many
                .iter_mut()
                .filter(|list| !list.is_empty())
                .min_by_key(|list| list.first().copied())?,
        };
        let (&id, rest) = list.split_first()?;
        *list = rest;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::{Merge, RuleGroup};
    use crate::authz::{Authorizer, AuthzRequest, Workload, parse_policies};

    #[test]
    fn narrow_blocks_are_found_through_the_fine_index() {
        let yaml = |name: &str, blocks: &str| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                 metadata: {{name: {name}, namespace: ns}}\nspec:\n  rules:\n  \
                 - from: [{{source: {{ipBlocks: [{blocks}]}}}}]\n---\n"
            )
        };
        let text = [
            yaml("node-1", "10.0.1.0/24"),
            yaml("mixed", "10.0.2.0/24, 10.9.0.0/16"),
            yaml("host", "10.0.3.7/32"),
            yaml("v6", "2001:db8:0:1::/64"),
        ]
        .concat();
        let policies = parse_policies(&text).unwrap();
        let mut group = RuleGroup::default();
        for (i, policy) in policies.iter().enumerate() {
            group.add_policy(i, &policy.rules);
        }
        // Only rules whose blocks are all narrow go to the fine index.
        assert_eq!(group.by_source_net.len(), 3);
        assert_eq!(group.by_source_ip.len(), 2);

        let authz = Authorizer::new(&policies, &Workload::new("ns"));
        for (source, allowed_by) in [
            ("10.0.1.5", Some("node-1")),
            ("::ffff:10.0.1.5", Some("node-1")),
            ("10.0.2.9", Some("mixed")),
            ("10.9.7.7", Some("mixed")),
            ("10.0.3.7", Some("host")),
            ("2001:db8:0:1::9", Some("v6")),
            ("10.0.3.8", None),
            ("10.0.4.1", None),
            ("2001:db8:0:2::9", None),
        ] {
            let request =
                AuthzRequest::tcp(source.parse().unwrap(), "10.1.1.1:80".parse().unwrap());
            let decision = authz.evaluate(&request);
            assert_eq!(
                decision.policy.map(|p| p.name.as_str()),
                allowed_by,
                "{source}"
            );
            assert_eq!(decision.allowed, allowed_by.is_some(), "{source}");
        }
    }

    #[test]
    fn merge_visits_ids_in_order() {
        let merged: Vec<u32> =
            Merge::new([&[1, 5], &[], &[2, 3, 9], &[0, 4], &[6], &[7, 8]]).collect();
        assert_eq!(merged, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let single: Vec<u32> = Merge::new([&[], &[], &[3, 4], &[], &[], &[]]).collect();
        assert_eq!(single, [3, 4]);
        assert_eq!(Merge::new([&[]; 6]).next(), None);
    }
}

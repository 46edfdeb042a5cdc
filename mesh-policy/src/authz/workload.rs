//! Which policies apply to "this workload": Istio's namespace and selector scoping.

use std::collections::BTreeMap;

use super::model::AuthorizationPolicy;

/// Istio's default root namespace: policies there apply to every namespace of the mesh.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The workload whose inbound traffic is being authorized: where it runs and its labels.
///
/// In Istio the control plane decides which policies reach which proxy; an embedded mesh has
/// no control plane on the request path, so it keeps every policy it was given and selects
/// the applicable ones itself, with the same rules ([`Workload::is_selected_by`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's labels (pod labels in Kubernetes).
    pub labels: BTreeMap<String, String>,
    /// The mesh's root namespace ([`DEFAULT_ROOT_NAMESPACE`] unless the mesh changed it).
    pub root_namespace: String,
}

impl Workload {
    /// A workload in `namespace` with no labels, in a mesh whose root namespace is
    /// `istio-system`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_owned(),
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Uses another root namespace (Istio's `meshConfig.rootNamespace`).
    #[must_use]
    pub fn with_root_namespace(mut self, root: impl Into<String>) -> Self {
        self.root_namespace = root.into();
        self
    }

    /// Whether `policy` applies to this workload.
    ///
    /// A policy applies when it lives in the workload's namespace or in the root namespace
    /// (mesh-wide), and its `selector.matchLabels` (if any) are all among the workload's
    /// labels with equal values. An empty selector selects every workload in scope.
    pub fn is_selected_by(&self, policy: &AuthorizationPolicy) -> bool {
        let ns = policy.id.namespace.as_str();
        if ns != self.namespace && ns != self.root_namespace {
            return false;
        }
        policy.selector.as_ref().is_none_or(|selector| {
            selector
                .iter()
                .all(|(k, v)| self.labels.get(k).is_some_and(|have| have == v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Workload;
    use crate::authz::parse_policies;

    fn policy(namespace: &str, selector: &str) -> crate::authz::AuthorizationPolicy {
        let yaml = format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: p, namespace: {namespace}}}\nspec: {{{selector}}}\n"
        );
        parse_policies(&yaml).unwrap().remove(0)
    }

    #[test]
    fn namespace_scoping() {
        let web = Workload::new("shop").with_label("app", "web");
        assert!(web.is_selected_by(&policy("shop", "")));
        assert!(!web.is_selected_by(&policy("other", "")));
        // Root namespace policies are mesh-wide.
        assert!(web.is_selected_by(&policy("istio-system", "")));
        let custom_root = web.clone().with_root_namespace("mesh-root");
        assert!(!custom_root.is_selected_by(&policy("istio-system", "")));
        assert!(custom_root.is_selected_by(&policy("mesh-root", "")));
    }

    #[test]
    fn selector_must_be_a_subset_of_the_labels() {
        let web = Workload::new("shop")
            .with_label("app", "web")
            .with_label("version", "v1");
        assert!(web.is_selected_by(&policy("shop", "selector: {matchLabels: {app: web}}")));
        assert!(web.is_selected_by(&policy(
            "shop",
            "selector: {matchLabels: {app: web, version: v1}}"
        )));
        assert!(!web.is_selected_by(&policy("shop", "selector: {matchLabels: {app: db}}")));
        assert!(!web.is_selected_by(&policy("shop", "selector: {matchLabels: {tier: x}}")));
        assert!(web.is_selected_by(&policy("shop", "selector: {}")));
        assert!(web.is_selected_by(&policy("shop", "selector: {matchLabels: {}}")));
        // A root-namespace policy with a selector applies to matching workloads everywhere.
        assert!(web.is_selected_by(&policy(
            "istio-system",
            "selector: {matchLabels: {app: web}}"
        )));
        assert!(!web.is_selected_by(&policy(
            "istio-system",
            "selector: {matchLabels: {app: db}}"
        )));
    }
}

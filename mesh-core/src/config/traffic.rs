//! The `traffic_policy:` sections, validated and turned into the traffic model.

use super::{ConfigError, MeshConfig};
use crate::{
    model::ServiceName,
    traffic::{
        DestinationRule, HostPattern, ReferenceError, ResourceKind, TrafficConfig,
        TrafficErrorKind, TrafficPolicy, TrafficSettings, VirtualService,
        load::{
            cx::{Cx, Hosts},
            policy, routes,
        },
        raw::{Conv, istio, snake_path},
    },
};

/// The namespace given to resources that come from the mesh config (they have none).
const NAMESPACE: &str = "mesh-config";

/// What one service's `traffic_policy:` section stands for, in Istio's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceTraffic {
    /// The service's index in `services`.
    pub service: usize,
    /// Its DestinationRule: settings, port overrides, subsets.
    pub rule: DestinationRule,
    /// Its HTTP routes, when the section has any.
    pub routes: Option<VirtualService>,
}

impl ServiceTraffic {
    /// The config path of a [`ReferenceError`] about this service's resources.
    pub fn config_path(&self, error: &ReferenceError) -> String {
        let service = format!("services[{}]", self.service);
        if error.path == "host" || error.path.starts_with("hosts[") {
            format!("{service}.host")
        } else {
            format!("{service}.traffic_policy.{}", snake_path(&error.path))
        }
    }
}

impl MeshConfig {
    /// Validates every service's `traffic_policy:` section and converts it; every problem is
    /// reported, each with its path (`services[1].traffic_policy.http[0].timeout`).
    ///
    /// References between sections (a route to another service's subset) are checked by
    /// [`traffic_config`](Self::traffic_config), or by
    /// [`TrafficConfig::new`] when these are combined with other resources.
    pub fn traffic_sections(&self) -> Result<Vec<ServiceTraffic>, Vec<ConfigError>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (i, service) in self.services.iter().enumerate() {
            let Some(section) = &service.traffic_policy else {
                continue;
            };
            let base = format!("services[{i}].traffic_policy");
            let host = match ServiceName::new(&service.host) {
                Ok(name) => name,
                Err(e) => {
                    errors.push(ConfigError::invalid(
                        format!("services[{i}].host"),
                        e.to_string(),
                    ));
                    continue;
                }
            };
            let section = section.0.clone();
            let raw_policy = istio::TrafficPolicy {
                load_balancer: section.load_balancer.conv(),
                connection_pool: section.connection_pool.conv(),
                outlier_detection: section.outlier_detection.conv(),
                tls: section.tls.conv(),
                port_level_settings: section.port_level_settings.conv(),
                tunnel: None,
                proxy_protocol: None,
            };
            let mut cx = Cx::new(Hosts::MeshConfig);
            let settings: TrafficSettings =
                policy::traffic_settings(&mut cx, "", &raw_policy, false);
            let subsets = policy::subsets(
                &mut cx,
                "subsets",
                &section.subsets.conv().unwrap_or_default(),
            );
            let http_raw = section.http.conv().unwrap_or_default();
            let http = routes::http_routes(&mut cx, "http", &http_raw, Some(host.as_str()));
            if !cx.problems.is_empty() {
                errors.extend(cx.problems.into_iter().map(|p| {
                    let path = if p.path.is_empty() {
                        base.clone()
                    } else {
                        format!("{base}.{}", snake_path(&p.path))
                    };
                    match p.kind {
                        TrafficErrorKind::Unsupported => ConfigError::Unsupported {
                            path,
                            reason: p.reason,
                        },
                        _ => ConfigError::invalid(path, p.reason),
                    }
                }));
                continue;
            }
            let pattern = HostPattern::exact(&host);
            let rule = DestinationRule::new(
                host.as_str(),
                NAMESPACE,
                TrafficPolicy {
                    host: pattern.clone(),
                    settings,
                    subsets,
                },
            );
            let routes = (!http.is_empty()).then(|| {
                let mut vs = VirtualService::new(host.as_str(), NAMESPACE, vec![pattern]);
                vs.http = http;
                vs
            });
            out.push(ServiceTraffic {
                service: i,
                rule,
                routes,
            });
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// The traffic rules of every service, validated and checked against each other (every
    /// subset a route names exists), ready to resolve calls. Returns the first problem; see
    /// [`traffic_sections`](Self::traffic_sections) for all of them.
    ///
    /// ```
    /// use mesh_core::{config::MeshConfig, rng::SplitMix64, traffic::RequestAttributes};
    ///
    /// let yaml = r#"
    /// services:
    ///   - host: reviews.shop.svc.cluster.local
    ///     traffic_policy:
    ///       outlier_detection: { consecutive_5xx_errors: 3, interval: 5s }
    ///       subsets: [{ name: v2, labels: { version: v2 } }]
    ///       http:
    ///         - match: [{ uri: { prefix: /beta } }]
    ///           route: [{ destination: { subset: v2 } }]
    ///           timeout: 2s
    /// "#;
    /// let traffic = MeshConfig::from_yaml(yaml)?.traffic_config()?;
    /// let request = RequestAttributes::new("GET", "/beta/items");
    /// let call = traffic.resolve("reviews.shop.svc.cluster.local", 9080, &request, &mut SplitMix64::new(0))?;
    /// assert_eq!(call.destination.subset.as_deref(), Some("v2"));
    /// assert_eq!(call.policy.outlier_config().unwrap().consecutive_5xx, 3);
    /// assert_eq!(call.policy.timeout(), Some(std::time::Duration::from_secs(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn traffic_config(&self) -> Result<TrafficConfig, ConfigError> {
        let sections = self
            .traffic_sections()
            .map_err(|mut errors| errors.swap_remove(0))?;
        let rules = sections.iter().map(|s| s.rule.clone()).collect();
        let with_routes: Vec<&ServiceTraffic> =
            sections.iter().filter(|s| s.routes.is_some()).collect();
        let services = with_routes
            .iter()
            .filter_map(|s| s.routes.clone())
            .collect();
        TrafficConfig::new(rules, services).map_err(|errors| {
            let e = &errors[0];
            let section = match e.kind {
                ResourceKind::DestinationRule => sections.get(e.index),
                ResourceKind::VirtualService => with_routes.get(e.index).copied(),
            };
            let path = section.map_or_else(|| "services".to_owned(), |s| s.config_path(e));
            ConfigError::invalid(path, e.reason.clone())
        })
    }
}

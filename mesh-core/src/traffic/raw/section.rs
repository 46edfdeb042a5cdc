//! The mesh config's `traffic_policy:` section of a service, in snake_case.

use serde::Deserialize;

use super::snake;

/// A service's traffic section: its DestinationRule's content (settings, port overrides,
/// subsets) and its HTTP routes, in one place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceTraffic {
    #[serde(default)]
    pub(crate) load_balancer: Option<snake::LoadBalancer>,
    #[serde(default)]
    pub(crate) connection_pool: Option<snake::ConnectionPool>,
    #[serde(default)]
    pub(crate) outlier_detection: Option<snake::OutlierDetection>,
    #[serde(default)]
    pub(crate) tls: Option<snake::ClientTls>,
    #[serde(default)]
    pub(crate) port_level_settings: Option<Vec<snake::PortTrafficPolicy>>,
    #[serde(default)]
    pub(crate) subsets: Option<Vec<snake::Subset>>,
    #[serde(default)]
    pub(crate) http: Option<Vec<snake::HttpRoute>>,
}

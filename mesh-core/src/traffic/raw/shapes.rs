//! The shapes themselves: one list, expanded into `istio` and `snake` modules.
//!
//! Durations are read as strings and parsed by the converter (which knows the field's path);
//! counts are unsigned, so a negative count is a type error naming the field.

#![allow(
    unreachable_pub,
    reason = "generated twice into private modules; visibility is the parent's"
)]

/// Expands the list of shapes into both spellings, the snake-to-Istio conversions and the
/// table of field names used to translate error paths.
macro_rules! shapes {
    (
        structs {
            $(
                $(#[doc = $sdoc:literal])*
                struct $name:ident { $( $field:ident : $ty:ty ),* $(,)? }
            )*
        }
        enums {
            $(
                $(#[doc = $edoc:literal])*
                enum $ename:ident { $( $variant:ident ),* $(,)? }
            )*
        }
    ) => {
        /// Istio's spelling: camelCase fields, SCREAMING_SNAKE_CASE enum values.
        pub(crate) mod istio {
            use std::collections::BTreeMap;

            use serde::Deserialize;

            use super::super::Present;

            $(
                $(#[doc = $sdoc])*
                #[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
                #[serde(deny_unknown_fields, rename_all = "camelCase")]
                pub(crate) struct $name {
                    $( #[serde(default)] pub(crate) $field: $ty, )*
                }
            )*
            $(
                $(#[doc = $edoc])*
                #[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
                #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
                pub(crate) enum $ename { $( $variant, )* }
            )*
        }

        /// The mesh config's spelling: snake_case fields and enum values.
        pub(crate) mod snake {
            use std::collections::BTreeMap;

            use serde::Deserialize;

            use super::super::Present;

            $(
                $(#[doc = $sdoc])*
                #[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
                #[serde(deny_unknown_fields, rename_all = "snake_case")]
                pub(crate) struct $name {
                    $( #[serde(default)] pub(crate) $field: $ty, )*
                }
            )*
            $(
                $(#[doc = $edoc])*
                #[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
                #[serde(rename_all = "snake_case")]
                pub(crate) enum $ename { $( $variant, )* }
            )*
        }

        $(
            impl super::Conv for snake::$name {
                type Out = istio::$name;
                fn conv(self) -> istio::$name {
                    istio::$name { $( $field: super::Conv::conv(self.$field), )* }
                }
            }
        )*
        $(
            impl super::Conv for snake::$ename {
                type Out = istio::$ename;
                fn conv(self) -> istio::$ename {
                    match self { $( snake::$ename::$variant => istio::$ename::$variant, )* }
                }
            }
        )*

        /// Every field name, in Rust's (snake_case) spelling.
        pub(crate) const FIELD_NAMES: &[&str] = &[ $( $( stringify!($field), )* )* ];
    };
}

shapes! {
    structs {
    /// `trafficPolicy` (DestinationRule, subsets).
    struct TrafficPolicy {
        load_balancer: Option<LoadBalancer>,
        connection_pool: Option<ConnectionPool>,
        outlier_detection: Option<OutlierDetection>,
        tls: Option<ClientTls>,
        port_level_settings: Option<Vec<PortTrafficPolicy>>,
        tunnel: Option<Present>,
        proxy_protocol: Option<Present>,
    }
    /// `portLevelSettings[]`.
    struct PortTrafficPolicy {
        port: Option<PortSelector>,
        load_balancer: Option<LoadBalancer>,
        connection_pool: Option<ConnectionPool>,
        outlier_detection: Option<OutlierDetection>,
        tls: Option<ClientTls>,
    }
    /// `port: { number: 80 }`.
    struct PortSelector {
        number: Option<u32>,
    }
    /// `subsets[]`.
    struct Subset {
        name: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        traffic_policy: Option<TrafficPolicy>,
    }
    /// `loadBalancer`.
    struct LoadBalancer {
        simple: Option<SimpleLb>,
        consistent_hash: Option<ConsistentHash>,
        locality_lb_setting: Option<LocalityLb>,
        warmup_duration_secs: Option<Present>,
        warmup: Option<Present>,
    }
    /// `loadBalancer.consistentHash`.
    struct ConsistentHash {
        http_header_name: Option<String>,
        http_cookie: Option<HttpCookie>,
        use_source_ip: Option<bool>,
        http_query_parameter_name: Option<String>,
        ring_hash: Option<RingHash>,
        maglev: Option<Maglev>,
        minimum_ring_size: Option<u64>,
    }
    /// `consistentHash.httpCookie`.
    struct HttpCookie {
        name: Option<String>,
        path: Option<String>,
        ttl: Option<String>,
        attributes: Option<Present>,
    }
    /// `consistentHash.ringHash`.
    struct RingHash {
        minimum_ring_size: Option<u64>,
    }
    /// `consistentHash.maglev`.
    struct Maglev {
        table_size: Option<u64>,
    }
    /// `loadBalancer.localityLbSetting`.
    struct LocalityLb {
        distribute: Option<Vec<LocalityDistribute>>,
        failover: Option<Vec<LocalityFailover>>,
        failover_priority: Option<Vec<String>>,
        enabled: Option<bool>,
    }
    /// `localityLbSetting.distribute[]`.
    struct LocalityDistribute {
        from: Option<String>,
        to: Option<BTreeMap<String, u32>>,
    }
    /// `localityLbSetting.failover[]`.
    struct LocalityFailover {
        from: Option<String>,
        to: Option<String>,
    }
    /// `connectionPool`.
    struct ConnectionPool {
        tcp: Option<TcpSettings>,
        http: Option<HttpSettings>,
    }
    /// `connectionPool.tcp`.
    struct TcpSettings {
        max_connections: Option<u32>,
        connect_timeout: Option<String>,
        tcp_keepalive: Option<TcpKeepalive>,
        max_connection_duration: Option<String>,
        idle_timeout: Option<String>,
    }
    /// `connectionPool.tcp.tcpKeepalive`.
    struct TcpKeepalive {
        probes: Option<u32>,
        time: Option<String>,
        interval: Option<String>,
    }
    /// `connectionPool.http`.
    struct HttpSettings {
        http1_max_pending_requests: Option<u32>,
        http2_max_requests: Option<u32>,
        max_requests_per_connection: Option<u32>,
        max_retries: Option<u32>,
        idle_timeout: Option<String>,
        h2_upgrade_policy: Option<H2Upgrade>,
        use_client_protocol: Option<bool>,
        max_concurrent_streams: Option<u32>,
    }
    /// `outlierDetection`.
    struct OutlierDetection {
        consecutive_errors: Option<Present>,
        split_external_local_origin_errors: Option<bool>,
        consecutive_local_origin_failures: Option<u32>,
        consecutive_gateway_errors: Option<u32>,
        consecutive_5xx_errors: Option<u32>,
        interval: Option<String>,
        base_ejection_time: Option<String>,
        max_ejection_percent: Option<u32>,
        min_health_percent: Option<u32>,
    }
    /// `tls` (ClientTLSSettings).
    struct ClientTls {
        mode: Option<TlsMode>,
        client_certificate: Option<Present>,
        private_key: Option<Present>,
        ca_certificates: Option<Present>,
        credential_name: Option<Present>,
        subject_alt_names: Option<Present>,
        sni: Option<Present>,
        insecure_skip_verify: Option<Present>,
        ca_crl: Option<Present>,
    }
    /// `http[]` (HTTPRoute).
    struct HttpRoute {
        name: Option<String>,
        r#match: Option<Vec<HttpMatch>>,
        route: Option<Vec<RouteDestination>>,
        timeout: Option<String>,
        retries: Option<HttpRetry>,
        redirect: Option<Present>,
        direct_response: Option<Present>,
        delegate: Option<Present>,
        rewrite: Option<Present>,
        fault: Option<Present>,
        mirror: Option<Present>,
        mirrors: Option<Present>,
        mirror_percent: Option<Present>,
        mirror_percentage: Option<Present>,
        cors_policy: Option<Present>,
        headers: Option<Present>,
    }
    /// `http[].match[]` (HTTPMatchRequest).
    struct HttpMatch {
        name: Option<String>,
        uri: Option<StringMatch>,
        scheme: Option<StringMatch>,
        method: Option<StringMatch>,
        authority: Option<StringMatch>,
        headers: Option<BTreeMap<String, StringMatch>>,
        port: Option<u32>,
        query_params: Option<BTreeMap<String, StringMatch>>,
        ignore_uri_case: Option<bool>,
        without_headers: Option<BTreeMap<String, StringMatch>>,
        source_labels: Option<Present>,
        gateways: Option<Present>,
        source_namespace: Option<Present>,
        stat_prefix: Option<Present>,
    }
    /// StringMatch: one of `exact`, `prefix`, `regex` (or none, for presence).
    struct StringMatch {
        exact: Option<String>,
        prefix: Option<String>,
        regex: Option<String>,
    }
    /// `http[].route[]` (HTTPRouteDestination).
    struct RouteDestination {
        destination: Option<Destination>,
        weight: Option<u32>,
        headers: Option<Present>,
    }
    /// `route[].destination`.
    struct Destination {
        host: Option<String>,
        subset: Option<String>,
        port: Option<PortSelector>,
    }
    /// `http[].retries` (HTTPRetry).
    struct HttpRetry {
        attempts: Option<u32>,
        per_try_timeout: Option<String>,
        retry_on: Option<String>,
        retry_remote_localities: Option<bool>,
        backoff: Option<String>,
    }
    }
    enums {
    /// `loadBalancer.simple`.
    enum SimpleLb { Unspecified, LeastConn, Random, Passthrough, RoundRobin, LeastRequest }
    /// `connectionPool.http.h2UpgradePolicy`.
    enum H2Upgrade { Default, DoNotUpgrade, Upgrade }
    /// `tls.mode`.
    enum TlsMode { Disable, Simple, Mutual, IstioMutual }
    }
}

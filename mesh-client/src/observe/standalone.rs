//! The admin endpoint's view of a server built from the low-level parts (an
//! [`HboneServer`](crate::hbone::HboneServer) or [`HboneClient`](crate::hbone::HboneClient)
//! with rotating [`Credentials`]) rather than a whole [`Mesh`](crate::mesh::Mesh).
//!
//! `meshctl hbone serve --admin` and the examples use it: it reports the workload certificate
//! (readiness, `/config_dump`, `mesh_certificate_expiry_timestamp_seconds`) and the pool and
//! tunnel counts the telemetry's other sources report, plus whatever the program describes
//! about itself.
//!
//! ```no_run
//! # async fn demo(credentials: mesh_tls::Credentials) -> std::io::Result<()> {
//! use mesh_client::observe::{AdminServer, CredentialsState, Telemetry, WorkloadLabels};
//! let telemetry = Telemetry::new(WorkloadLabels::unknown(), &Default::default());
//! let state = CredentialsState::register(
//!     credentials,
//!     &telemetry,
//!     serde_json::json!({ "inbound": { "listen": "127.0.0.1:15008" } }),
//! );
//! let admin = AdminServer::bind("127.0.0.1:15020".parse().unwrap(), telemetry, state, None).await?;
//! # drop(admin); Ok(()) }
//! ```

use std::{
    sync::{Arc, Weak},
    time::{SystemTime, UNIX_EPOCH},
};

use mesh_tls::Credentials;
use serde_json::{Value, json};

use super::{AdminState, CertificateState, StateReport, StateSource, Telemetry};

/// Readiness, `/config_dump` and certificate metrics of a workload known by its
/// [`Credentials`]. Ready while its SVID is valid.
pub struct CredentialsState {
    credentials: Credentials,
    telemetry: Telemetry,
    details: Value,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl CredentialsState {
    /// A state for the workload holding `credentials`, registered with `telemetry` as a
    /// scrape-time source (held weakly: keep the returned `Arc`, for instance in the
    /// [`AdminServer`](super::AdminServer) it is given to). `details` is a JSON object whose
    /// fields are added to `/config_dump` (such as `inbound: { listen: ... }`).
    pub fn register(credentials: Credentials, telemetry: &Telemetry, details: Value) -> Arc<Self> {
        let state = Arc::new(Self {
            credentials,
            telemetry: telemetry.clone(),
            details,
        });
        telemetry.add_state_source(Arc::downgrade(&state) as Weak<dyn StateSource>);
        state
    }
}

impl StateSource for CredentialsState {
    fn report(&self, report: &mut StateReport) {
        let svid = self.credentials.svid();
        report.certificates.push(CertificateState::new(
            svid.spiffe_id().as_str(),
            svid.not_after().as_secs(),
        ));
    }
}

impl AdminState for CredentialsState {
    fn ready(&self) -> Result<(), String> {
        let svid = self.credentials.svid();
        let expiry = svid.not_after().as_secs();
        if expiry <= unix_now() {
            return Err(format!(
                "the SVID of {} expired at {expiry} (Unix seconds) and has not been renewed",
                svid.spiffe_id()
            ));
        }
        Ok(())
    }

    fn config_dump(&self) -> Value {
        let svid = self.credentials.svid();
        let expiry = svid.not_after().as_secs();
        let state = self.telemetry.state();
        let local = self.telemetry.local();
        let mut dump = json!({
            "workload": {
                "name": local.workload,
                "namespace": local.namespace,
                "spiffe_id": svid.spiffe_id().as_str(),
            },
            "certificates": [{
                "spiffe_id": svid.spiffe_id().as_str(),
                "not_after": super::rfc3339_secs(expiry),
                "expiry_unix": expiry,
                "seconds_left": expiry.saturating_sub(unix_now()),
            }],
            "telemetry": { "flows": state.flows },
            "pools": {
                "outbound": {
                    "connections_open": state.pool_connections,
                    "connections_opened": state.pool_connections_opened,
                    "streams_open": state.pool_streams,
                },
                "inbound": {
                    "connections": state.inbound_connections,
                    "tunnels": state.inbound_tunnels,
                },
            },
        });
        if let (Some(dump), Some(details)) = (dump.as_object_mut(), self.details.as_object()) {
            for (key, value) in details {
                dump.insert(key.clone(), value.clone());
            }
        }
        dump
    }
}

impl std::fmt::Debug for CredentialsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsState")
            .field("spiffe_id", &self.credentials.svid().spiffe_id().as_str())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::WorkloadLabels;
    use mesh_core::TrustDomain;
    use mesh_tls::DevCa;

    #[test]
    fn reports_the_certificate_and_merges_details() {
        let ca = DevCa::generate("example.org".parse::<TrustDomain>().unwrap()).unwrap();
        let id = "spiffe://example.org/ns/shop/sa/inventory".parse().unwrap();
        let svid = ca.issue(&id, std::time::Duration::from_secs(3600)).unwrap();
        let credentials = Credentials::new(svid, ca.bundle_set());
        let telemetry = Telemetry::new(WorkloadLabels::unknown(), &Default::default());
        let state = CredentialsState::register(
            credentials,
            &telemetry,
            json!({ "inbound": { "listen": "127.0.0.1:1" } }),
        );
        assert!(state.ready().is_ok());
        let dump = state.config_dump();
        assert_eq!(dump["workload"]["spiffe_id"], id.as_str());
        assert_eq!(dump["inbound"]["listen"], "127.0.0.1:1");
        assert!(dump["certificates"][0]["seconds_left"].as_u64().unwrap() > 3000);
        let text = telemetry.encode();
        assert!(
            text.contains("mesh_certificate_expiry_timestamp_seconds{spiffe_id=\"spiffe://example.org/ns/shop/sa/inventory\"}"),
            "{text}"
        );
    }
}

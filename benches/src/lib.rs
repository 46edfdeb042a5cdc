//! Shared helpers for the benchmarks.
//!
//! Every benchmark compares the mesh against a baseline in the same run, so both sides must use
//! the same keys, certificates, crypto parameters and sockets:
//!
//! - [`pki`]: one development CA and the two SVIDs (client and server) every handshake uses, and
//!   the mesh and plain-rustls endpoints built from them with matching parameters.
//! - [`handshake`]: a loopback echo server and a client that dials, handshakes and echoes one
//!   byte, for either TLS stack.

pub mod handshake;
pub mod pki;

/// The error type of the helpers: setup failures are reported, never hidden.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

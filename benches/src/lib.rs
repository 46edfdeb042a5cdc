//! Shared helpers for the benchmarks.
//!
//! Every benchmark compares the mesh against a baseline in the same run, so both sides must use
//! the same keys, certificates, crypto parameters and sockets:
//!
//! - [`pki`]: one development CA and the two SVIDs (client and server) every handshake uses, and
//!   the mesh and plain-rustls endpoints built from them with matching parameters.
//! - [`handshake`]: a loopback echo server and a client that dials, handshakes and echoes one
//!   byte, for either TLS stack.
//! - [`services`]: the echo and sink services every data-path benchmark runs, written once over
//!   `AsyncRead + AsyncWrite`, their client sides, and plain TCP / TLS listeners for them.
//! - [`hbone`]: an HBONE server running those services inside tunnels, and its clients.
//! - [`h2c`]: cleartext HTTP/2 baselines (an `h2` stream echo and a hyper POST echo).
//! - [`ops`]: benchmarked operations as objects, timed by Criterion and then run interleaved.
//! - [`stats`]: percentiles of individually timed operations.
//! - [`memory`]: resident-set-size readings and the child-process server of `hbone_memory`.

pub mod h2c;
pub mod handshake;
pub mod hbone;
pub mod memory;
pub mod ops;
pub mod pki;
pub mod services;
pub mod stats;

/// The error type of the helpers: setup failures are reported, never hidden.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

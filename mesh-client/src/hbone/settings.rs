//! HTTP/2 parameters for HBONE, mirroring Istio's ztunnel so both ends agree on flow control.

use std::time::Duration;

/// Per-stream initial flow-control window: 4 MiB.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Connection-level window, announced with a WINDOW_UPDATE right after SETTINGS: 16 MiB.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest DATA frame we accept: 1 MiB.
pub const MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// Streams a server lets one client open at once.
pub const SERVER_MAX_CONCURRENT_STREAMS: u32 = 200;
/// Header list limit on the server side: 64 KiB.
pub const SERVER_MAX_HEADER_LIST: u32 = 64 * 1024;
/// Header list limit on the client side: 16 KiB.
pub const CLIENT_MAX_HEADER_LIST: u32 = 16 * 1024;
/// Streams the client opens on one connection before opening another (also capped by the peer).
pub const CLIENT_MAX_STREAMS_PER_CONNECTION: usize = 100;
/// How much outbound data h2 may buffer per stream before applying backpressure.
pub const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// Keepalive: a PING this often on an otherwise quiet connection...
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// ...and the connection is closed if the PONG takes longer than this.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The conventional HBONE port.
pub const HBONE_PORT: u16 = 15008;

//! What can go wrong opening a tunnel, in terms a caller can act on.

use std::{io, net::SocketAddr, time::Duration};

use http::StatusCode;
use mesh_tls::HandshakeError;
use thiserror::Error;

/// Opening an HBONE tunnel failed.
///
/// [`is_retryable`](Self::is_retryable) separates failures worth another attempt (the destination
/// may recover, or another endpoint may work) from verdicts that will repeat (policy denial,
/// identity mismatch).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The TCP connection to the destination's HBONE port failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where we dialed.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The mutual-TLS handshake failed (includes an unexpected server identity).
    #[error("mTLS handshake with {addr} failed: {source}")]
    Tls {
        /// Where we dialed.
        addr: SocketAddr,
        /// Why.
        source: HandshakeError,
    },
    /// The server negotiated no ALPN `h2`, so it does not speak HBONE.
    #[error("{addr} did not negotiate ALPN h2; it is not an HBONE endpoint")]
    NotHbone {
        /// Where we dialed.
        addr: SocketAddr,
    },
    /// HTTP/2 failed on the connection or stream.
    #[error("HTTP/2 error talking to {addr}: {reason}")]
    Http2 {
        /// Where we dialed.
        addr: SocketAddr,
        /// h2's description.
        reason: String,
        /// The peer refused the stream before processing it (safe to retry anywhere).
        refused: bool,
    },
    /// 401: the destination's authorization policy denied this tunnel. Not retryable.
    #[error(
        "{addr} denied the tunnel to {authority} (HTTP 401): its authorization policy rejects our identity"
    )]
    Denied {
        /// Where we dialed.
        addr: SocketAddr,
        /// The CONNECT authority.
        authority: String,
    },
    /// 503: the destination could not reach the target. Retryable.
    #[error(
        "{addr} could not reach {authority} (HTTP 503): the target is down, unknown or refused"
    )]
    Unavailable {
        /// Where we dialed.
        addr: SocketAddr,
        /// The CONNECT authority.
        authority: String,
    },
    /// 400: the destination found the CONNECT malformed (usually an authority it does not own).
    #[error(
        "{addr} rejected the CONNECT to {authority} as malformed (HTTP 400); the authority IP must be the address dialed"
    )]
    BadRequest {
        /// Where we dialed.
        addr: SocketAddr,
        /// The CONNECT authority.
        authority: String,
    },
    /// Any other non-200 answer.
    #[error("{addr} answered the CONNECT to {authority} with HTTP {status}")]
    Status {
        /// Where we dialed.
        addr: SocketAddr,
        /// The CONNECT authority.
        authority: String,
        /// The status.
        status: StatusCode,
    },
    /// A phase took longer than its limit.
    #[error("{phase} to {addr} timed out after {after:?}")]
    Timeout {
        /// Where we dialed.
        addr: SocketAddr,
        /// What was being waited for.
        phase: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The client was shut down.
    #[error("the HBONE client is shut down")]
    PoolClosed,
    /// The request could not be built (for example an invalid authority or header value).
    #[error("invalid tunnel request: {0}")]
    InvalidRequest(String),
}

impl TunnelError {
    /// Whether another attempt (to this or another endpoint) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Unavailable { .. } | Self::Timeout { .. } => true,
            Self::Http2 { .. } => true,
            Self::Tls { source, .. } => source.is_retryable(),
            Self::Denied { .. }
            | Self::NotHbone { .. }
            | Self::BadRequest { .. }
            | Self::Status { .. }
            | Self::PoolClosed
            | Self::InvalidRequest(_) => false,
        }
    }

    /// The HTTP status the destination answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Denied { .. } => Some(StatusCode::UNAUTHORIZED),
            Self::Unavailable { .. } => Some(StatusCode::SERVICE_UNAVAILABLE),
            Self::BadRequest { .. } => Some(StatusCode::BAD_REQUEST),
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

//! `mesh-demo`: two workloads prove who they are to each other over mutual TLS, in one process.
//!
//! Run it with `cargo run --release --bin mesh-demo`. It walks through what the mesh does on
//! every connection:
//!
//! 1. A development CA for the trust domain `demo.mesh.local` issues an X.509 SVID to each
//!    workload: `orders` (the client) and `inventory` (the server).
//! 2. `orders` dials `inventory` expecting exactly `inventory`. Each side verifies the other's
//!    certificate chain and learns the peer's SPIFFE ID from it; then one line of text goes each
//!    way over the encrypted stream.
//! 3. `orders` dials the same address again, but this time expects `payments`. The server's
//!    certificate is perfectly valid, yet the handshake fails with a typed error: in a mesh, a
//!    valid certificate for the wrong workload is as bad as none.
//!
//! Every network step has a timeout, so a bug shows up as an error message rather than a hang.
//! The process exits 0 when everything behaved as described, and 1 with a message otherwise.
#![forbid(unsafe_code)]

use std::{fmt::Display, future::Future, net::SocketAddr, process::ExitCode, time::Duration};

use mesh_core::{SpiffeId, TrustDomain};
use mesh_tls::{DevCa, ExpectedIdentities, HandshakeError, MeshTls, PeerCertError, TlsOptions};
use rustls::ProtocolVersion;
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// The trust domain both workloads belong to.
const TRUST_DOMAIN: &str = "demo.mesh.local";
/// The client workload.
const CLIENT_ID: &str = "spiffe://demo.mesh.local/ns/shop/sa/orders";
/// The server workload.
const SERVER_ID: &str = "spiffe://demo.mesh.local/ns/shop/sa/inventory";
/// The identity the client wrongly expects in the rejected case.
const WRONG_ID: &str = "spiffe://demo.mesh.local/ns/shop/sa/payments";
/// Upper bound for every network step; on loopback each takes milliseconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// SVID lifetime: the demo needs seconds, but an hour shows a realistic certificate.
const SVID_TTL: Duration = Duration::from_secs(3600);
/// Longest line either side accepts, so a misbehaving peer cannot make us buffer without end.
const MAX_LINE: u64 = 4096;

/// Why the demo did not go as described.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    /// A network step did not finish within [`STEP_TIMEOUT`].
    #[error("{step}: no result within {STEP_TIMEOUT:?}")]
    Timeout {
        /// What was being done.
        step: &'static str,
    },
    /// A step failed.
    #[error("{step}: {reason}")]
    Failed {
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A step did something other than what the demo shows (e.g. the wrong identity accepted).
    #[error("unexpected: {0}")]
    Unexpected(String),
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mesh-demo: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole demo: set-up, the accepted connection, the rejected one.
async fn run() -> Result<(), DemoError> {
    let trust_domain: TrustDomain = parse("trust domain", TRUST_DOMAIN)?;
    let client_id: SpiffeId = parse("client ID", CLIENT_ID)?;
    let server_id: SpiffeId = parse("server ID", SERVER_ID)?;
    let wrong_id: SpiffeId = parse("wrong ID", WRONG_ID)?;

    let ca = DevCa::generate(trust_domain).map_err(failed("create the development CA"))?;
    println!(
        "created a development CA for trust domain {}",
        ca.trust_domain()
    );
    let server = workload(&ca, &server_id)?;
    let client = workload(&ca, &client_id)?;
    println!("issued SVIDs to {client_id} (client) and {server_id} (server)");

    let listener = step("server: bind 127.0.0.1:0", TcpListener::bind("127.0.0.1:0")).await?;
    let addr = listener
        .local_addr()
        .map_err(failed("server: read the bound address"))?;
    println!("server listening on {addr}");

    println!();
    println!("1. orders dials inventory, expecting {server_id}");
    let (served, dialed) = both(tokio::join!(
        serve_once(&listener, &server),
        dial_once(addr, &client, &server_id)
    ))?;
    println!("   server verified the client as: {}", served.peer);
    println!("   client verified the server as: {}", dialed.peer);
    if served.peer != client_id || dialed.peer != server_id {
        return Err(DemoError::Unexpected(
            "a verified identity is not the one its SVID was issued for".to_owned(),
        ));
    }
    println!("   TLS version:   {}", dialed.version);
    println!("   cipher suite:  {}", dialed.cipher_suite);
    println!("   ALPN protocol: {}", dialed.alpn);
    println!("   client -> server: {:?}", served.received);
    println!("   server -> client: {:?}", dialed.received);

    println!();
    println!("2. orders dials inventory again, but expects {wrong_id}");
    let (server_saw, client_error) = both(tokio::join!(
        accept_rejected(&listener, &server),
        dial_rejected(addr, &client, &wrong_id)
    ))?;
    println!("   client refused the server: {client_error}");
    println!("   typed error: {client_error:?}");
    println!(
        "   retryable: {}",
        if client_error.is_retryable() {
            "yes"
        } else {
            "no"
        }
    );
    println!("   server saw: {server_saw}");

    println!();
    println!(
        "ok: the workloads verified each other's SPIFFE IDs, and the wrong identity was refused"
    );
    Ok(())
}

/// What the server side of the accepted connection learned.
struct Served {
    /// The client's verified SPIFFE ID.
    peer: SpiffeId,
    /// The line the client sent.
    received: String,
}

/// What the client side of the accepted connection learned.
struct Dialed {
    /// The server's verified SPIFFE ID.
    peer: SpiffeId,
    /// The line the server sent.
    received: String,
    /// Negotiated TLS version.
    version: String,
    /// Negotiated cipher suite.
    cipher_suite: String,
    /// Negotiated ALPN protocol.
    alpn: String,
}

/// Server side of case 1: accept, handshake, answer one line, close.
async fn serve_once(listener: &TcpListener, tls: &MeshTls) -> Result<Served, DemoError> {
    let (tcp, _) = step("server: accept TCP", listener.accept()).await?;
    let (stream, peer) = step("server: TLS handshake", tls.accept(tcp)).await?;
    let mut stream = BufReader::new(stream);
    let received = read_line("server: read the request", &mut stream).await?;
    // The verified identity is what the application can act on, e.g. in its authorization.
    let caller = peer.service_account().unwrap_or(peer.as_str());
    let reply = format!("inventory to {caller}: 42 widgets in stock\n");
    step(
        "server: write the reply",
        stream.get_mut().write_all(reply.as_bytes()),
    )
    .await?;
    // Close only after the client has: its close_notify tells us it has read everything.
    expect_eof("server: wait for the client to close", &mut stream).await?;
    step("server: close", stream.get_mut().shutdown()).await?;
    Ok(Served { peer, received })
}

/// Client side of case 1: connect, handshake pinned to `expected`, one line each way, close.
async fn dial_once(
    addr: SocketAddr,
    tls: &MeshTls,
    expected: &SpiffeId,
) -> Result<Dialed, DemoError> {
    let tcp = step("client: TCP connect", TcpStream::connect(addr)).await?;
    let (stream, peer) = step(
        "client: TLS handshake",
        tls.connect(tcp, addr.ip(), &ExpectedIdentities::one(expected.clone())),
    )
    .await?;
    let (_, connection) = stream.get_ref();
    let version = match connection.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLS 1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLS 1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "(none)".to_owned(),
    };
    let cipher_suite = connection
        .negotiated_cipher_suite()
        .map(|suite| {
            let suite = suite.suite();
            suite
                .as_str()
                .map_or_else(|| format!("{suite:?}"), str::to_owned)
        })
        .unwrap_or_else(|| "(none)".to_owned());
    let alpn = connection
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_else(|| "(none)".to_owned());

    let mut stream = BufReader::new(stream);
    step(
        "client: write the request",
        stream
            .get_mut()
            .write_all(b"orders to inventory: how many widgets are in stock?\n"),
    )
    .await?;
    let received = read_line("client: read the reply", &mut stream).await?;
    step("client: close", stream.get_mut().shutdown()).await?;
    expect_eof("client: wait for the server to close", &mut stream).await?;
    Ok(Dialed {
        peer,
        received,
        version,
        cipher_suite,
        alpn,
    })
}

/// Server side of case 2: the handshake must fail; returns how it looked from here.
async fn accept_rejected(
    listener: &TcpListener,
    tls: &MeshTls,
) -> Result<HandshakeError, DemoError> {
    let (tcp, _) = step("server: accept TCP", listener.accept()).await?;
    match within("server: TLS handshake", tls.accept(tcp)).await? {
        Err(e) => Ok(e),
        Ok((_, peer)) => Err(DemoError::Unexpected(format!(
            "the server completed a handshake with {peer} that the client should have aborted"
        ))),
    }
}

/// Client side of case 2: expecting `wrong`, the handshake must fail with `UnexpectedIdentity`.
async fn dial_rejected(
    addr: SocketAddr,
    tls: &MeshTls,
    wrong: &SpiffeId,
) -> Result<HandshakeError, DemoError> {
    let tcp = step("client: TCP connect", TcpStream::connect(addr)).await?;
    let expected = ExpectedIdentities::one(wrong.clone());
    match within(
        "client: TLS handshake",
        tls.connect(tcp, addr.ip(), &expected),
    )
    .await?
    {
        Err(e @ HandshakeError::PeerCertificate(PeerCertError::UnexpectedIdentity { .. })) => Ok(e),
        Err(other) => Err(DemoError::Unexpected(format!(
            "the handshake failed, but not because of the identity: {other}"
        ))),
        Ok((_, peer)) => Err(DemoError::Unexpected(format!(
            "the client accepted {peer} although it expected {wrong}"
        ))),
    }
}

/// Issues an SVID for `id` and builds its TLS endpoint.
fn workload(ca: &DevCa, id: &SpiffeId) -> Result<MeshTls, DemoError> {
    let credentials = ca
        .credentials(id, SVID_TTL)
        .map_err(failed("issue an SVID"))?;
    let mut options = TlsOptions::default();
    options.handshake_timeout = STEP_TIMEOUT;
    MeshTls::new(credentials, options).map_err(failed("build the TLS configuration"))
}

/// Reads one newline-terminated line of at most [`MAX_LINE`] bytes, without the newline.
async fn read_line<R>(what: &'static str, reader: &mut R) -> Result<String, DemoError>
where
    R: AsyncBufRead + Unpin,
{
    let mut line = String::new();
    step(what, (&mut *reader).take(MAX_LINE).read_line(&mut line)).await?;
    match line.strip_suffix('\n') {
        Some(line) => Ok(line.to_owned()),
        None if line.is_empty() => Err(failed(what)("the peer closed without sending a line")),
        None => Err(failed(what)("the line is unterminated or too long")),
    }
}

/// Waits for the peer's end of stream, insisting that nothing else arrives first.
async fn expect_eof<R>(what: &'static str, reader: &mut R) -> Result<(), DemoError>
where
    R: AsyncBufRead + Unpin,
{
    let mut rest = Vec::new();
    step(what, (&mut *reader).take(MAX_LINE).read_to_end(&mut rest)).await?;
    if rest.is_empty() {
        Ok(())
    } else {
        Err(failed(what)(format!("{} unexpected bytes", rest.len())))
    }
}

/// Runs `fut` with the step timeout, handing back its own result.
async fn within<F: Future>(what: &'static str, fut: F) -> Result<F::Output, DemoError> {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .map_err(|_| DemoError::Timeout { step: what })
}

/// Runs a fallible `fut` with the step timeout; its error becomes a [`DemoError`] naming `what`.
async fn step<T, E: Display>(
    what: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, DemoError> {
    within(what, fut).await?.map_err(failed(what))
}

/// Builds the error for a failed step, for use with `map_err`.
fn failed<E: Display>(what: &'static str) -> impl Fn(E) -> DemoError {
    move |e| DemoError::Failed {
        step: what,
        reason: e.to_string(),
    }
}

/// Parses one of the demo's constants.
fn parse<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, DemoError>
where
    T::Err: Display,
{
    value
        .parse()
        .map_err(|e| DemoError::Unexpected(format!("the {what} {value:?} does not parse: {e}")))
}

/// Both sides' results, or the more telling failure: when one side fails the other usually
/// fails too (timeout, or "peer rejected"), so the report names both.
fn both<A, B>((a, b): (Result<A, DemoError>, Result<B, DemoError>)) -> Result<(A, B), DemoError> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(server), Err(client)) => Err(DemoError::Unexpected(format!(
            "both sides failed; server: {server}; client: {client}"
        ))),
    }
}

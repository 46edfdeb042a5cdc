//! `quickstart`: an HTTP service and its client in two processes, talking through an HBONE tunnel
//! (HTTP/2 CONNECT over mutual TLS, Istio ambient's data path), each knowing who the other is.
//!
//! Run it with `cargo run --release --bin quickstart`. With no arguments it is the launcher:
//!
//! 1. A development CA for `quickstart.mesh.local` issues SVIDs to `inventory` (the service) and
//!    `orders` (its client), written as PEM files into a temporary directory.
//! 2. It starts `quickstart server` (this same executable) as a child process: an HBONE server
//!    whose tunnels carry plain HTTP/1.1, served with hyper. Every response names the caller's
//!    SPIFFE ID, which the mTLS handshake verified; the HTTP layer never sees a certificate.
//! 3. Once the server prints `listening on ADDR as ID`, it runs `quickstart client` as a second
//!    child process: it opens a tunnel (verifying that the server really is `inventory`), sends
//!    `GET /stock` over it with hyper's HTTP/1.1 client, and prints the response.
//! 4. It closes the server's stdin, which the server takes as the request to drain and stop.
//!
//! The modes can also be run by hand with certificates from `meshctl ca issue`:
//!
//! ```text
//! quickstart server --cert svid.pem --key svid.key --bundle bundle.pem [--listen 127.0.0.1:15008]
//! quickstart client --cert svid.pem --key svid.key --bundle bundle.pem \
//!     --server 127.0.0.1:15008 --expect-id spiffe://quickstart.mesh.local/ns/shop/sa/inventory
//! ```
//!
//! The server stops when its stdin closes (Ctrl-D) or on Ctrl-C. Every network step has a
//! timeout; each mode exits 0 when everything behaved as described and 1 with a message
//! otherwise.
#![forbid(unsafe_code)]

use std::{
    convert::Infallible,
    fmt::Display,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HOST},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use mesh_client::hbone::{
    Delivery, Destination, HboneClient, HboneClientConfig, HboneServer, HboneServerConfig,
    InboundTunnel,
};
use mesh_core::{SpiffeId, TrustDomain};
use mesh_tls::{
    Credentials, DevCa, ExpectedIdentities, MeshTls, TlsOptions, source::files::FileSource,
    write_svid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

/// The trust domain of both workloads.
const TRUST_DOMAIN: &str = "quickstart.mesh.local";
/// The service.
const SERVER_ID: &str = "spiffe://quickstart.mesh.local/ns/shop/sa/inventory";
/// Its client.
const CLIENT_ID: &str = "spiffe://quickstart.mesh.local/ns/shop/sa/orders";
/// The application port the tunnel is for: the CONNECT authority's port. The server serves HTTP
/// on every tunnel whatever the port; a real workload would route by it.
const APP_PORT: u16 = 8080;
/// Upper bound for every network step and for each child process.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// SVID lifetime: the quickstart needs seconds, but an hour shows a realistic certificate.
const SVID_TTL: Duration = Duration::from_secs(3600);
/// How often the server re-reads its certificate files (a rotated SVID is used at once).
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How long open tunnels may finish when the server is asked to stop.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// An HTTP service and its client talking through an HBONE tunnel, in two processes.
///
/// Without a mode, runs both: creates a development CA and SVIDs, starts `quickstart server`,
/// runs `quickstart client` against it, and stops the server.
#[derive(Debug, Parser)]
#[command(name = "quickstart")]
struct Cli {
    /// Run one side only (the launcher starts both).
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// The inventory service: HTTP/1.1 inside HBONE tunnels. Prints `listening on ADDR as ID`.
    ///
    /// Stops, after draining open tunnels, when its stdin closes or on Ctrl-C.
    Server(ServerArgs),
    /// The orders client: one HBONE tunnel, one `GET /stock` over it, the response printed.
    Client(ClientArgs),
}

/// A workload's SVID files, as `meshctl ca issue` or the launcher writes them.
#[derive(Debug, Args)]
struct Identity {
    /// The SVID certificate chain (svid.pem).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// The SVID's private key (svid.key).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The trust bundle of the SVID's trust domain (bundle.pem).
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
}

#[derive(Debug, Args)]
struct ServerArgs {
    #[command(flatten)]
    identity: Identity,
    /// Where to accept HBONE.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[derive(Debug, Args)]
struct ClientArgs {
    #[command(flatten)]
    identity: Identity,
    /// The server's HBONE address, as its `listening on` line gives it.
    #[arg(long, value_name = "ADDR")]
    server: SocketAddr,
    /// The identity the server must prove.
    #[arg(long, value_name = "SPIFFE_ID", default_value = SERVER_ID)]
    expect_id: SpiffeId,
}

/// Why the quickstart did not go as described.
#[derive(Debug, thiserror::Error)]
enum QuickstartError {
    /// A step did not finish within [`STEP_TIMEOUT`].
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
    /// Something other than what the quickstart shows happened.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match &cli.mode {
        None => "quickstart",
        Some(Mode::Server(_)) => "quickstart server",
        Some(Mode::Client(_)) => "quickstart client",
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.mode {
            None => launch().await,
            Some(Mode::Server(args)) => server(args).await,
            Some(Mode::Client(args)) => client(args).await,
        }
    });
    // The server's stdin reader may still sit in a blocking read (after Ctrl-C); do not wait.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The launcher
// ---------------------------------------------------------------------------------------------

/// Issues the SVIDs, runs the server and the client as child processes, stops the server.
async fn launch() -> Result<(), QuickstartError> {
    // The children are this very executable in another mode, so nothing else must be built.
    let exe = std::env::current_exe().map_err(failed("find this executable's path"))?;
    let dir = tempfile::Builder::new()
        .prefix("mesh-quickstart-")
        .tempdir()
        .map_err(failed("create a temporary directory"))?;

    let trust_domain: TrustDomain = parse("trust domain", TRUST_DOMAIN)?;
    let ca = DevCa::generate(trust_domain).map_err(failed("create the development CA"))?;
    println!(
        "1. a development CA for {} issued two SVIDs into {}:",
        ca.trust_domain(),
        dir.path().display()
    );
    let server_dir = dir.path().join("inventory");
    let client_dir = dir.path().join("orders");
    for (name, id, out) in [
        ("inventory", SERVER_ID, &server_dir),
        ("orders", CLIENT_ID, &client_dir),
    ] {
        let id: SpiffeId = parse("SPIFFE ID", id)?;
        let svid = ca.issue(&id, SVID_TTL).map_err(failed("issue an SVID"))?;
        write_svid(out, &svid, &ca.bundle()).map_err(failed("write an SVID"))?;
        println!("   {name:<10} {id}");
    }

    println!();
    println!("2. starting the inventory service: HTTP/1.1 served inside HBONE tunnels");
    let mut server = spawn(&exe, "server", &identity_args(&server_dir), &[])?;
    let mut server_lines = BufReader::new(take(server.stdout.take(), "server stdout")?).lines();
    let server_stderr = relay(take(server.stderr.take(), "server stderr")?, "server", true);
    let addr = within("server: wait for its `listening on` line", async {
        loop {
            let line = server_lines
                .next_line()
                .await
                .map_err(failed("server: read its output"))?;
            let Some(line) = line else {
                return Err(QuickstartError::Unexpected(
                    "the server exited before it was listening".to_owned(),
                ));
            };
            println!("   [server] {line}");
            if let Some(addr) = listening_addr(&line) {
                return Ok(addr);
            }
        }
    })
    .await??;
    let server_stdout = tokio::spawn(relay_lines(server_lines, "server", false));

    println!();
    println!("3. running the orders client: one tunnel, one GET /stock");
    let extra = ["--server".to_owned(), addr.to_string()];
    let mut client = spawn(&exe, "client", &identity_args(&client_dir), &extra)?;
    let client_stdout = relay(
        take(client.stdout.take(), "client stdout")?,
        "client",
        false,
    );
    let client_stderr = relay(take(client.stderr.take(), "client stderr")?, "client", true);
    let status = within("client: run to completion", client.wait())
        .await?
        .map_err(failed("client: wait for it"))?;
    // Its output is complete once both pipes reached end-of-file.
    let client_out = join(client_stdout).await?;
    join(client_stderr).await?;
    if !status.success() {
        return Err(QuickstartError::Unexpected(format!(
            "the client failed ({status})"
        )));
    }
    if !client_out.contains("HTTP/1.1 200 OK") || !client_out.contains(CLIENT_ID) {
        return Err(QuickstartError::Unexpected(
            "the client's output lacks the 200 response naming its identity".to_owned(),
        ));
    }

    println!();
    println!("4. stopping the inventory service (closing its stdin)");
    drop(server.stdin.take());
    let status = within("server: drain and exit", server.wait())
        .await?
        .map_err(failed("server: wait for it"))?;
    join(server_stdout).await?;
    join(server_stderr).await?;
    if !status.success() {
        return Err(QuickstartError::Unexpected(format!(
            "the server failed ({status})"
        )));
    }

    println!();
    println!(
        "ok: orders reached inventory through an HBONE tunnel, and inventory answered knowing it was orders"
    );
    Ok(())
}

/// `--cert`, `--key` and `--bundle` for the SVID files in `dir`.
fn identity_args(dir: &Path) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        "--cert".to_owned(),
        file("svid.pem"),
        "--key".to_owned(),
        file("svid.key"),
        "--bundle".to_owned(),
        file("bundle.pem"),
    ]
}

/// Starts this executable in `mode`, all pipes captured; it is killed if the launcher bails out.
fn spawn(
    exe: &Path,
    mode: &str,
    identity: &[String],
    extra: &[String],
) -> Result<Child, QuickstartError> {
    let args: Vec<&str> = identity.iter().chain(extra).map(String::as_str).collect();
    println!("   $ quickstart {mode} {}", args.join(" "));
    Command::new(exe)
        .arg(mode)
        .args(identity)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| QuickstartError::Failed {
            step: "start a child process",
            reason: format!("{}: {e}", exe.display()),
        })
}

/// A child's pipe that was configured as piped.
fn take<T>(pipe: Option<T>, what: &str) -> Result<T, QuickstartError> {
    pipe.ok_or_else(|| QuickstartError::Unexpected(format!("{what} was not captured")))
}

/// The address in a `listening on ADDR as ID` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("listening on ")?;
    let (addr, _id) = rest.split_once(" as ")?;
    addr.parse().ok()
}

/// Prints a child's output line by line as `[who] line`, and returns all of it at its end.
fn relay<R>(pipe: R, who: &'static str, to_stderr: bool) -> JoinHandle<String>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(relay_lines(BufReader::new(pipe).lines(), who, to_stderr))
}

async fn relay_lines<R>(
    mut lines: tokio::io::Lines<BufReader<R>>,
    who: &'static str,
    to_stderr: bool,
) -> String
where
    R: AsyncRead + Unpin,
{
    let mut all = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if to_stderr {
            eprintln!("   [{who}] {line}");
        } else {
            println!("   [{who}] {line}");
        }
        all.push_str(&line);
        all.push('\n');
    }
    all
}

/// Waits for a relay task (bounded: its child has exited, so its pipe ends).
async fn join(task: JoinHandle<String>) -> Result<String, QuickstartError> {
    within("collect a child's output", task)
        .await?
        .map_err(failed("collect a child's output"))
}

// ---------------------------------------------------------------------------------------------
// `quickstart server`
// ---------------------------------------------------------------------------------------------

/// The inventory service: accepts HBONE tunnels and serves HTTP/1.1 inside each.
async fn server(args: ServerArgs) -> Result<(), QuickstartError> {
    let (source, credentials) = load_identity(&args.identity)?;
    // Rotation: re-read the files every second and swap new material in; no restart needed.
    let _watch = source.watch(credentials.clone(), RELOAD_INTERVAL);
    let tls = MeshTls::new(credentials, TlsOptions::default())
        .map_err(failed("build the TLS configuration"))?;
    let me = tls.credentials().svid().spiffe_id().clone();

    let mut config = HboneServerConfig::default();
    config.listen = args.listen;
    let server = HboneServer::bind(tls, config, Delivery::Handler(Arc::new(serve_http)))
        .await
        .map_err(failed("listen for HBONE"))?;
    println!("listening on {} as {me}", server.local_addr());

    tokio::select! {
        () = stdin_closed() => println!("stdin closed: draining open tunnels, then stopping"),
        _ = tokio::signal::ctrl_c() => println!("Ctrl-C: draining open tunnels, then stopping"),
    }
    let cut = server.shutdown(DRAIN_DEADLINE).await;
    println!("stopped ({cut} tunnels cut off)");
    Ok(())
}

/// Resolves when stdin reaches its end (or fails): the launcher's way of saying "stop".
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Serves one tunnel: the tunnel is a byte stream, so hyper runs HTTP/1.1 over it unchanged.
/// The caller's identity comes from the tunnel, verified by mTLS, not from anything in HTTP.
fn serve_http(tunnel: InboundTunnel) {
    let InboundTunnel { peer, stream, .. } = tunnel;
    let caller = peer.clone();
    let peer = Arc::new(peer);
    tokio::spawn(async move {
        let service = service_fn(move |request| {
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(respond(&peer, &request)) }
        });
        // Tunnels carry TCP's half-close: a client may end its side right after the request
        // (netcat, `meshctl hbone connect`) and still expect the answer.
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            eprintln!("HTTP connection from {caller} failed: {e}");
        }
    });
}

/// The inventory API: `GET /stock` answers with the stock and the caller's identity.
fn respond(peer: &SpiffeId, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/stock") => (
            StatusCode::OK,
            format!(
                r#"{{"service":"inventory","caller":{},"item":"widgets","in_stock":42}}"#,
                json_string(peer.as_str())
            ),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            r#"{"error":"no such resource; try GET /stock"}"#.to_owned(),
        ),
    };
    println!(
        "{} {} from {peer}: {status}",
        request.method(),
        request.uri().path()
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// `quickstart client`
// ---------------------------------------------------------------------------------------------

/// The orders client: one tunnel to inventory, one HTTP/1.1 request through it.
async fn client(args: ClientArgs) -> Result<(), QuickstartError> {
    let (_, credentials) = load_identity(&args.identity)?;
    let tls = MeshTls::new(credentials, TlsOptions::default())
        .map_err(failed("build the TLS configuration"))?;
    let me = tls.credentials().svid().spiffe_id().clone();
    let client = HboneClient::new(tls, HboneClientConfig::default());
    let dest = Destination {
        hbone_addr: args.server,
        target_port: APP_PORT,
        expected: ExpectedIdentities::one(args.expect_id.clone()),
    };

    println!(
        "opening an HBONE tunnel to {} via {} as {me}",
        dest.authority(),
        dest.hbone_addr
    );
    let stream = step("open the tunnel", client.connect(&dest)).await?;
    // The pooled connection is reused: no second handshake.
    let server_id = step("read the server's identity", client.peer_identity(&dest)).await?;
    println!("tunnel open; mTLS verified the server as {server_id}");

    let (mut sender, connection) = step(
        "HTTP/1.1 handshake",
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)),
    )
    .await?;
    // `without_shutdown`: hand the tunnel back when HTTP is done, to close it like TCP below.
    let connection = tokio::spawn(connection.without_shutdown());
    let request = Request::get("/stock")
        .header(HOST, dest.authority().to_string())
        .body(Empty::new())
        .map_err(failed("build the request"))?;
    println!("GET /stock");
    let response = step("send GET /stock", sender.send_request(request)).await?;
    let status = response.status();
    let body = step("read the response body", response.into_body().collect())
        .await?
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    println!("HTTP/1.1 {status}");
    println!("{body}");

    // Done: dropping the request side ends the HTTP connection. Then close the tunnel as TCP
    // closes: send our end (END_STREAM), and wait for the server's, so that this process does
    // not exit (and drop the connection) while the server is still closing its side.
    drop(sender);
    let parts = step("finish the HTTP connection", async move {
        connection
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    })
    .await?;
    let mut stream = parts.io.into_inner();
    step("close the tunnel", stream.shutdown()).await?;
    let mut rest = Vec::new();
    step(
        "wait for the server to close the tunnel",
        stream.read_to_end(&mut rest),
    )
    .await?;

    if status != StatusCode::OK {
        return Err(QuickstartError::Unexpected(format!(
            "inventory answered {status}"
        )));
    }
    if !body.contains(&json_string(me.as_str())) {
        return Err(QuickstartError::Unexpected(format!(
            "inventory's answer does not name the caller {me}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Loads an SVID and its bundle from files, checking that they belong together.
fn load_identity(args: &Identity) -> Result<(FileSource, Credentials), QuickstartError> {
    let source = FileSource {
        cert: args.cert.clone(),
        key: args.key.clone(),
        bundle: args.bundle.clone(),
        federated: Vec::new(),
    };
    let credentials = source
        .credentials()
        .map_err(failed("load the SVID and trust bundle"))?;
    Ok((source, credentials))
}

/// Runs `fut` with the step timeout, handing back its own result.
async fn within<F: Future>(what: &'static str, fut: F) -> Result<F::Output, QuickstartError> {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .map_err(|_| QuickstartError::Timeout { step: what })
}

/// Runs a fallible `fut` with the step timeout; its error becomes a [`QuickstartError`].
async fn step<T, E: Display>(
    what: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, QuickstartError> {
    within(what, fut).await?.map_err(failed(what))
}

/// Builds the error for a failed step, for use with `map_err`.
fn failed<E: Display>(what: &'static str) -> impl Fn(E) -> QuickstartError {
    move |e| QuickstartError::Failed {
        step: what,
        reason: e.to_string(),
    }
}

/// Parses one of the quickstart's constants.
fn parse<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, QuickstartError>
where
    T::Err: Display,
{
    value.parse().map_err(|e| {
        QuickstartError::Unexpected(format!("the {what} {value:?} does not parse: {e}"))
    })
}

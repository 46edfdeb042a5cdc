//! Runs `meshctl hbone serve` and `meshctl hbone connect` as processes, with certificates made by
//! `meshctl ca`, over loopback: echo (small, empty and 1 MiB, which needs half-close to end),
//! forwarding to a TCP target, refusals (wrong identity, unreachable target, bad authority),
//! rotation of the server's SVID, and the graceful drain on SIGTERM.
//!
//! Every wait is bounded by [`STEP`], and nothing sleeps to synchronize: the server is ready when
//! it prints its `listening on` line, and log lines are awaited as they arrive.

use std::{
    net::SocketAddr,
    path::Path,
    process::{ExitStatus, Output, Stdio},
    time::Duration,
};

use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    process::{Child, ChildStdout, Command},
    sync::mpsc,
};

/// Upper bound for every step; on loopback each takes milliseconds.
const STEP: Duration = Duration::from_secs(30);
const SERVER_ID: &str = "spiffe://example.org/ns/shop/sa/inventory";
const CLIENT_ID: &str = "spiffe://example.org/ns/shop/sa/web";

fn meshctl() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshctl"));
    command
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs meshctl to completion with `input` on stdin (written concurrently, so large inputs and
/// outputs cannot deadlock on full pipes).
async fn run(args: &[String], input: &[u8]) -> Output {
    let mut child = meshctl()
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start meshctl");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    // A child that fails early closes its stdin; that write error is not what is under test.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        // Dropping stdin closes it: end-of-file for meshctl.
    });
    let output = tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("meshctl {args:?} did not finish within {STEP:?}"))
        .expect("wait for meshctl");
    writer.await.expect("stdin writer");
    output
}

fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout ({} bytes): {}\nstderr:\n{}",
        out.status.code(),
        out.stdout.len(),
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(400)]),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A development CA with SVIDs for a server and a client, made with `meshctl ca`.
struct Pki {
    tmp: TempDir,
}

impl Pki {
    async fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let ca = tmp.path().join("ca");
        let init = run(
            &strings(&[
                "ca",
                "init",
                "--trust-domain",
                "example.org",
                "--out",
                path(&ca),
            ]),
            b"",
        )
        .await;
        assert!(init.status.success(), "{}", describe(&init));
        let pki = Self { tmp };
        pki.issue("server", SERVER_ID).await;
        pki.issue("client", CLIENT_ID).await;
        pki
    }

    /// (Re-)issues the SVID in `<tmp>/<name>`.
    async fn issue(&self, name: &str, id: &str) {
        let ca = self.tmp.path().join("ca");
        let out = self.tmp.path().join(name);
        let issue = run(
            &strings(&[
                "ca",
                "issue",
                "--ca",
                path(&ca),
                "--id",
                id,
                "--out",
                path(&out),
            ]),
            b"",
        )
        .await;
        assert!(issue.status.success(), "{}", describe(&issue));
    }

    /// `--cert`, `--key` and `--bundle` for the SVID in `<tmp>/<name>`.
    fn identity(&self, name: &str) -> Vec<String> {
        let dir = self.tmp.path().join(name);
        let file = |f: &str| path(&dir.join(f)).to_owned();
        vec![
            "--cert".into(),
            file("svid.pem"),
            "--key".into(),
            file("svid.key"),
            "--bundle".into(),
            file("bundle.pem"),
        ]
    }

    /// Runs `hbone connect` as the client, through `server`, with `input` on stdin.
    async fn connect(&self, to: SocketAddr, authority: &str, expect: &str, input: &[u8]) -> Output {
        run(&self.connect_args(to, authority, expect), input).await
    }

    fn connect_args(&self, to: SocketAddr, authority: &str, expect: &str) -> Vec<String> {
        let mut args = strings(&[
            "hbone",
            "connect",
            "--to",
            &to.to_string(),
            "--authority",
            authority,
            "--expect-id",
            expect,
        ]);
        args.extend(self.identity("client"));
        args
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A running `meshctl hbone serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// stderr, line by line, as it arrives.
    logs: mpsc::UnboundedReceiver<String>,
    /// Every log line received so far, for assertion messages.
    seen: Vec<String>,
    /// stdout after the `listening on` line.
    stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts the server with the `server` SVID and `delivery` (`--echo` or `--forward ADDR`),
    /// and waits for its `listening on ADDR as ID` line.
    async fn start(pki: &Pki, delivery: &[&str]) -> Self {
        Self::start_with(pki, delivery, &[]).await
    }

    /// [`start`](Self::start) with more arguments.
    async fn start_with(pki: &Pki, delivery: &[&str], extra: &[&str]) -> Self {
        let mut args = strings(&["hbone", "serve", "--listen", "127.0.0.1:0"]);
        args.extend(pki.identity("server"));
        args.extend(strings(delivery));
        args.extend(strings(extra));
        let mut child = meshctl().args(&args).spawn().expect("start meshctl serve");

        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, logs) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });

        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut first = String::new();
        let read = tokio::time::timeout(STEP, stdout.read_line(&mut first)).await;
        let mut server = Self {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            logs,
            seen: Vec::new(),
            stdout,
        };
        let parsed = first
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_once(" as "))
            .and_then(|(addr, id)| Some((addr.parse::<SocketAddr>().ok()?, id.to_owned())));
        match (read, parsed) {
            (Ok(Ok(_)), Some((addr, id))) => {
                assert_eq!(id, SERVER_ID, "{first}");
                assert_eq!(addr.ip().to_string(), "127.0.0.1", "{first}");
                assert_ne!(addr.port(), 0, "{first}");
                server.addr = addr;
                server
            }
            (read, _) => {
                let _ = server.child.start_kill();
                let status = tokio::time::timeout(STEP, server.child.wait()).await;
                let logs = server.drain_logs().await;
                panic!(
                    "no `listening on ADDR as ID` line: read {read:?}, line {first:?}, status {status:?}\nstderr:\n{logs}"
                );
            }
        }
    }

    /// The next line the server prints on stdout.
    async fn next_stdout_line(&mut self) -> String {
        let mut line = String::new();
        match tokio::time::timeout(STEP, self.stdout.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => line.trim_end().to_owned(),
            other => panic!(
                "no further stdout line within {STEP:?}: {other:?}\nstderr:\n{}",
                self.drain_logs().await
            ),
        }
    }

    /// Waits until a log line containing `needle` arrives, and returns it.
    async fn wait_for_log(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(STEP, async {
            while let Some(line) = self.logs.recv().await {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "the server's stderr ended without {needle:?}:\n{}",
                self.seen.join("\n")
            ),
            Err(_) => panic!(
                "no log line with {needle:?} within {STEP:?}:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Waits for the process to exit on its own.
    async fn wait(&mut self) -> ExitStatus {
        match tokio::time::timeout(STEP, self.child.wait()).await {
            Ok(status) => status.expect("wait for meshctl serve"),
            Err(_) => panic!(
                "meshctl serve did not exit within {STEP:?}:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// The rest of stderr, after the process has exited (or been killed).
    async fn drain_logs(&mut self) -> String {
        while let Ok(Some(line)) = tokio::time::timeout(STEP, self.logs.recv()).await {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

/// A 1 MiB payload that is not periodic at any small length, so a lost or repeated chunk shows.
fn payload() -> Vec<u8> {
    (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

#[tokio::test]
async fn echo_returns_exactly_what_was_sent() {
    let pki = Pki::new().await;
    let server = Server::start(&pki, &["--echo"]).await;

    let out = pki
        .connect(
            server.addr,
            "127.0.0.1:8080",
            SERVER_ID,
            b"hello through hbone\n",
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout, b"hello through hbone\n", "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));

    // Nothing to send: stdin's immediate end half-closes the tunnel and the echo ends it.
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"")
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
}

#[tokio::test]
async fn echo_carries_one_mebibyte_and_ends_on_half_close() {
    let pki = Pki::new().await;
    let server = Server::start(&pki, &["--echo"]).await;
    let data = payload();
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, &data)
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout.len(), data.len(), "{}", describe(&out));
    assert!(
        out.stdout == data,
        "the echoed bytes differ from the sent ones"
    );
}

#[tokio::test]
async fn wrong_expected_identity_is_refused_with_both_identities_named() {
    let pki = Pki::new().await;
    let server = Server::start(&pki, &["--echo"]).await;
    let wrong = "spiffe://example.org/ns/shop/sa/payments";
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", wrong, b"secret")
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.starts_with("meshctl: "), "{}", describe(&out));
    assert_eq!(err.lines().count(), 1, "{}", describe(&out));
    assert!(
        err.contains(wrong) && err.contains(SERVER_ID),
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn forward_reaches_a_tcp_target_and_logs_the_peer() {
    // The target reads to end-of-file (which needs the client's half-close to travel through
    // both hops), then answers and closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let target_task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.unwrap();
        let answer = format!("target read {:?}", String::from_utf8_lossy(&got));
        tcp.write_all(answer.as_bytes()).await.unwrap();
        tcp.shutdown().await.unwrap();
    });

    let pki = Pki::new().await;
    let mut server = Server::start(&pki, &["--forward", &target.to_string()]).await;
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"ping")
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout, b"target read \"ping\"", "{}", describe(&out));
    tokio::time::timeout(STEP, target_task)
        .await
        .expect("target finished")
        .expect("target task");

    let line = server
        .wait_for_log(&format!("tunnel from {CLIENT_ID}"))
        .await;
    assert!(line.contains("target=127.0.0.1:8080"), "{line}");
}

#[tokio::test]
async fn unreachable_forward_target_is_a_503() {
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let pki = Pki::new().await;
    let server = Server::start(&pki, &["--forward", &closed.to_string()]).await;
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"ping")
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("meshctl: ") && err.contains("HTTP 503"),
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn authority_ip_other_than_the_dialed_ip_is_bad_input() {
    let pki = Pki::new().await;
    // Rejected before any dialing, so no server is needed.
    let to: SocketAddr = "127.0.0.1:15008".parse().unwrap();
    for authority in ["127.0.0.2:8080", "inventory.shop:8080"] {
        let out = pki.connect(to, authority, SERVER_ID, b"").await;
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let err = stderr(&out);
        assert!(err.starts_with("meshctl: invalid --authority"), "{err}");
        assert!(
            err.contains("HBONE requires the CONNECT authority's IP to be the IP dialed with --to"),
            "{err}"
        );
        assert!(err.contains("use --authority 127.0.0.1:8080"), "{err}");
    }
}

#[tokio::test]
async fn bad_arguments_and_files_exit_2() {
    let pki = Pki::new().await;
    let to: SocketAddr = "127.0.0.1:15008".parse().unwrap();

    let out = pki
        .connect(to, "127.0.0.1:8080", "not-a-spiffe-id", b"")
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).starts_with("meshctl: invalid --expect-id"),
        "{}",
        describe(&out)
    );

    // The client's certificate with the server's key.
    let mut args = pki.connect_args(to, "127.0.0.1:8080", SERVER_ID);
    let key = args.iter().position(|a| a == "--key").unwrap() + 1;
    args[key] = args[key].replace("client", "server");
    let out = run(&args, b"").await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("cannot load this workload's identity"),
        "{}",
        describe(&out)
    );

    // serve needs exactly one of --echo and --forward.
    for delivery in [vec![], vec!["--echo", "--forward", "127.0.0.1:1"]] {
        let mut args = strings(&["hbone", "serve", "--listen", "127.0.0.1:0"]);
        args.extend(pki.identity("server"));
        args.extend(strings(&delivery));
        let out = run(&args, b"").await;
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    }
}

#[tokio::test]
async fn a_rotated_server_svid_is_picked_up_without_a_restart() {
    let pki = Pki::new().await;
    let mut server = Server::start(&pki, &["--echo"]).await;
    // `ca issue` replaces each file atomically; the server polls them every second.
    pki.issue("server", SERVER_ID).await;
    let line = server.wait_for_log("reloaded the SVID").await;
    assert!(line.contains(SERVER_ID), "{line}");
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"after rotation")
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout, b"after rotation", "{}", describe(&out));
}

/// SIGTERM drains: the open tunnel keeps working until its client finishes, then the server
/// exits 0 on its own.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_lets_open_tunnels_finish_then_exits_0() {
    let pki = Pki::new().await;
    let mut server = Server::start(&pki, &["--echo"]).await;

    let mut client = meshctl()
        .args(pki.connect_args(server.addr, "127.0.0.1:8080", SERVER_ID))
        .stdin(Stdio::piped())
        .spawn()
        .expect("start meshctl connect");
    let mut stdin = client.stdin.take().expect("stdin is piped");
    let mut stdout = client.stdout.take().expect("stdout is piped");
    // One byte there and back: the tunnel is open.
    stdin.write_all(b"a").await.unwrap();
    let mut first = [0u8; 1];
    tokio::time::timeout(STEP, stdout.read_exact(&mut first))
        .await
        .expect("echo of the first byte")
        .expect("read the first byte");
    assert_eq!(&first, b"a");

    let pid = server.child.id().expect("server is running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    server.wait_for_log("SIGTERM received: draining").await;

    // Still served while draining.
    stdin.write_all(b"bc").await.unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, stdout.read_to_end(&mut rest))
        .await
        .expect("echo of the rest")
        .expect("read the rest");
    assert_eq!(rest, b"bc");
    let client_status = tokio::time::timeout(STEP, client.wait())
        .await
        .expect("client exits")
        .expect("wait for client");
    assert!(client_status.success(), "{client_status:?}");

    let status = server.wait().await;
    let logs = server.drain_logs().await;
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains(&format!("tunnel from {CLIENT_ID}")), "{logs}");
    assert!(logs.contains("stopped; every tunnel finished"), "{logs}");
}

/// `GET path` over HTTP/1.1 on a fresh connection: the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    tokio::time::timeout(STEP, async {
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the admin endpoint");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut response = Vec::new();
        tcp.read_to_end(&mut response)
            .await
            .expect("read the response");
        let response = String::from_utf8(response).expect("the admin endpoint answers text");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        (status, body.to_owned())
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} from {addr} took longer than {STEP:?}"))
}

#[tokio::test]
async fn admin_flag_serves_readiness_metrics_and_config_dump() {
    let pki = Pki::new().await;
    let mut server = Server::start_with(&pki, &["--echo"], &["--admin", "127.0.0.1:0"]).await;
    let line = server.next_stdout_line().await;
    let admin: SocketAddr = line
        .strip_prefix("admin endpoint on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("expected `admin endpoint on ADDR`, got {line:?}"));
    assert_eq!(admin.ip().to_string(), "127.0.0.1");

    let (status, body) = http_get(admin, "/healthz/ready").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    // One echo tunnel, then the destination's TCP metrics show it.
    let out = pki
        .connect(server.addr, "127.0.0.1:8080", SERVER_ID, b"counted\n")
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.stdout, b"counted\n");

    let (status, metrics) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let opened = metrics
        .lines()
        .find(|l| l.starts_with("istio_tcp_connections_opened_total{"))
        .unwrap_or_else(|| panic!("no istio_tcp_connections_opened_total in\n{metrics}"));
    assert!(opened.contains("reporter=\"destination\""), "{opened}");
    assert!(
        opened.contains(&format!("source_principal=\"{CLIENT_ID}\"")),
        "{opened}"
    );
    assert!(
        opened.contains(&format!("destination_principal=\"{SERVER_ID}\"")),
        "{opened}"
    );
    assert!(opened.ends_with(" 1"), "{opened}");
    // The tunnel ends when the client has read the echo; its close is recorded by then or soon
    // after, so only its bytes are checked (the tunnel sent 8 of them back).
    let received = metrics
        .lines()
        .find(|l| l.starts_with("istio_tcp_received_bytes_total{"))
        .unwrap_or_else(|| panic!("no istio_tcp_received_bytes_total in\n{metrics}"));
    assert!(received.ends_with(" 8"), "{received}");
    assert!(
        metrics.contains(&format!(
            "mesh_certificate_expiry_timestamp_seconds{{spiffe_id=\"{SERVER_ID}\"}}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("mesh_tls_handshakes_total{direction=\"inbound\",result=\"success\""),
        "{metrics}"
    );
    let (status, same) = http_get(admin, "/stats/prometheus").await;
    assert_eq!(status, 200);
    assert!(
        same.contains("istio_tcp_connections_opened_total{"),
        "{same}"
    );

    let (status, dump) = http_get(admin, "/config_dump").await;
    assert_eq!(status, 200, "{dump}");
    assert!(
        dump.contains(&format!("\"spiffe_id\": \"{SERVER_ID}\"")),
        "{dump}"
    );
    assert!(
        dump.contains(&format!("\"listen\": \"{}\"", server.addr)),
        "{dump}"
    );
    assert!(dump.contains("\"mode\": \"echo\""), "{dump}");

    // `meshctl status` reads the same endpoint.
    let status = run(&strings(&["status", &admin.to_string()]), b"").await;
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(SERVER_ID),
        "{}",
        describe(&status)
    );

    let (status, level) = http_get(admin, "/logging").await;
    assert_eq!((status, level.as_str()), (200, "filter: info\n"));
}

#[tokio::test]
async fn admin_flag_needs_an_address() {
    let pki = Pki::new().await;
    let mut args = strings(&["hbone", "serve", "--listen", "127.0.0.1:0", "--echo"]);
    args.extend(pki.identity("server"));
    args.extend(strings(&["--admin", "localhost:15020"]));
    let out = run(&args, b"").await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("--admin"), "{}", describe(&out));
}

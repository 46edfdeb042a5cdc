//! Shared by the `meshctl hbone` process tests: the CLI runner, a development PKI made with
//! `meshctl ca`, a running `hbone serve` and a tiny HTTP GET for its admin endpoint.

#![allow(dead_code)]

pub(crate) use std::{
    net::SocketAddr,
    path::Path,
    process::{ExitStatus, Output, Stdio},
    time::Duration,
};

pub(crate) use tempfile::TempDir;
pub(crate) use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdout, Command},
    sync::mpsc,
};

/// Upper bound for every step; on loopback each takes milliseconds.
pub(crate) const STEP: Duration = Duration::from_secs(30);
pub(crate) const SERVER_ID: &str = "spiffe://example.org/ns/shop/sa/inventory";
pub(crate) const CLIENT_ID: &str = "spiffe://example.org/ns/shop/sa/web";

pub(crate) fn meshctl() -> Command {
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
pub(crate) async fn run(args: &[String], input: &[u8]) -> Output {
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

pub(crate) fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout ({} bytes): {}\nstderr:\n{}",
        out.status.code(),
        out.stdout.len(),
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(400)]),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A development CA with SVIDs for a server and a client, made with `meshctl ca`.
pub(crate) struct Pki {
    pub(crate) tmp: TempDir,
}

impl Pki {
    pub(crate) async fn new() -> Self {
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
    pub(crate) async fn issue(&self, name: &str, id: &str) {
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
    pub(crate) fn identity(&self, name: &str) -> Vec<String> {
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
    pub(crate) async fn connect(
        &self,
        to: SocketAddr,
        authority: &str,
        expect: &str,
        input: &[u8],
    ) -> Output {
        run(&self.connect_args(to, authority, expect), input).await
    }

    pub(crate) fn connect_args(
        &self,
        to: SocketAddr,
        authority: &str,
        expect: &str,
    ) -> Vec<String> {
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

pub(crate) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A running `meshctl hbone serve`, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// stderr, line by line, as it arrives.
    pub(crate) logs: mpsc::UnboundedReceiver<String>,
    /// Every log line received so far, for assertion messages.
    pub(crate) seen: Vec<String>,
    /// stdout after the `listening on` line.
    pub(crate) stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts the server with the `server` SVID and `delivery` (`--echo` or `--forward ADDR`),
    /// and waits for its `listening on ADDR as ID` line.
    pub(crate) async fn start(pki: &Pki, delivery: &[&str]) -> Self {
        Self::start_with(pki, delivery, &[]).await
    }

    /// [`start`](Self::start) with more arguments.
    pub(crate) async fn start_with(pki: &Pki, delivery: &[&str], extra: &[&str]) -> Self {
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
    pub(crate) async fn next_stdout_line(&mut self) -> String {
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
    pub(crate) async fn wait_for_log(&mut self, needle: &str) -> String {
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
    pub(crate) async fn wait(&mut self) -> ExitStatus {
        match tokio::time::timeout(STEP, self.child.wait()).await {
            Ok(status) => status.expect("wait for meshctl serve"),
            Err(_) => panic!(
                "meshctl serve did not exit within {STEP:?}:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// The rest of stderr, after the process has exited (or been killed).
    pub(crate) async fn drain_logs(&mut self) -> String {
        while let Ok(Some(line)) = tokio::time::timeout(STEP, self.logs.recv()).await {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

/// A 1 MiB payload that is not periodic at any small length, so a lost or repeated chunk shows.
pub(crate) fn payload() -> Vec<u8> {
    (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// `GET path` over HTTP/1.1 on a fresh connection: the status code and the body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
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

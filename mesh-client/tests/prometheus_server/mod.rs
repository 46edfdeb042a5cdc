//! A real Prometheus for tests: Debian's `prometheus` on a free loopback port, with its own
//! configuration and storage in a temporary directory, scraping given targets every second;
//! killed when dropped.
//!
//! When `prometheus` is not installed the tests skip with a message, unless the `CI`
//! environment variable is set: then they fail, so CI cannot pass without exercising it.

#![allow(dead_code, unreachable_pub)]

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// How long Prometheus may take to become ready.
const STARTUP: Duration = Duration::from_secs(60);

fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PROMETHEUS_BIN") {
        return Some(path.into());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    [PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")]
        .into_iter()
        .chain(on_path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port()
}

/// One `prometheus` process.
pub struct Prometheus {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Child,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` at `path` every second and waits until it is
    /// ready; `None` (after saying why) when `prometheus` is missing and `CI` is unset.
    pub async fn start(targets: &[SocketAddr], path: &str) -> Option<Self> {
        let Some(binary) = prometheus_binary() else {
            let fix = "install it with `apt-get install prometheus` (.ci/run does), or set \
                       PROMETHEUS_BIN";
            if std::env::var_os("CI").is_some() {
                panic!("prometheus is not installed and CI is set: {fix}");
            }
            eprintln!("SKIPPED: prometheus is not installed; {fix}");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: mesh\n    metrics_path: {path}\n    \
             static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        // Another process may take the port between picking and binding it: try a few.
        let mut dir = Some(dir);
        for _ in 0..5 {
            let here = dir.take().expect("the directory is handed back on retry");
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let log = std::fs::File::create(here.path().join("prometheus.log")).expect("log file");
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    here.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .expect("start prometheus");
            let mut server = Self {
                dir: here,
                addr,
                child,
            };
            if server.wait_ready().await {
                return Some(server);
            }
            let log = server.log();
            if !log.contains("address already in use") {
                panic!("prometheus did not become ready within {STARTUP:?}; its log:\n{log}");
            }
            // Keep the directory (and the config in it) for the next port; dropping the server
            // kills the process.
            dir = Some(std::mem::replace(
                &mut server.dir,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
        panic!("prometheus could not bind any of 5 free ports");
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + STARTUP;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok((200, _)) = self.get("/-/ready").await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The web address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Prometheus' own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GETs `path` from the web API: status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let uri = format!("http://{}{path}", self.addr)
            .parse()
            .map_err(|e| format!("{e}"))?;
        let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Runs an instant PromQL query: the result vector as (labels, value) pairs.
    pub async fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let (status, body) = self
            .get(&format!("/api/v1/query?query={}", encode(promql)))
            .await
            .unwrap_or_else(|e| panic!("query {promql}: {e}"));
        assert_eq!(status, 200, "query {promql}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON answer");
        assert_eq!(answer["status"], "success", "{body}");
        answer["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .expect("a value")
                    .parse()
                    .expect("a number");
                (r["metric"].clone(), value)
            })
            .collect()
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

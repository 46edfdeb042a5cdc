//! A real etcd server for tests: Debian's `etcd-server` started on free loopback ports in a
//! temporary directory, stopped when dropped.
#![allow(dead_code, unreachable_pub)]

use std::{
    net::TcpListener,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use etcd_client::Client;
use mesh_client::discovery::EtcdConfig;
use mesh_core::resilience::BackoffConfig;
use tokio::process::{Child, Command};

use super::{SLOW, TTL};

pub(crate) fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ETCD_BIN") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin"))
        .chain(on_path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "etcd is not installed, and these tests need a real etcd server: \
                 run `apt-get install etcd-server` (Debian/Ubuntu; .ci/run installs it), \
                 or set ETCD_BIN to an etcd binary"
            )
        })
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port()
}

/// One single-member etcd cluster in a temporary directory, killed when dropped.
pub(crate) struct Etcd {
    dir: tempfile::TempDir,
    client_url: String,
    peer_url: String,
    child: Option<Child>,
}

impl Etcd {
    /// Picks ports and a data directory without starting anything.
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            child: None,
        }
    }

    /// Starts a fresh etcd and waits until it answers.
    pub(crate) async fn start() -> Self {
        let mut etcd = Self::new();
        etcd.run().await;
        etcd
    }

    /// Starts etcd on this data directory and these ports (again), waiting until it answers.
    pub(crate) async fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let child = Command::new(etcd_binary())
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.client_url))
            .arg(format!("--advertise-client-urls={}", self.client_url))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster=test={}", self.peer_url))
            .arg("--initial-cluster-state=new")
            // A faster election makes start-up and restart quicker; it also lowers etcd's
            // minimum lease TTL below the 2 s the tests use.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (install etcd with `apt-get install etcd-server`)",
                    etcd_binary().display()
                )
            });
        self.child = Some(child);
        self.wait_ready().await;
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Polls with a real request until etcd serves it.
    pub(crate) async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(1), async {
                let mut client = Client::connect([self.client_url.as_str()], None).await?;
                client.get("ready", None).await
            })
            .await;
            if let Ok(Ok(_)) = attempt {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("etcd exited with {status}:\n{}", self.log_tail());
            }
            assert!(
                started.elapsed() < SLOW,
                "etcd did not answer on {} within {SLOW:?}:\n{}",
                self.client_url,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills etcd (SIGKILL: no goodbye to clients) and waits until it is gone.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill etcd");
        }
    }

    /// Deletes the data directory of a killed etcd: the next start is a brand-new cluster.
    pub(crate) fn wipe(&self) {
        assert!(self.child.is_none(), "kill etcd first");
        std::fs::remove_dir_all(self.dir.path().join("data")).expect("wipe etcd data");
    }

    /// Settings for the code under test: short timeouts and backoff, the short lease.
    pub(crate) fn config(&self) -> EtcdConfig {
        EtcdConfig::new([self.client_url.clone()])
            .with_prefix("/test/")
            .with_request_timeout(Duration::from_secs(2))
            .with_reconnect_backoff(BackoffConfig {
                base: Duration::from_millis(50),
                max: Duration::from_millis(500),
            })
            .with_lease_ttl(TTL)
    }

    pub(crate) async fn client(&self) -> Client {
        Client::connect([self.client_url.as_str()], None)
            .await
            .expect("etcd client")
    }
}

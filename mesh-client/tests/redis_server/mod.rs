//! A real Redis for tests: Debian's `redis-server` on a free loopback port, without
//! persistence, in a temporary directory; killed when dropped.
//!
//! When `redis-server` is not installed the tests skip with a message, unless the `CI`
//! environment variable is set: then they fail, so CI cannot pass without exercising Redis.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long Redis may take to start answering.
const STARTUP: Duration = Duration::from_secs(10);

fn redis_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_SERVER_BIN") {
        return Some(path.into());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    [PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")]
        .into_iter()
        .chain(on_path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port()
}

/// One `redis-server` process.
pub(crate) struct RedisServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING; `None` (after saying why) when
    /// `redis-server` is missing and `CI` is unset.
    pub(crate) fn start() -> Option<Self> {
        let Some(binary) = redis_binary() else {
            let fix = "install it with `apt-get install redis-server` (.ci/run does), or set \
                       REDIS_SERVER_BIN";
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is not installed and CI is set: {fix}");
            }
            eprintln!("SKIPPED: redis-server is not installed; {fix}");
            return None;
        };
        let mut server = Self {
            binary,
            dir: tempfile::tempdir().expect("tempdir"),
            port: 0,
            child: None,
        };
        // Another process may take the port between picking and binding it: try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.run() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the process on `self.port`; whether it answered PING in time.
    fn run(&mut self) -> bool {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false; // exited: port taken
                }
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer PING within {STARTUP:?}");
    }

    /// Whether the server answers `PING` right now.
    pub(crate) fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Runs one command (inline protocol, no spaces inside arguments) and returns the raw
    /// reply's first line, for inspecting the counters from the outside.
    pub(crate) fn command(&self, command: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("read timeout");
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("send command");
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
            reply.push(byte[0]);
        }
        String::from_utf8_lossy(&reply).trim_end().to_owned()
    }

    /// Kills the server (SIGKILL): connections break at once.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (with empty data: nothing is persisted).
    pub(crate) fn restart(&mut self) {
        self.kill();
        assert!(
            self.run(),
            "redis-server could not rebind port {}",
            self.port
        );
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing is answered.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    /// Unfreezes it (SIGCONT).
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

//! Runs the `mesh-demo` binary and checks it shows what its README promises: both verified
//! SPIFFE IDs for the accepted connection, and the typed rejection of the wrong identity.

use std::{
    io::Read,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// Generous bound for the whole demo (it takes well under a second), so a hang fails the test
/// instead of stalling the suite.
const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run_demo() -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-demo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mesh-demo");
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let stdout = thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll mesh-demo") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mesh-demo did not finish within {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run {
        success: status.success(),
        stdout: stdout.join().expect("stdout reader").expect("read stdout"),
        stderr: stderr.join().expect("stderr reader").expect("read stderr"),
    }
}

#[test]
fn demo_shows_both_identities_and_the_rejection() {
    let run = run_demo();
    let all = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.success, "mesh-demo failed\n{all}");

    let line = |prefix: &str| {
        run.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{all}"))
            .to_owned()
    };
    assert!(
        line("server verified the client as:")
            .ends_with("spiffe://demo.mesh.local/ns/shop/sa/orders"),
        "{all}"
    );
    assert!(
        line("client verified the server as:")
            .ends_with("spiffe://demo.mesh.local/ns/shop/sa/inventory"),
        "{all}"
    );
    assert!(line("TLS version:").ends_with("TLS 1.3"), "{all}");
    assert!(line("ALPN protocol:").ends_with("h2"), "{all}");
    assert!(line("server -> client:").contains("orders"), "{all}");

    let rejection = line("client refused the server:");
    assert!(
        rejection.contains("spiffe://demo.mesh.local/ns/shop/sa/payments")
            && rejection.contains("spiffe://demo.mesh.local/ns/shop/sa/inventory"),
        "the rejection should name both the expected and the presented identity\n{all}"
    );
    assert!(line("typed error:").contains("UnexpectedIdentity"), "{all}");
    assert!(line("retryable:").ends_with("no"), "{all}");
    assert!(run.stderr.is_empty(), "{all}");
}

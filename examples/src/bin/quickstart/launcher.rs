//! The launcher: issues the SVIDs, runs `quickstart server` and `quickstart client` as child
//! processes, and stops the server.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Issues the SVIDs, runs the server and the client as child processes, stops the server.
pub(crate) async fn launch() -> Result<(), QuickstartError> {
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
pub(crate) fn identity_args(dir: &Path) -> Vec<String> {
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
pub(crate) fn spawn(
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
pub(crate) fn take<T>(pipe: Option<T>, what: &str) -> Result<T, QuickstartError> {
    pipe.ok_or_else(|| QuickstartError::Unexpected(format!("{what} was not captured")))
}

/// The address in a `listening on ADDR as ID` line.
pub(crate) fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("listening on ")?;
    let (addr, _id) = rest.split_once(" as ")?;
    addr.parse().ok()
}

/// Prints a child's output line by line as `[who] line`, and returns all of it at its end.
pub(crate) fn relay<R>(pipe: R, who: &'static str, to_stderr: bool) -> JoinHandle<String>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(relay_lines(BufReader::new(pipe).lines(), who, to_stderr))
}

pub(crate) async fn relay_lines<R>(
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
pub(crate) async fn join(task: JoinHandle<String>) -> Result<String, QuickstartError> {
    within("collect a child's output", task)
        .await?
        .map_err(failed("collect a child's output"))
}

//! Resident memory per idle HBONE connection and per idle tunnel, client side and server side,
//! against plain rustls and plain TCP connections. Not a Criterion benchmark: it prints a table.
//!
//! The client is this process; the server is this executable again, run as a child process (see
//! `mesh_benches::memory`), so each side's cost is the RSS growth of its own process. Phases, each
//! measured as the RSS delta over `n` new objects (all kept open until the end, so freed memory
//! cannot be reused by a later phase and hide its cost):
//!
//! 1. `n` [`HboneClient`]s sharing one `MeshTls`, before they connect (the pool's fixed cost);
//! 2. one tunnel through each client (so each opens a connection), one byte echoed, the tunnel
//!    closed: `n` idle pooled connections;
//! 3. one more client allowed `n` streams per connection: `n` tunnels on one connection, one byte
//!    echoed on each, held open and idle;
//! 4. `n` plain rustls connections (same certificates and parameters), one byte echoed on each;
//! 5. `n` plain TCP connections, one byte echoed on each.
//!
//! `cargo bench --bench hbone_memory` (`HBONE_MEMORY_N=<n>`, default 1000). Without `--bench`
//! (as under `cargo test --benches`) it runs with `n = 20` as a smoke test. Needs about `3n + 100`
//! file descriptors per process (checked up front). See `benches/README.md`.

use std::time::Duration;

use mesh_benches::{
    BoxError,
    memory::{ROLE_ENV, ServerProcess, ServerSnapshot, rss_kib, run_server_process},
    pki::BenchPki,
    services::{echo_once, tcp_connect, tls_connect},
};
use mesh_client::hbone::{Destination, HboneClient, HboneClientConfig};
use mesh_tls::ExpectedIdentities;
use tokio::io::{AsyncRead, AsyncWrite};

/// The goal: at most this many KiB per side per idle connection.
const GOAL_KIB: f64 = 32.0;
/// Objects of each kind created (and kept) before measuring, so one-time allocations (lazy
/// statics, the first session ticket, allocator arenas) are not charged to the measured ones.
const WARM_UP: usize = 16;
/// The CONNECT target port (any port not owned by the mesh; the server ignores it).
const TARGET_PORT: u16 = 8080;

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if std::env::var(ROLE_ENV).as_deref() == Ok("server") {
        return rt.block_on(run_server_process());
    }
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = match std::env::var("HBONE_MEMORY_N") {
        Ok(v) => v.parse()?,
        Err(_) if benching => 1000,
        Err(_) => 20,
    };
    check_fd_limit(n)?;
    rt.block_on(run(n))
}

/// One line of the result table.
struct Row {
    what: &'static str,
    n: usize,
    client_kib: Option<f64>,
    server_kib: Option<f64>,
    goal: bool,
}

async fn run(n: usize) -> Result<(), BoxError> {
    let pki = BenchPki::generate()?;
    let max_streams = u32::try_from(n.max(WARM_UP))?;
    let mut server = ServerProcess::spawn(&pki.ca, max_streams).await?;
    let tls = pki.mesh_client()?;
    let dest = Destination {
        hbone_addr: server.hbone,
        target_port: TARGET_PORT,
        expected: ExpectedIdentities::one(pki.server_id.clone()),
    };
    let plain = pki.plain_client_config()?;
    let per = |before: u64, after: u64| (after as f64 - before as f64) / n as f64;
    let mut rows = Vec::new();

    // Warm-up: a few of everything, kept to the end.
    let mut warm_clients = Vec::new();
    let mut warm_tunnels = Vec::new();
    let mut warm_tls = Vec::new();
    let mut warm_tcp = Vec::new();
    for _ in 0..WARM_UP {
        let client = HboneClient::new(tls.clone(), HboneClientConfig::default());
        ping(&mut client.connect(&dest).await?).await?;
        warm_tunnels.push(client.connect(&dest).await?);
        ping(warm_tunnels.last_mut().ok_or("no tunnel")?).await?;
        warm_clients.push(client);
        warm_tls.push(tls_connect(plain.clone(), server.tls).await?);
        ping(warm_tls.last_mut().ok_or("no stream")?).await?;
        warm_tcp.push(tcp_connect(server.tcp).await?);
        ping(warm_tcp.last_mut().ok_or("no stream")?).await?;
    }
    let warm = server
        .settle("the warm-up state", |s| {
            s.hbone_connections == WARM_UP
                && s.hbone_tunnels == WARM_UP
                && s.tls_connections == WARM_UP
                && s.tcp_connections == WARM_UP
        })
        .await?;

    // 1. Clients without connections.
    let c0 = rss_kib(None)?;
    let clients: Vec<HboneClient> = (0..n)
        .map(|_| HboneClient::new(tls.clone(), HboneClientConfig::default()))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await; // let the reaper tasks start
    let c1 = rss_kib(None)?;
    rows.push(Row {
        what: "HboneClient, not connected",
        n,
        client_kib: Some(per(c0, c1)),
        server_kib: None,
        goal: false,
    });

    // 2. One idle pooled connection per client.
    for client in &clients {
        let mut tunnel = client.connect(&dest).await?;
        ping(&mut tunnel).await?;
    }
    let s1 = server
        .settle("n more idle connections", |s| {
            s.hbone_connections == warm.hbone_connections + n
                && s.hbone_tunnels == warm.hbone_tunnels
        })
        .await?;
    let c2 = rss_kib(None)?;
    for client in &clients {
        let stats = client.stats();
        if stats.connections_open != 1 || stats.streams_open != 0 {
            return Err(format!("a client is not one idle connection: {stats:?}").into());
        }
    }
    rows.push(Row {
        what: "HBONE connection, idle in pool",
        n,
        client_kib: Some(per(c1, c2)),
        server_kib: Some(per(warm.rss_kib, s1.rss_kib)),
        goal: true,
    });

    // 3. n idle tunnels on one connection.
    let mut config = HboneClientConfig::default();
    config.max_streams_per_connection = n;
    let client = HboneClient::new(tls.clone(), config);
    ping(&mut client.connect(&dest).await?).await?;
    let s2 = server
        .settle("one more idle connection", |s| {
            s.hbone_connections == s1.hbone_connections + 1 && s.hbone_tunnels == s1.hbone_tunnels
        })
        .await?;
    let c3 = rss_kib(None)?;
    let mut tunnels = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tunnel = client.connect(&dest).await?;
        ping(&mut tunnel).await?;
        tunnels.push(tunnel);
    }
    let s3 = server
        .settle("n more open tunnels", |s| {
            s.hbone_tunnels == s2.hbone_tunnels + n
        })
        .await?;
    let c4 = rss_kib(None)?;
    let stats = client.stats();
    if stats.connections_opened != 1 || stats.streams_open != n {
        return Err(format!("the tunnels are not on one connection: {stats:?}").into());
    }
    rows.push(Row {
        what: "HBONE tunnel, idle (1 connection)",
        n,
        client_kib: Some(per(c3, c4)),
        server_kib: Some(per(s2.rss_kib, s3.rss_kib)),
        goal: false,
    });

    // 4. Plain rustls connections.
    let mut tls_streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = tls_connect(plain.clone(), server.tls).await?;
        ping(&mut stream).await?;
        tls_streams.push(stream);
    }
    let s4 = server
        .settle("n more TLS connections", |s| {
            s.tls_connections == s3.tls_connections + n
        })
        .await?;
    let c5 = rss_kib(None)?;
    rows.push(Row {
        what: "plain rustls connection, idle",
        n,
        client_kib: Some(per(c4, c5)),
        server_kib: Some(per(s3.rss_kib, s4.rss_kib)),
        goal: false,
    });

    // 5. Plain TCP connections.
    let mut tcp_streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = tcp_connect(server.tcp).await?;
        ping(&mut stream).await?;
        tcp_streams.push(stream);
    }
    let s5 = server
        .settle("n more TCP connections", |s| {
            s.tcp_connections == s4.tcp_connections + n
        })
        .await?;
    let c6 = rss_kib(None)?;
    rows.push(Row {
        what: "plain TCP connection, idle",
        n,
        client_kib: Some(per(c5, c6)),
        server_kib: Some(per(s4.rss_kib, s5.rss_kib)),
        goal: false,
    });

    print_table(&rows, &server_totals(&warm, &s5));
    drop((tunnels, tls_streams, tcp_streams, clients, client));
    drop((warm_clients, warm_tunnels, warm_tls, warm_tcp));
    Ok(())
}

fn server_totals(first: &ServerSnapshot, last: &ServerSnapshot) -> String {
    format!(
        "server process RSS {} KiB -> {} KiB; client process RSS now {} KiB",
        first.rss_kib,
        last.rss_kib,
        rss_kib(None).unwrap_or(0)
    )
}

fn print_table(rows: &[Row], totals: &str) {
    let kib = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    println!("RSS growth per idle object (KiB, VmRSS delta / n); {totals}");
    println!(
        "{:<36} {:>6} {:>12} {:>12}  goal (<= {GOAL_KIB} KiB per side)",
        "object", "n", "client KiB", "server KiB"
    );
    for row in rows {
        let goal = if !row.goal {
            String::new()
        } else {
            let client = row.client_kib.unwrap_or(0.0);
            let server = row.server_kib.unwrap_or(0.0);
            if client <= GOAL_KIB && server <= GOAL_KIB {
                "met".to_owned()
            } else {
                "MISSED".to_owned()
            }
        };
        println!(
            "{:<36} {:>6} {:>12} {:>12}  {goal}",
            row.what,
            row.n,
            kib(row.client_kib),
            kib(row.server_kib)
        );
    }
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<(), BoxError> {
    Ok(echo_once(stream, &[0x2a], &mut [0]).await?)
}

/// Fails early, with advice, if this process may not open the descriptors the run needs (the
/// server process inherits the same limit).
fn check_fd_limit(n: usize) -> Result<(), BoxError> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    let need = 3 * (n + WARM_UP) + 100;
    match soft {
        Some(limit) if limit < need => Err(format!(
            "{n} connections of each kind need about {need} file descriptors per process, \
             but the limit is {limit}: raise it (`ulimit -n {need}`) or set HBONE_MEMORY_N lower"
        )
        .into()),
        _ => Ok(()),
    }
}

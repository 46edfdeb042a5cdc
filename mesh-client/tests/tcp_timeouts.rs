//! Raw tunnels from `Mesh::connect` keep their DestinationRule's `connectionPool.tcp`
//! `idleTimeout` (no byte either way for that long ends the tunnel; traffic in either direction
//! keeps it open) and `maxConnectionDuration` (the tunnel ends at that age, busy or not). The
//! reads and writes report which setting ended the tunnel, and the destination sees a reset.
//! Two workloads over mTLS HBONE on loopback, the client's rule an Istio DestinationRule file.

mod support;

use std::{
    io,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use mesh_client::{
    hbone::{H2Stream, InboundTunnel},
    mesh::{InboundApp, InboundServer, Mesh},
};
use support::STEP;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};

const SERVER_ID: &str = "spiffe://cluster.local/ns/shop/sa/db";
const HOST: &str = "db.shop.svc.cluster.local";

/// What the first byte a client sends asks the destination to do.
const ECHO: u8 = b'e';
/// Read and discard everything.
const SINK: u8 = b's';
/// Send one byte every [`TICK`], [`TICKS`] times, then nothing (reading what comes).
const TICKER: u8 = b't';
const TICK: Duration = Duration::from_millis(100);
const TICKS: usize = 15;

/// How the destination's read side of a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Eof,
    Error(io::ErrorKind),
}

/// Serves one tunnel as its first byte asks, then reports how its reading ended.
async fn serve(mut stream: H2Stream, ended: mpsc::UnboundedSender<Ended>) {
    let mut mode = [0u8; 1];
    if stream.read_exact(&mut mode).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut ticks = 0;
    let mut tick = tokio::time::interval(TICK);
    let end = loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => break Ended::Eof,
                Ok(n) if mode[0] == ECHO => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break Ended::Error(io::ErrorKind::BrokenPipe);
                    }
                }
                Ok(_) => {}
                Err(e) => break Ended::Error(e.kind()),
            },
            _ = tick.tick(), if mode[0] == TICKER && ticks < TICKS => {
                ticks += 1;
                if let Err(e) = stream.write_all(b".").await {
                    break Ended::Error(e.kind());
                }
            }
        }
    };
    let _ = ended.send(end);
}

/// The db workload serving raw tunnels with [`serve`]; the receiver reports how each ended.
async fn db(dir: &Path) -> (Mesh, InboundServer, mpsc::UnboundedReceiver<Ended>) {
    let yaml = format!(
        "identity: {{ spiffe_id: {SERVER_ID}, dev_ca: {{ dir: {} }} }}\ninbound: {{ listen: \"127.0.0.1:0\" }}",
        dir.join("ca").display()
    );
    let mesh = Mesh::from_yaml(&yaml).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |tunnel: InboundTunnel| {
        tokio::spawn(serve(tunnel.stream, tx.clone()));
    };
    let server = mesh
        .serve(InboundApp::Tunnels(Arc::new(handler)))
        .await
        .unwrap();
    (mesh, server, rx)
}

/// A client whose Istio DestinationRule for the db service has `connection_pool` as its
/// `trafficPolicy.connectionPool`.
async fn client(dir: &Path, server: &InboundServer, connection_pool: &str) -> Mesh {
    let rule = dir.join("db-rule.yaml");
    std::fs::write(
        &rule,
        format!(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{ name: db, namespace: shop }}
spec:
  host: {HOST}
  trafficPolicy:
    connectionPool: {connection_pool}
"#
        ),
    )
    .unwrap();
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/api, dev_ca: {{ dir: {ca} }} }}
services:
  - host: {HOST}
    ports: [{{ port: 5432, protocol: tcp }}]
    identities: [{SERVER_ID}]
    endpoints: [{{ address: "127.0.0.1:5432", hbone_port: {port} }}]
traffic: [{rule}]
"#,
        ca = dir.join("ca").display(),
        port = server.local_addr().port(),
        rule = rule.display(),
    );
    Mesh::from_yaml(&yaml).await.unwrap()
}

/// Opens a tunnel to the db and asks it to act as `mode`.
async fn open(mesh: &Mesh, mode: u8) -> H2Stream {
    let mut tunnel = tokio::time::timeout(STEP, mesh.connect(&format!("{HOST}:5432")))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    tunnel.write_all(&[mode]).await.unwrap();
    tunnel
}

/// Reads until the tunnel fails, returning the error and when it came. Data is fine; EOF is
/// not (the tunnel must end with an error).
async fn read_until_error(
    tunnel: &mut (impl tokio::io::AsyncRead + Unpin),
) -> (io::Error, Instant) {
    tokio::time::timeout(STEP, async {
        let mut buf = [0u8; 1024];
        loop {
            match tunnel.read(&mut buf).await {
                Ok(0) => panic!("the tunnel ended with EOF instead of an error"),
                Ok(_) => {}
                Err(e) => return (e, Instant::now()),
            }
        }
    })
    .await
    .expect("the tunnel was not closed in time")
}

/// How the destination saw the tunnel end.
async fn destination_saw(ended: &mut mpsc::UnboundedReceiver<Ended>) -> Ended {
    tokio::time::timeout(STEP, ended.recv())
        .await
        .expect("the destination did not see the tunnel end")
        .expect("the destination stopped")
}

fn assert_names(e: &io::Error, setting: &str) {
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(e.to_string().contains(setting), "{e}");
}

#[tokio::test]
async fn an_idle_tunnel_is_reset_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_db_mesh, server, mut ended) = db(dir.path()).await;
    let mesh = client(dir.path(), &server, "{ tcp: { idleTimeout: 300ms } }").await;
    let mut tunnel = open(&mesh, ECHO).await;
    // Traffic both ways, then silence.
    tunnel.write_all(b"hello").await.unwrap();
    let mut echoed = [0u8; 5];
    tokio::time::timeout(STEP, tunnel.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    let last_activity = Instant::now();
    let (error, at) = read_until_error(&mut tunnel).await;
    assert_names(&error, "connectionPool.tcp.idleTimeout");
    assert!(error.to_string().contains("300ms"), "{error}");
    let idle = at - last_activity;
    assert!(idle >= Duration::from_millis(250), "closed after {idle:?}");
    // The destination saw a reset, not a clean end.
    assert_eq!(
        destination_saw(&mut ended).await,
        Ended::Error(io::ErrorKind::ConnectionReset)
    );
    // The tunnel stays ended, saying why.
    let again = tunnel.write_all(b"more").await.unwrap_err();
    assert_names(&again, "idleTimeout");
    wait_for_no_tunnels(&server).await;
}

#[tokio::test]
async fn traffic_either_way_keeps_a_tunnel_open() {
    let dir = tempfile::tempdir().unwrap();
    let (_db_mesh, server, mut ended) = db(dir.path()).await;
    let mesh = client(dir.path(), &server, "{ tcp: { idleTimeout: 500ms } }").await;

    // Only the client sends, one byte per tick for three idle timeouts, while another task
    // waits to read: the reader is woken by the idle timer and finds the tunnel in use.
    let tunnel = open(&mesh, SINK).await;
    let (mut reader, mut writer) = tokio::io::split(tunnel);
    let reading = tokio::spawn(async move { read_until_error(&mut reader).await });
    let mut last_write = Instant::now();
    for _ in 0..TICKS {
        tokio::time::sleep(TICK).await;
        writer
            .write_all(b".")
            .await
            .expect("the tunnel stayed open");
        last_write = Instant::now();
        assert!(!reading.is_finished(), "the tunnel closed while in use");
    }
    // Silence: now it closes, an idle timeout after the last byte.
    let (error, at) = tokio::time::timeout(STEP, reading)
        .await
        .expect("reader timed out")
        .unwrap();
    assert_names(&error, "idleTimeout");
    assert!(
        at - last_write >= Duration::from_millis(450),
        "closed {:?} after the last byte",
        at - last_write
    );
    assert_eq!(
        destination_saw(&mut ended).await,
        Ended::Error(io::ErrorKind::ConnectionReset)
    );

    // Only the destination sends, one byte per tick: the client, only reading, keeps it open.
    let mut tunnel = open(&mesh, TICKER).await;
    let mut received = [0u8; TICKS];
    tokio::time::timeout(STEP, tunnel.read_exact(&mut received))
        .await
        .expect("the ticks arrived")
        .expect("the tunnel stayed open while the destination sent");
    let last_byte = Instant::now();
    let (error, at) = read_until_error(&mut tunnel).await;
    assert_names(&error, "idleTimeout");
    assert!(
        at - last_byte >= Duration::from_millis(450),
        "{:?}",
        at - last_byte
    );
    assert_eq!(
        destination_saw(&mut ended).await,
        Ended::Error(io::ErrorKind::ConnectionReset)
    );
}

#[tokio::test]
async fn a_tunnel_is_closed_at_its_max_connection_duration() {
    let dir = tempfile::tempdir().unwrap();
    let (_db_mesh, server, mut ended) = db(dir.path()).await;
    // `0s` switches the idle timeout off; the lifetime still applies.
    let mesh = client(
        dir.path(),
        &server,
        "{ tcp: { idleTimeout: 0s, maxConnectionDuration: 500ms } }",
    )
    .await;

    // Busy: a round trip every tick does not extend its life.
    let opened = Instant::now();
    let mut tunnel = open(&mesh, ECHO).await;
    let error = tokio::time::timeout(STEP, async {
        let mut byte = [0u8; 1];
        loop {
            tokio::time::sleep(TICK).await;
            if let Err(e) = tunnel.write_all(b".").await {
                return e;
            }
            if let Err(e) = tunnel.read_exact(&mut byte).await {
                return e;
            }
        }
    })
    .await
    .expect("the tunnel outlived its maximum duration");
    assert_names(&error, "connectionPool.tcp.maxConnectionDuration");
    assert!(error.to_string().contains("500ms"), "{error}");
    let lived = opened.elapsed();
    assert!(lived >= Duration::from_millis(500), "lived {lived:?}");
    assert_eq!(
        destination_saw(&mut ended).await,
        Ended::Error(io::ErrorKind::ConnectionReset)
    );

    // Idle (with no idle timeout): a waiting reader is woken when it reaches that age.
    let opened = Instant::now();
    let mut tunnel = open(&mesh, SINK).await;
    let (error, at) = read_until_error(&mut tunnel).await;
    assert_names(&error, "maxConnectionDuration");
    assert!(
        at - opened >= Duration::from_millis(500),
        "{:?}",
        at - opened
    );
    assert_eq!(
        destination_saw(&mut ended).await,
        Ended::Error(io::ErrorKind::ConnectionReset)
    );
    wait_for_no_tunnels(&server).await;
}

/// Waits until the destination holds no tunnel (they close asynchronously).
async fn wait_for_no_tunnels(server: &InboundServer) {
    tokio::time::timeout(STEP, async {
        while server.stats().tunnels != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the destination still holds {} tunnels",
            server.stats().tunnels
        )
    });
}

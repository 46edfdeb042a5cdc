//! A native Rust workload for the cross-language tests: serves raw tunnels through the Rust API
//! (no C ABI), answering each with `rust <peer SPIFFE ID>: <what it received>` once the client
//! half-closed. Prints its HBONE port, then runs until its standard input closes. With
//! `--admin ADDR` it also serves the admin endpoint (/metrics, /healthz/ready, /config_dump) and
//! prints `admin endpoint on ADDR` on the line after the port.
//!
//! usage: echo_service CONFIG.yaml [--admin ADDR]

use std::{error::Error, sync::Arc};

use mesh_client::{
    hbone::InboundTunnel,
    mesh::{InboundApp, Mesh},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    const USAGE: &str = "usage: echo_service CONFIG.yaml [--admin ADDR]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, admin) = match args.as_slice() {
        [path] => (path, None),
        [path, flag, addr] if flag == "--admin" => (
            path,
            Some(addr.parse::<std::net::SocketAddr>().map_err(|e| {
                format!("--admin {addr:?}: {e}; give ip:port, such as 127.0.0.1:15020")
            })?),
        ),
        _ => return Err(USAGE.into()),
    };
    let mesh = Mesh::from_yaml(&std::fs::read_to_string(path)?).await?;
    let handler = Arc::new(|tunnel: InboundTunnel| {
        tokio::spawn(async move {
            let peer = tunnel.peer.to_string();
            let mut stream = tunnel.stream;
            let mut received = Vec::new();
            if stream.read_to_end(&mut received).await.is_ok() {
                let reply = format!("rust {peer}: {}", String::from_utf8_lossy(&received));
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
    });
    let server = mesh.serve(InboundApp::Tunnels(handler)).await?;
    println!("{}", server.local_addr().port());
    let admin = match admin {
        Some(addr) => Some(mesh.serve_admin(addr).await?),
        None => None,
    };
    if let Some(admin) = &admin {
        println!("admin endpoint on {}", admin.local_addr());
    }
    // Until standard input closes (read on a blocking thread: tokio's stdin is not enabled).
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    server.shutdown().await;
    Ok(())
}

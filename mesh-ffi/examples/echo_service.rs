//! A native Rust workload for the cross-language tests: serves raw tunnels through the Rust API
//! (no C ABI), answering each with `rust <peer SPIFFE ID>: <what it received>` once the client
//! half-closed. Prints its HBONE port, then runs until its standard input closes.
//!
//! usage: echo_service CONFIG.yaml

use std::{error::Error, sync::Arc};

use mesh_client::{
    hbone::InboundTunnel,
    mesh::{InboundApp, Mesh},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: echo_service CONFIG.yaml")?;
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
    // Until standard input closes (read on a blocking thread: tokio's stdin is not enabled).
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    server.shutdown().await;
    Ok(())
}

//! `quickstart client`: a GET over an HBONE tunnel with hyper's HTTP/1.1 client.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::server::json_string;

/// The orders client: one tunnel to inventory, one HTTP/1.1 request through it.
pub(crate) async fn client(args: ClientArgs) -> Result<(), QuickstartError> {
    let (_, credentials) = load_identity(&args.identity)?;
    let tls = MeshTls::new(credentials, TlsOptions::default())
        .map_err(failed("build the TLS configuration"))?;
    let me = tls.credentials().svid().spiffe_id().clone();
    let client = HboneClient::new(tls, HboneClientConfig::default());
    let dest = Destination {
        hbone_addr: args.server,
        target_port: APP_PORT,
        expected: ExpectedIdentities::one(args.expect_id.clone()),
    };

    println!(
        "opening an HBONE tunnel to {} via {} as {me}",
        dest.authority(),
        dest.hbone_addr
    );
    let stream = step("open the tunnel", client.connect(&dest)).await?;
    // The pooled connection is reused: no second handshake.
    let server_id = step("read the server's identity", client.peer_identity(&dest)).await?;
    println!("tunnel open; mTLS verified the server as {server_id}");

    let (mut sender, connection) = step(
        "HTTP/1.1 handshake",
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)),
    )
    .await?;
    // `without_shutdown`: hand the tunnel back when HTTP is done, to close it like TCP below.
    let connection = tokio::spawn(connection.without_shutdown());
    let request = Request::get("/stock")
        .header(HOST, dest.authority().to_string())
        .body(Empty::new())
        .map_err(failed("build the request"))?;
    println!("GET /stock");
    let response = step("send GET /stock", sender.send_request(request)).await?;
    let status = response.status();
    let body = step("read the response body", response.into_body().collect())
        .await?
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    println!("HTTP/1.1 {status}");
    println!("{body}");

    // Done: dropping the request side ends the HTTP connection. Then close the tunnel as TCP
    // closes: send our end (END_STREAM), and wait for the server's, so that this process does
    // not exit (and drop the connection) while the server is still closing its side.
    drop(sender);
    let parts = step("finish the HTTP connection", async move {
        connection
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    })
    .await?;
    let mut stream = parts.io.into_inner();
    step("close the tunnel", stream.shutdown()).await?;
    let mut rest = Vec::new();
    step(
        "wait for the server to close the tunnel",
        stream.read_to_end(&mut rest),
    )
    .await?;

    if status != StatusCode::OK {
        return Err(QuickstartError::Unexpected(format!(
            "inventory answered {status}"
        )));
    }
    if !body.contains(&json_string(me.as_str())) {
        return Err(QuickstartError::Unexpected(format!(
            "inventory's answer does not name the caller {me}"
        )));
    }
    Ok(())
}

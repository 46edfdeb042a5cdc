//! `quickstart server`: an HBONE server whose tunnels carry HTTP/1.1 served with hyper.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The inventory service: accepts HBONE tunnels and serves HTTP/1.1 inside each.
pub(crate) async fn server(args: ServerArgs) -> Result<(), QuickstartError> {
    let (source, credentials) = load_identity(&args.identity)?;
    // Rotation: re-read the files every second and swap new material in; no restart needed.
    let _watch = source.watch(credentials.clone(), RELOAD_INTERVAL);
    let tls = MeshTls::new(credentials.clone(), TlsOptions::default())
        .map_err(failed("build the TLS configuration"))?;
    let me = tls.credentials().svid().spiffe_id().clone();

    // With --admin, the server records Istio's metrics as the destination of each tunnel.
    let telemetry = args
        .admin
        .map(|_| Telemetry::new(WorkloadLabels::peer(Some(&me), None), &Default::default()));
    let mut config = HboneServerConfig::default();
    config.listen = args.listen;
    config.telemetry = telemetry.clone();
    let server = HboneServer::bind(tls, config, Delivery::Handler(Arc::new(serve_http)))
        .await
        .map_err(failed("listen for HBONE"))?;
    let admin = match (args.admin, telemetry) {
        (Some(listen), Some(telemetry)) => {
            let details = serde_json::json!({
                "inbound": { "listen": server.local_addr().to_string() },
                "admin": { "listen": listen.to_string() },
            });
            let state = CredentialsState::register(credentials, &telemetry, details);
            let admin = AdminServer::bind(listen, telemetry, state, None)
                .await
                .map_err(failed("listen for the admin endpoint"))?;
            Some(admin)
        }
        _ => None,
    };
    println!("listening on {} as {me}", server.local_addr());
    if let Some(admin) = &admin {
        println!("admin endpoint on {}", admin.local_addr());
    }

    tokio::select! {
        () = stdin_closed() => println!("stdin closed: draining open tunnels, then stopping"),
        _ = tokio::signal::ctrl_c() => println!("Ctrl-C: draining open tunnels, then stopping"),
    }
    let cut = server.shutdown(DRAIN_DEADLINE).await;
    println!("stopped ({cut} tunnels cut off)");
    Ok(())
}

/// Resolves when stdin reaches its end (or fails): the launcher's way of saying "stop".
pub(crate) async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Serves one tunnel: the tunnel is a byte stream, so hyper runs HTTP/1.1 over it unchanged.
/// The caller's identity comes from the tunnel, verified by mTLS, not from anything in HTTP.
pub(crate) fn serve_http(tunnel: InboundTunnel) {
    let InboundTunnel { peer, stream, .. } = tunnel;
    let caller = peer.clone();
    let peer = Arc::new(peer);
    tokio::spawn(async move {
        let service = service_fn(move |request| {
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(respond(&peer, &request)) }
        });
        // Tunnels carry TCP's half-close: a client may end its side right after the request
        // (netcat, `meshctl hbone connect`) and still expect the answer.
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            eprintln!("HTTP connection from {caller} failed: {e}");
        }
    });
}

/// The inventory API: `GET /stock` answers with the stock and the caller's identity.
pub(crate) fn respond(peer: &SpiffeId, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/stock") => (
            StatusCode::OK,
            format!(
                r#"{{"service":"inventory","caller":{},"item":"widgets","in_stock":42}}"#,
                json_string(peer.as_str())
            ),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            r#"{"error":"no such resource; try GET /stock"}"#.to_owned(),
        ),
    };
    println!(
        "{} {} from {peer}: {status}",
        request.method(),
        request.uri().path()
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

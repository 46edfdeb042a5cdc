//! `meshctl hbone connect`: one tunnel between stdin/stdout and an HBONE server, like netcat.

use std::net::{IpAddr, SocketAddr};

use mesh_client::hbone::{Destination, HboneClient, HboneClientConfig};
use mesh_core::SpiffeId;
use mesh_tls::{ExpectedIdentities, MeshTls, TlsOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{init_logging, load_identity, parse_addr, setup};
use crate::{cli::HboneConnectArgs, cmd::Outcome, error::Error};

/// Bytes moved per read in each direction.
const BUFFER: usize = 64 * 1024;

/// `meshctl hbone connect`.
pub(super) fn run(args: &HboneConnectArgs) -> Result<Outcome, Error> {
    // Everything that can be checked without the network is checked first (exit status 2).
    let to = parse_addr("--to", &args.to, "10.0.0.5:15008")?;
    let target_port = parse_authority(&args.authority, to)?;
    let expected: SpiffeId = args.expect_id.parse().map_err(|e| Error::InvalidArg {
        flag: "--expect-id",
        value: args.expect_id.clone(),
        reason: format!("{e}"),
    })?;
    let (_, credentials) = load_identity(&args.identity)?;
    let tls = MeshTls::new(credentials, TlsOptions::default()).map_err(Error::Tls)?;
    init_logging("warn")?;

    let dest = Destination {
        hbone_addr: to,
        target_port,
        expected: ExpectedIdentities::one(expected),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(setup("the async runtime"))?;
    let result = runtime.block_on(async {
        let client = HboneClient::new(tls, HboneClientConfig::default());
        let tunnel = client.connect(&dest).await?;
        tracing::info!(
            "tunnel to {} open via {to} as {}",
            dest.authority(),
            client.tls().credentials().svid().spiffe_id()
        );
        pipe(
            tunnel,
            tokio::io::stdin(),
            tokio::io::stdout(),
            dest.hbone_addr,
        )
        .await
    });
    // stdin's reader may sit in a blocking read that never returns (a terminal, an open pipe);
    // the process is done, so do not wait for it.
    runtime.shutdown_background();
    result.map(|()| Outcome::Clean)
}

/// Parses `--authority IP:PORT` and returns PORT, after checking that IP is the IP dialed: the
/// library puts `--to`'s IP in the CONNECT authority, and a server answers 400 to any other.
fn parse_authority(value: &str, to: SocketAddr) -> Result<u16, Error> {
    let invalid = |reason: String| Error::InvalidArg {
        flag: "--authority",
        value: value.to_owned(),
        reason,
    };
    let (ip, port) = match value.parse::<SocketAddr>() {
        Ok(addr) => (addr.ip(), addr.port()),
        Err(_) => {
            let Some((host, port)) = value.rsplit_once(':') else {
                return Err(invalid(format!(
                    "expected IP:PORT, such as {}",
                    SocketAddr::new(to.ip(), 8080)
                )));
            };
            let Ok(port) = port.parse::<u16>() else {
                return Err(invalid(format!(
                    "{port:?} is not a port number; expected IP:PORT, such as {}",
                    SocketAddr::new(to.ip(), 8080)
                )));
            };
            let suggestion = SocketAddr::new(to.ip(), port);
            if host.parse::<IpAddr>().is_ok() || host.contains(':') {
                return Err(invalid(format!(
                    "an IPv6 address needs brackets around it, such as [::1]:{port}"
                )));
            }
            return Err(invalid(format!(
                "{host:?} is a host name, but HBONE requires the CONNECT authority's IP to be the IP dialed with --to \
                 (the server checks it against the address the connection arrived on and answers 400 otherwise); \
                 use --authority {suggestion}"
            )));
        }
    };
    if ip.to_canonical() != to.ip().to_canonical() {
        return Err(invalid(format!(
            "its IP {ip} is not the IP dialed with --to ({}); HBONE requires the CONNECT authority's IP to be the \
             IP dialed with --to (the server checks it against the address the connection arrived on and \
             answers 400 otherwise); use --authority {}",
            to.ip(),
            SocketAddr::new(to.ip(), port)
        )));
    }
    Ok(port)
}

/// Copies `input` into the tunnel and the tunnel into `output` at the same time.
///
/// `input`'s end half-closes the tunnel (END_STREAM, the server reads end-of-file); the tunnel's
/// end finishes the pipe once `output` is flushed, even if `input` has more: like netcat, the
/// conversation is over when the server says so.
async fn pipe<T, I, O>(
    tunnel: T,
    mut input: I,
    mut output: O,
    addr: SocketAddr,
) -> Result<(), Error>
where
    T: AsyncRead + AsyncWrite,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let tunnel_io = |source: std::io::Error| Error::TunnelIo { addr, source };
    let (mut from_tunnel, mut to_tunnel) = tokio::io::split(tunnel);
    let download = async {
        let mut buf = vec![0u8; BUFFER];
        loop {
            let n = from_tunnel.read(&mut buf).await.map_err(tunnel_io)?;
            if n == 0 {
                break;
            }
            output.write_all(&buf[..n]).await.map_err(Error::Output)?;
            // Interactive use: the bytes must show now, not when a line or buffer fills up.
            output.flush().await.map_err(Error::Output)?;
        }
        Ok(())
    };
    let upload = async {
        let mut buf = vec![0u8; BUFFER];
        loop {
            let n = input.read(&mut buf).await.map_err(Error::Input)?;
            if n == 0 {
                break;
            }
            to_tunnel.write_all(&buf[..n]).await.map_err(tunnel_io)?;
        }
        to_tunnel.shutdown().await.map_err(tunnel_io)
    };
    tokio::pin!(download, upload);
    tokio::select! {
        // The server's end (or a reset) is the verdict, even when stdin finished in the same
        // instant: a reset usually fails both directions, and the download saw it first.
        biased;
        result = &mut download => return result,
        result = &mut upload => result?,
    }
    download.await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to() -> SocketAddr {
        "10.0.0.5:15008".parse().unwrap()
    }

    #[test]
    fn authority_must_name_the_dialed_ip() {
        assert_eq!(parse_authority("10.0.0.5:8080", to()).unwrap(), 8080);
        let err = parse_authority("10.0.0.6:8080", to())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not the IP dialed with --to"), "{err}");
        assert!(err.contains("use --authority 10.0.0.5:8080"), "{err}");
        let err = parse_authority("inventory.shop:8080", to())
            .unwrap_err()
            .to_string();
        assert!(err.contains("host name"), "{err}");
        assert!(err.contains("use --authority 10.0.0.5:8080"), "{err}");
        let err = parse_authority("10.0.0.5", to()).unwrap_err().to_string();
        assert!(err.contains("IP:PORT"), "{err}");
        let err = parse_authority("10.0.0.5:http", to())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a port number"), "{err}");
    }

    #[test]
    fn ipv6_authorities_need_brackets_and_match_mapped_addresses() {
        let v6: SocketAddr = "[::1]:15008".parse().unwrap();
        assert_eq!(parse_authority("[::1]:80", v6).unwrap(), 80);
        let err = parse_authority("::1:80", v6).unwrap_err().to_string();
        assert!(err.contains("brackets"), "{err}");
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:15008".parse().unwrap();
        assert_eq!(parse_authority("10.0.0.5:80", mapped).unwrap(), 80);
    }

    #[tokio::test]
    async fn pipe_half_closes_and_returns_after_the_tunnel_ends() {
        // The far end of the "tunnel" answers with what it read once it sees end-of-file.
        let (tunnel, mut far) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            far.write_all(&got).await.unwrap();
            far.write_all(b"!").await.unwrap();
            far.shutdown().await.unwrap();
        });
        let input: &[u8] = b"hello";
        let mut output = Vec::new();
        pipe(tunnel, input, &mut output, to()).await.unwrap();
        assert_eq!(output, b"hello!");
        server.await.unwrap();
    }
}

//! A real JWKS server on loopback (hyper, HTTP/1.1 and HTTP/2, optionally TLS) whose answer
//! the test changes at will, plus Ed25519 signing keys published as JWKs.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinSet};

/// What `/jwks` answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this body.
    Body(String),
    /// This status, empty body.
    Status(u16),
    /// Never answer (the connection stays open).
    Hang,
}

pub struct JwksServer {
    pub addr: SocketAddr,
    pub scheme: &'static str,
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicU64>,
    tasks: JoinSet<()>,
}

impl JwksServer {
    /// A plain HTTP server answering `reply`.
    pub async fn http(reply: Reply) -> Self {
        Self::start(reply, None).await
    }

    /// An HTTPS server (certificate for 127.0.0.1 from `ca`).
    pub async fn https(reply: Reply, ca: &TestCa) -> Self {
        Self::start(reply, Some(ca.server_config())).await
    }

    async fn start(reply: Reply, tls: Option<rustls::ServerConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let reply = Arc::new(Mutex::new(reply));
        let hits = Arc::new(AtomicU64::new(0));
        let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        let mut tasks = JoinSet::new();
        let (reply2, hits2) = (reply.clone(), hits.clone());
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (reply, hits, acceptor) = (reply2.clone(), hits2.clone(), acceptor.clone());
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        handle(req, addr, scheme, reply.clone(), hits.clone())
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            scheme,
            reply,
            hits,
            tasks,
        }
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Requests served on `/jwks` so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}://{}/jwks", self.scheme, self.addr)
    }

    /// The issuer whose OpenID configuration this server serves.
    pub fn issuer(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    addr: SocketAddr,
    scheme: &'static str,
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let respond = |status: u16, body: String| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap())
    };
    match req.uri().path() {
        "/.well-known/openid-configuration" => respond(
            200,
            json!({"issuer": format!("{scheme}://{addr}"), "jwks_uri": format!("{scheme}://{addr}/jwks")}).to_string(),
        ),
        "/jwks" => {
            hits.fetch_add(1, Ordering::SeqCst);
            let current = reply.lock().unwrap().clone();
            match current {
                Reply::Body(body) => respond(200, body),
                Reply::Status(status) => respond(status, String::new()),
                Reply::Hang => std::future::pending().await,
            }
        }
        _ => respond(StatusCode::NOT_FOUND.as_u16(), String::new()),
    }
}

/// A CA and an HTTPS server certificate for 127.0.0.1, made with rcgen.
pub struct TestCa {
    pub root: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "jwks test CA");
        let root = params.self_signed(&key).unwrap().der().clone();
        Self {
            root,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn server_config(&self) -> rustls::ServerConfig {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), self.root.clone()], key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// An Ed25519 signing key and its JWK.
pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    pub fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                        "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())}),
        }
    }

    /// A token from `iss` for `sub`, valid around `now` (Unix seconds).
    pub fn sign(&self, iss: &str, sub: &str, now: u64) -> String {
        let header = json!({"alg": "EdDSA", "kid": self.kid});
        let claims = json!({"iss": iss, "sub": sub, "exp": now + 600});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, Algorithm::EdDSA)
                .unwrap();
        format!("{message}.{signature}")
    }
}

pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

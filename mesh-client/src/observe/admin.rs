//! The admin HTTP endpoint: what Istio's agent (port 15020) and Envoy's admin (15000) offer an
//! operator, served by the workload itself.
//!
//! | path | method | answers |
//! |---|---|---|
//! | `/metrics`, `/stats/prometheus` | GET | every metric; OpenMetrics when the scraper asks for it (Prometheus does), the classic 0.0.4 text otherwise |
//! | `/healthz/ready` | GET | 200 `ready`, or 503 with the reason |
//! | `/config_dump` | GET | JSON: effective configuration, services and endpoints with health and ejection state, pools, certificates, policies |
//! | `/logging` | GET | the log filter in force |
//! | `/logging?level=debug`, `/logging?filter=info,mesh_client=debug` | POST | changes it |
//!
//! It binds `127.0.0.1` unless told otherwise: the dump and the log controls are for the
//! operator of this machine, not for the network.

use std::{convert::Infallible, fmt, io, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{LogControl, OPENMETRICS_CONTENT_TYPE, Telemetry};

/// What the admin endpoint asks of the workload it serves.
pub trait AdminState: Send + Sync + 'static {
    /// `Ok` when the workload can serve (identity loaded and valid, discovery answered), or
    /// why not.
    fn ready(&self) -> Result<(), String>;
    /// The `/config_dump` document.
    fn config_dump(&self) -> serde_json::Value;
}

/// A running admin endpoint. Dropping it (or [`shutdown`](Self::shutdown)) stops it.
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: CancellationToken,
}

/// Everything a request handler needs.
struct Endpoint {
    telemetry: Telemetry,
    state: Arc<dyn AdminState>,
    logs: Option<LogControl>,
}

impl AdminServer {
    /// Binds `addr` and serves on the current tokio runtime. `logs` enables `/logging`
    /// (without it, `/logging` answers 503 and says how to enable it).
    pub async fn bind(
        addr: SocketAddr,
        telemetry: Telemetry,
        state: Arc<dyn AdminState>,
        logs: Option<LogControl>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let endpoint = Arc::new(Endpoint {
            telemetry,
            state,
            logs,
        });
        tokio::spawn(accept_loop(listener, endpoint, stop.clone()));
        tracing::info!(%local_addr, "admin endpoint listening");
        Ok(Self { local_addr, stop })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes open connections.
    pub fn shutdown(self) {
        self.stop.cancel();
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(listener: TcpListener, endpoint: Arc<Endpoint>, stop: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let endpoint = endpoint.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(endpoint.handle(request)) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Decodes `%XX` and `+` in a query value.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&value[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(request: &Request<Incoming>, name: &str) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| decode(value))
    })
}

/// What `/logging?level=` accepts.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

const INDEX: &str = "mesh admin endpoint\n\n\
    GET  /metrics             Prometheus metrics (also /stats/prometheus)\n\
    GET  /healthz/ready       readiness\n\
    GET  /config_dump         effective configuration, endpoints, pools, certificates, policies (JSON)\n\
    GET  /logging             the log filter in force\n\
    POST /logging?level=L     set every target to level L (error, warn, info, debug, trace)\n\
    POST /logging?filter=F    set tracing-subscriber EnvFilter directives, e.g. info,mesh_client=debug\n";

impl Endpoint {
    fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let method = request.method();
        let read_only = matches!(*method, Method::GET | Method::HEAD);
        match path {
            "/" if read_only => text(StatusCode::OK, INDEX),
            "/metrics" | "/stats/prometheus" if read_only => self.metrics(&request),
            "/healthz/ready" if read_only => match self.state.ready() {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(reason) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                ),
            },
            "/config_dump" if read_only => {
                let body = serde_json::to_vec_pretty(&self.state.config_dump())
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
                let mut response = text(StatusCode::OK, body);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
            "/logging" => self.logging(&request),
            "/" | "/metrics" | "/stats/prometheus" | "/healthz/ready" | "/config_dump" => {
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} is not allowed on {path}; use GET\n"),
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
                response
            }
            _ => text(
                StatusCode::NOT_FOUND,
                format!("no admin page at {path}; GET / lists them\n"),
            ),
        }
    }

    fn metrics(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let open = request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        let (body, content_type) = if open {
            (self.telemetry.encode(), OPENMETRICS_CONTENT_TYPE)
        } else {
            (
                self.telemetry.encode_classic(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut response = text(StatusCode::OK, body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    }

    fn logging(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(logs) = &self.logs else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "log levels are not controlled by the mesh in this process; install the \
                 subscriber with mesh_client::observe::init_logging (or pass a LogControl)\n",
            );
        };
        match *request.method() {
            Method::GET | Method::HEAD => {
                text(StatusCode::OK, format!("filter: {}\n", logs.current()))
            }
            Method::POST | Method::PUT => {
                let level = query_param(request, "level");
                if let Some(level) = &level
                    && !LEVELS.contains(&level.to_ascii_lowercase().as_str())
                {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unknown level {level:?}; use one of {} (or filter=DIRECTIVES)\n",
                            LEVELS.join(", ")
                        ),
                    );
                }
                let wanted = query_param(request, "filter").or(level);
                let Some(wanted) = wanted else {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "say what to log: /logging?level=debug or /logging?filter=info,mesh_client=debug\n",
                    );
                };
                match logs.set(&wanted) {
                    Ok(()) => text(StatusCode::OK, format!("filter: {}\n", logs.current())),
                    Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
                }
            }
            ref other => text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{other} is not allowed on /logging; use GET or POST\n"),
            ),
        }
    }
}

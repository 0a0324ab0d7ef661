//! The local cluster's load balancer: the stand-in for the ALB.
//!
//! Like the ALB it routes only to backends whose health check (`/health/ready`) last answered 200, so a
//! replica that is catching up, or whose publisher went quiet, gets no traffic. Unlike the ALB it also
//! retries a request on another ready replica when the chosen one fails before answering (connection
//! refused or reset, e.g. a replica killed mid-request): JSON-RPC reads are safe to repeat, and
//! `eth_sendRawTransaction` is idempotent by transaction hash.
//!
//! HTTP only: websocket subscriptions go straight to a replica's RPC port.

pub mod policy;

use std::{
    fmt::Write,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use policy::{pick, BackendState};

/// One replica behind the balancer.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Where JSON-RPC goes, e.g. `http://127.0.0.1:8545`.
    pub rpc_url: String,
    /// The readiness check, e.g. `http://127.0.0.1:8081/health/ready`.
    pub health_url: String,
}

impl std::str::FromStr for Backend {
    type Err = String;

    /// `RPC_URL,HEALTH_URL` (the command-line form).
    fn from_str(s: &str) -> Result<Self, String> {
        let (rpc, health) =
            s.split_once(',').ok_or_else(|| format!("expected RPC_URL,HEALTH_URL, got {s:?}"))?;
        let ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if !ok(rpc) || !ok(health) {
            return Err(format!("both URLs need http:// or https://, got {s:?}"));
        }
        Ok(Backend { rpc_url: rpc.trim_end_matches('/').to_owned(), health_url: health.to_owned() })
    }
}

/// Largest request body forwarded (the replicas' own limit is 5 MiB).
pub const MAX_BODY_BYTES: usize = 6 << 20;

#[derive(Debug, Clone)]
pub struct Config {
    pub backends: Vec<Backend>,
    /// Time between health checks of each backend (the ALB's interval; it is 5 s or more there).
    pub check_interval: Duration,
    /// Longest a proxied request may take before it is retried elsewhere.
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no backends given")]
    NoBackends,
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("serving on {addr}: {source}")]
    Serve { addr: SocketAddr, source: std::io::Error },
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    no_backend: AtomicU64,
}

struct Shared {
    backends: Vec<Backend>,
    states: Mutex<Vec<BackendState>>,
    /// Per backend: requests answered, requests failed before an answer.
    answered: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
    cursor: AtomicUsize,
    client: reqwest::Client,
    counters: Counters,
}

impl Shared {
    fn set_ready(&self, i: usize, ready: bool) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if states[i].ready != ready {
            tracing::info!(backend = %self.backends[i].rpc_url, ready, "backend readiness changed");
        }
        states[i].ready = ready;
    }

    fn states(&self) -> Vec<BackendState> {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Serves on `listener` until `shutdown` resolves, checking every backend's health in the background.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if cfg.backends.is_empty() {
        return Err(Error::NoBackends);
    }
    let addr =
        listener.local_addr().map_err(|source| Error::Serve { addr: ([0, 0, 0, 0], 0).into(), source })?;
    let client = reqwest::Client::builder()
        .timeout(cfg.request_timeout)
        .connect_timeout(Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?;
    let n = cfg.backends.len();
    let shared = Arc::new(Shared {
        backends: cfg.backends,
        states: Mutex::new(vec![BackendState::default(); n]),
        answered: (0..n).map(|_| AtomicU64::new(0)).collect(),
        failed: (0..n).map(|_| AtomicU64::new(0)).collect(),
        cursor: AtomicUsize::new(0),
        client,
        counters: Counters::default(),
    });
    let checkers: Vec<_> =
        (0..n).map(|i| tokio::spawn(check_health(shared.clone(), i, cfg.check_interval))).collect();
    let app = Router::new()
        .route("/balancer/status", get(status))
        .route("/balancer/metrics", get(metrics))
        .fallback(proxy)
        // The replicas take JSON-RPC bodies up to 5 MiB; pass those through, refuse larger ones here.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { addr, source });
    for c in checkers {
        c.abort();
    }
    result
}

/// Polls one backend's readiness for the life of the balancer.
async fn check_health(shared: Arc<Shared>, i: usize, interval: Duration) {
    let url = shared.backends[i].health_url.clone();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ready = match shared.client.get(&url).timeout(interval.max(Duration::from_secs(1))).send().await {
            Ok(r) => r.status() == reqwest::StatusCode::OK,
            Err(_) => false,
        };
        shared.set_ready(i, ready);
    }
}

async fn proxy(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let start = shared.cursor.fetch_add(1, Ordering::Relaxed);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut tried = Vec::new();
    while let Some(i) = pick(&shared.states(), start, &tried) {
        if !tried.is_empty() {
            shared.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        tried.push(i);
        let url = if path == "/" {
            shared.backends[i].rpc_url.clone()
        } else {
            format!("{}{path}", shared.backends[i].rpc_url)
        };
        let mut req = shared.client.request(method.clone(), url).body(body.clone());
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        // The whole answer is read before anything goes back, so a backend dying mid-answer is retried too.
        let answer = match req.send().await {
            Ok(r) => {
                let status = r.status();
                let ct = r.headers().get(header::CONTENT_TYPE).cloned();
                r.bytes().await.map(|b| (status, ct, b))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok((status, ct, bytes)) => {
                shared.answered[i].fetch_add(1, Ordering::Relaxed);
                let mut resp = (status, bytes).into_response();
                if let Some(ct) = ct {
                    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                return resp;
            }
            Err(e) => {
                shared.failed[i].fetch_add(1, Ordering::Relaxed);
                tracing::warn!(backend = %shared.backends[i].rpc_url, error = %e, "backend failed; trying another");
                // Out of rotation until its health check answers 200 again.
                shared.set_ready(i, false);
            }
        }
    }
    shared.counters.no_backend.fetch_add(1, Ordering::Relaxed);
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32603, "message": "no ready replica behind the balancer"},
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let states = shared.states();
    let backends: Vec<_> = shared
        .backends
        .iter()
        .zip(states)
        .map(|(b, s)| serde_json::json!({"rpc_url": b.rpc_url, "health_url": b.health_url, "ready": s.ready}))
        .collect();
    Json(serde_json::json!({ "backends": backends }))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> String {
    let c = &shared.counters;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP ether_cattle_balancer_{name} {help}");
        let _ = writeln!(out, "# TYPE ether_cattle_balancer_{name} counter");
        let _ = writeln!(out, "ether_cattle_balancer_{name} {v}");
    };
    counter("requests_total", "Requests received.", c.requests.load(Ordering::Relaxed));
    counter("retries_total", "Requests retried on another backend.", c.retries.load(Ordering::Relaxed));
    counter(
        "no_backend_total",
        "Requests answered 503: no ready backend.",
        c.no_backend.load(Ordering::Relaxed),
    );
    let states = shared.states();
    for (name, help, kind) in [
        ("backend_ready", "1 while the backend's last health check passed.", "gauge"),
        ("backend_answered_total", "Requests the backend answered.", "counter"),
        ("backend_failed_total", "Requests that failed on the backend before an answer.", "counter"),
    ] {
        let _ = writeln!(out, "# HELP ether_cattle_balancer_{name} {help}");
        let _ = writeln!(out, "# TYPE ether_cattle_balancer_{name} {kind}");
        for (i, b) in shared.backends.iter().enumerate() {
            let v = match name {
                "backend_ready" => states[i].ready as u64,
                "backend_answered_total" => shared.answered[i].load(Ordering::Relaxed),
                _ => shared.failed[i].load(Ordering::Relaxed),
            };
            let _ = writeln!(out, "ether_cattle_balancer_{name}{{backend=\"{}\"}} {v}", b.rpc_url);
        }
    }
    out
}

//! Per-method RPC counts, errors and latencies, rendered as Prometheus text for the replica's `/metrics`.
//!
//! Method names come from the network, so only registered methods get their own series; anything else is
//! counted as `other` (a client cannot grow the metrics without bound).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
    future::Future,
    sync::{Arc, Mutex},
    time::Instant,
};

use jsonrpsee::{
    server::middleware::rpc::{Batch, Notification, Request, RpcServiceT},
    MethodResponse,
};

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    calls: u64,
    errors: u64,
    micros: u64,
}

#[derive(Debug, Default)]
pub struct RpcMetrics {
    known: BTreeSet<String>,
    by_method: Mutex<BTreeMap<String, Counts>>,
}

impl RpcMetrics {
    pub fn new(known: impl IntoIterator<Item = String>) -> Self {
        Self { known: known.into_iter().collect(), by_method: Mutex::default() }
    }

    fn record(&self, method: &str, micros: u64, error: bool) {
        let key = if self.known.contains(method) { method } else { "other" };
        // A poisoned lock only means another request panicked mid-update: the counts are still usable.
        let mut m = self.by_method.lock().unwrap_or_else(|e| e.into_inner());
        let c = m.entry(key.to_owned()).or_default();
        c.calls += 1;
        c.errors += error as u64;
        c.micros += micros;
    }

    pub fn render(&self) -> String {
        let m = self.by_method.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = String::new();
        for (name, help, get) in [
            ("rpc_requests_total", "JSON-RPC calls by method.", (|c: &Counts| c.calls) as fn(&Counts) -> u64),
            ("rpc_errors_total", "JSON-RPC calls answered with an error, by method.", |c| c.errors),
            ("rpc_duration_microseconds_total", "Time spent answering, by method.", |c| c.micros),
        ] {
            let _ = writeln!(out, "# HELP ether_cattle_replica_{name} {help}");
            let _ = writeln!(out, "# TYPE ether_cattle_replica_{name} counter");
            for (method, c) in &m {
                let _ = writeln!(out, "ether_cattle_replica_{name}{{method=\"{method}\"}} {}", get(c));
            }
        }
        out
    }
}

/// The middleware that feeds [`RpcMetrics`].
#[derive(Clone)]
pub struct Counting<S> {
    pub inner: S,
    pub metrics: Arc<RpcMetrics>,
}

impl<S> RpcServiceT for Counting<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync + Clone + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let (inner, metrics) = (self.inner.clone(), self.metrics.clone());
        let method = request.method_name().to_owned();
        let started = Instant::now();
        async move {
            let response = inner.call(request).await;
            metrics.record(&method, started.elapsed().as_micros() as u64, response.is_error());
            response
        }
    }

    fn batch<'a>(&self, requests: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        self.inner.batch(requests)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

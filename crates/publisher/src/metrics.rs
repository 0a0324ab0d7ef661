//! The publisher's metrics, in Prometheus text format on `/metrics`.

use std::{
    fmt::Write,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
};

#[derive(Debug, Default)]
pub struct Metrics {
    pub head_published: AtomicU64,
    pub client_head: AtomicU64,
    pub records_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub blocks_published: AtomicU64,
    pub reorgs: AtomicU64,
    pub reverts_written: AtomicU64,
    pub heartbeats_written: AtomicU64,
    pub produce_failures: AtomicU64,
    pub fetch_micros_total: AtomicU64,
    pub trace_micros_total: AtomicU64,
    pub produce_micros_total: AtomicU64,
    pub last_trace_micros: AtomicU64,
    pub relayed_ok: AtomicU64,
    pub relayed_rejected: AtomicU64,
    pub verify_micros_total: AtomicU64,
    pub verified_accounts: AtomicU64,
    pub tracer_disagreements: AtomicU64,
    /// The state the heartbeats report: 0 following, 1 client unreachable, 2 stuck, 3 stopped.
    pub state: AtomicU64,
}

impl Metrics {
    /// One fetched block's timings and check counts.
    pub fn record_fetch(&self, t: &crate::fetch::Timings) {
        self.fetch_micros_total.fetch_add(t.fetch.as_micros() as u64, Relaxed);
        self.trace_micros_total.fetch_add(t.trace.as_micros() as u64, Relaxed);
        self.last_trace_micros.store(t.trace.as_micros() as u64, Relaxed);
        self.verify_micros_total.fetch_add(t.verify.as_micros() as u64, Relaxed);
        self.verified_accounts.fetch_add(t.verified_accounts, Relaxed);
        self.tracer_disagreements.fetch_add(t.disagreements, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |out: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP ether_cattle_publisher_{name} {help}");
            let _ = writeln!(out, "# TYPE ether_cattle_publisher_{name} {kind}");
            let _ = writeln!(out, "ether_cattle_publisher_{name} {v}");
        };
        let head = self.head_published.load(Relaxed);
        let client = self.client_head.load(Relaxed);
        g(&mut out, "head_published", "gauge", "Newest block written to the log.", head);
        g(&mut out, "client_head", "gauge", "Newest block the execution client reports.", client);
        g(
            &mut out,
            "lag_blocks",
            "gauge",
            "Blocks the log is behind the client.",
            client.saturating_sub(head),
        );
        g(
            &mut out,
            "records_written_total",
            "counter",
            "Records written.",
            self.records_written.load(Relaxed),
        );
        g(
            &mut out,
            "bytes_written_total",
            "counter",
            "Frame bytes written.",
            self.bytes_written.load(Relaxed),
        );
        g(
            &mut out,
            "blocks_published_total",
            "counter",
            "Block records written.",
            self.blocks_published.load(Relaxed),
        );
        g(&mut out, "reorgs_total", "counter", "Reorgs seen.", self.reorgs.load(Relaxed));
        g(
            &mut out,
            "reverts_written_total",
            "counter",
            "Revert records written.",
            self.reverts_written.load(Relaxed),
        );
        g(
            &mut out,
            "heartbeats_written_total",
            "counter",
            "Heartbeats written.",
            self.heartbeats_written.load(Relaxed),
        );
        g(
            &mut out,
            "produce_failures_total",
            "counter",
            "Failed writes to Kafka (retried).",
            self.produce_failures.load(Relaxed),
        );
        g(
            &mut out,
            "fetch_microseconds_total",
            "counter",
            "Time fetching blocks and receipts.",
            self.fetch_micros_total.load(Relaxed),
        );
        g(
            &mut out,
            "trace_microseconds_total",
            "counter",
            "Time tracing blocks.",
            self.trace_micros_total.load(Relaxed),
        );
        g(
            &mut out,
            "produce_microseconds_total",
            "counter",
            "Time writing records.",
            self.produce_micros_total.load(Relaxed),
        );
        g(
            &mut out,
            "last_trace_microseconds",
            "gauge",
            "Trace time of the last block.",
            self.last_trace_micros.load(Relaxed),
        );
        g(
            &mut out,
            "relayed_transactions_total",
            "counter",
            "Transactions the client accepted.",
            self.relayed_ok.load(Relaxed),
        );
        g(
            &mut out,
            "relay_rejected_total",
            "counter",
            "Transactions the client rejected.",
            self.relayed_rejected.load(Relaxed),
        );
        g(
            &mut out,
            "verify_microseconds_total",
            "counter",
            "Time checking records against eth_getProof proofs.",
            self.verify_micros_total.load(Relaxed),
        );
        g(
            &mut out,
            "verified_accounts_total",
            "counter",
            "Account changes checked against a proof of the block's state root.",
            self.verified_accounts.load(Relaxed),
        );
        g(
            &mut out,
            "tracer_disagreements_total",
            "counter",
            "Deletions the client's tracer reported and the client's state contradicted (written as the state has them).",
            self.tracer_disagreements.load(Relaxed),
        );
        g(
            &mut out,
            "state",
            "gauge",
            "0 following, 1 client unreachable, 2 stuck on a block, 3 stopped.",
            self.state.load(Relaxed),
        );
        out
    }
}

/// Serves `/metrics` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move { m.render() }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

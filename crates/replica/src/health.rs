//! The replica's private HTTP port: health for the load balancer, Prometheus metrics, and the admin
//! position the snapshot function reads. Separate from the RPC port, so RPC load cannot starve health
//! checks and the admin endpoint is never exposed through the ALB.
//!
//! - `GET /health/live`: 200 while the process serves at all.
//! - `GET /health/ready`: 200 while [`crate::readiness`] says ready, else 503; JSON body either way.
//! - `GET /metrics`: Prometheus text.
//! - `GET /admin/position`: JSON: topic, applied Kafka offset and sequence, head block number and hash.
//! - `POST /admin/snapshot[?name=NAME]`: only with `--snapshot-dir`: a local snapshot (RocksDB checkpoint)
//!   of the running database; JSON: its path and position (see [`crate::snapshot`]).

use std::{fmt::Write, net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    extract::State,
    http::{StatusCode, Uri},
    response::IntoResponse,
    routing::{get, post},
    Json, Router,
};
use serde_json::json;
use tokio::sync::watch;

use crate::{
    readiness::{readiness, ReadinessConfig},
    snapshot::{LocalSnapshots, SnapshotError},
    Status,
};

/// More Prometheus text for `/metrics`, filled in by parts that start later (the RPC server).
pub type ExtraMetrics = Arc<std::sync::OnceLock<Box<dyn Fn() -> String + Send + Sync>>>;

struct Shared {
    status: watch::Receiver<Status>,
    readiness: ReadinessConfig,
    topic: String,
    extra: ExtraMetrics,
    snapshots: Option<Arc<LocalSnapshots>>,
}

pub fn router(
    status: watch::Receiver<Status>,
    readiness: ReadinessConfig,
    topic: String,
    extra: ExtraMetrics,
    snapshots: Option<Arc<LocalSnapshots>>,
) -> Router {
    let shared = Arc::new(Shared { status, readiness, topic, extra, snapshots });
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/admin/position", get(position))
        .route("/admin/snapshot", post(snapshot))
        .with_state(shared)
}

/// Serves the router until the process ends.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await
}

async fn ready(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let status = s.status.borrow().clone();
    let o = status.observed(Instant::now(), std::time::SystemTime::now());
    let r = readiness(&o, &s.readiness);
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": r.ready,
        "failing": r.failing,
        "caught_up": o.caught_up,
        "lag_records": o.lag_records,
        "seconds_since_last_record": o.silence.map(|d| d.as_secs_f64()),
        "head_block": status.head_block,
        "head_age_seconds": o.head_age.map(|d| d.as_secs()),
        "publisher": o.publisher.as_ref().map(|p| p.describe()),
        "client_head": status.client_head.map(|c| c.number),
    });
    (code, Json(body))
}

async fn position(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let st = s.status.borrow().clone();
    let Some(p) = st.position else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "empty database: nothing applied yet"})),
        );
    };
    (
        StatusCode::OK,
        Json(json!({
            "topic": s.topic,
            "kafka_offset": p.kafka_offset,
            "sequence": p.sequence,
            "block_number": st.head_block,
            "block_hash": st.head_hash,
        })),
    )
}

async fn snapshot(State(s): State<Arc<Shared>>, uri: Uri) -> impl IntoResponse {
    let Some(snapshots) = s.snapshots.clone() else {
        let msg = "local snapshots are off: start the replica with --snapshot-dir";
        return (StatusCode::NOT_FOUND, Json(json!({ "error": msg })));
    };
    let name =
        uri.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name="))).map(str::to_owned);
    // A checkpoint flushes the memtable and links files: blocking work, off the async threads.
    let taken = tokio::task::spawn_blocking(move || snapshots.take(name.as_deref())).await;
    match taken {
        Ok(Ok(info)) => {
            tracing::info!(path = %info.path.display(), sequence = info.sequence, "local snapshot taken");
            (StatusCode::OK, Json(json!(info)))
        }
        Ok(Err(e)) => {
            let code = match e {
                SnapshotError::BadName(_) => StatusCode::BAD_REQUEST,
                SnapshotError::Exists(_) => StatusCode::CONFLICT,
                SnapshotError::Empty => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (code, Json(json!({ "error": e.to_string() })))
        }
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": format!("snapshot task: {e}") })))
        }
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> String {
    let st = s.status.borrow().clone();
    let o = st.observed(Instant::now(), std::time::SystemTime::now());
    let r = readiness(&o, &s.readiness);
    let mut out = String::new();
    gauge(&mut out, "ready", "gauge", "1 while the replica is ready for traffic.", r.ready as u8 as f64);
    gauge(
        &mut out,
        "caught_up",
        "gauge",
        "1 once replayed to the topic's end since start.",
        o.caught_up as u8 as f64,
    );
    gauge(&mut out, "head_block", "gauge", "Newest block applied.", st.head_block.unwrap_or(0) as f64);
    gauge(
        &mut out,
        "applied_sequence",
        "gauge",
        "Sequence of the last record applied.",
        st.position.map_or(0, |p| p.sequence) as f64,
    );
    gauge(
        &mut out,
        "applied_offset",
        "gauge",
        "Kafka offset of the last record applied.",
        st.position.map_or(-1, |p| p.kafka_offset) as f64,
    );
    gauge(
        &mut out,
        "lag_records",
        "gauge",
        "Messages behind the topic's high watermark.",
        o.lag_records.unwrap_or(-1) as f64,
    );
    gauge(
        &mut out,
        "serving_lag_records",
        "gauge",
        "Messages behind the topic's high watermark while ready for traffic; no sample while not (a replica \
         catching up after a scale-out is not a serving replica falling behind).",
        o.lag_records.filter(|_| r.ready).map(|l| l as f64),
    );
    gauge(
        &mut out,
        "seconds_since_last_record",
        "gauge",
        "Seconds since the last record from the publisher.",
        o.silence.map_or(-1.0, |d| d.as_secs_f64()),
    );
    gauge(
        &mut out,
        "records_applied_total",
        "counter",
        "Records applied since start.",
        st.records_applied as f64,
    );
    gauge(
        &mut out,
        "records_prepared_early_total",
        "counter",
        "Records decoded and prepared while the record before them was being written (catching up).",
        st.records_prepared_early as f64,
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    gauge(&mut out,
        "head_age_seconds",
        "gauge",
        "Seconds between now and the head block's timestamp: how far behind the chain the replica serves (no \
         sample before the first block).",
        st.head_timestamp.map(|t| now.saturating_sub(t) as f64),
    );
    gauge(
        &mut out,
        "publisher_state",
        "gauge",
        "The publisher's state from its last heartbeat: 0 following, 1 client unreachable, 2 stuck on a \
         block, 3 stopped; -1 before the first heartbeat.",
        st.publisher.as_ref().map_or(-1.0, |p| p.code() as f64),
    );
    gauge(
        &mut out,
        "publisher_trouble_seconds",
        "gauge",
        "How long the publisher has reported trouble (client unreachable, stuck); 0 while following.",
        o.publisher_trouble_for.map_or(0.0, |d| d.as_secs_f64()),
    );
    gauge(
        &mut out,
        "client_head_block",
        "gauge",
        "The execution client's head block as the publisher last reported it.",
        st.client_head.map_or(-1.0, |c| c.number as f64),
    );
    if let Some(extra) = s.extra.get() {
        out.push_str(&extra());
    }
    out
}

/// One gauge or counter in Prometheus text. A value not known (yet) is written as no sample at all, never a
/// stand-in number: an alarm on the fleet's minimum or maximum must not see one.
fn gauge(out: &mut String, name: &str, kind: &str, help: &str, v: impl Into<Option<f64>>) {
    let _ = writeln!(out, "# HELP ether_cattle_replica_{name} {help}");
    let _ = writeln!(out, "# TYPE ether_cattle_replica_{name} {kind}");
    if let Some(v) = v.into() {
        let _ = writeln!(out, "ether_cattle_replica_{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn render(status: Status) -> String {
        let (_tx, rx) = watch::channel(status);
        let shared = Arc::new(Shared {
            status: rx,
            readiness: ReadinessConfig::default(),
            topic: "t".into(),
            extra: ExtraMetrics::default(),
            snapshots: None,
        });
        metrics(State(shared)).await
    }

    /// The value lines of a series (name and a space: not a longer name that starts the same).
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        let prefix = format!("ether_cattle_replica_{name} ");
        text.lines().filter(|l| l.starts_with(&prefix)).collect()
    }

    #[tokio::test]
    async fn unknown_values_have_no_sample_and_serving_lag_is_sampled_only_while_ready() {
        let starting = render(Status::default()).await;
        assert!(samples(&starting, "head_age_seconds").is_empty(), "{starting}");
        assert!(samples(&starting, "serving_lag_records").is_empty(), "{starting}");
        assert!(starting.contains("# TYPE ether_cattle_replica_head_age_seconds gauge"), "{starting}");

        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let catching_up = Status {
            head_block: Some(5),
            head_timestamp: Some(now - 7),
            high_watermark: Some(1000),
            next_offset: 10,
            last_record_at: Some(Instant::now()),
            ..Status::default()
        };
        let text = render(catching_up.clone()).await;
        assert_eq!(samples(&text, "head_age_seconds"), ["ether_cattle_replica_head_age_seconds 7"], "{text}");
        assert_eq!(samples(&text, "lag_records"), ["ether_cattle_replica_lag_records 990"], "{text}");
        assert!(samples(&text, "serving_lag_records").is_empty(), "not ready: {text}");

        let serving = Status { caught_up: true, high_watermark: Some(12), ..catching_up };
        let text = render(serving).await;
        assert_eq!(samples(&text, "ready"), ["ether_cattle_replica_ready 1"], "{text}");
        assert_eq!(
            samples(&text, "serving_lag_records"),
            ["ether_cattle_replica_serving_lag_records 2"],
            "{text}"
        );
    }
}

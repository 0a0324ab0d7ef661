//! Per-method RPC counts, errors and latency summaries (p50, p99), kept with the `metrics` crate's types in
//! a Prometheus recorder of the server's own and rendered as Prometheus text for the replica's `/metrics`.
//!
//! The recorder is not installed as the process's global one: each server (a test process runs several)
//! counts its own requests. Method names come from the network, so only registered methods get their own
//! series; anything else is counted as `other` (a client cannot grow the metrics without bound).

use std::collections::HashMap;

use metrics::{Counter, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const REQUESTS: &str = "ether_cattle_replica_rpc_requests_total";
const ERRORS: &str = "ether_cattle_replica_rpc_errors_total";
const SECONDS: &str = "ether_cattle_replica_rpc_request_duration_seconds";
/// The series that every method not registered on the server counts under.
const OTHER: &str = "other";

struct Method {
    calls: Counter,
    errors: Counter,
    seconds: Histogram,
}

pub struct RpcMetrics {
    /// Holds the series; `handle` renders them.
    _recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    by_method: HashMap<String, Method>,
}

impl RpcMetrics {
    /// Series for every method in `known` and for `other`, registered up front (a request only looks its
    /// method up).
    pub fn new(known: impl IntoIterator<Item = String>) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_quantiles(&[0.5, 0.99])
            // Only fails for an empty or out-of-range quantile list, which the line above is not.
            .expect("quantiles 0.5 and 0.99 are valid")
            .build_recorder();
        let describe = |name: &'static str, unit, help: &'static str| {
            recorder.describe_counter(KeyName::from_const_str(name), unit, SharedString::const_str(help));
        };
        describe(REQUESTS, None, "JSON-RPC calls by method.");
        describe(ERRORS, None, "JSON-RPC calls answered with an error, by method.");
        recorder.describe_histogram(
            KeyName::from_const_str(SECONDS),
            Some(Unit::Seconds),
            SharedString::const_str("Time spent answering, by method (p50 and p99 since the last scrape)."),
        );
        static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
        let mut by_method = HashMap::new();
        for method in known.into_iter().chain([OTHER.to_owned()]) {
            let key = |name: &'static str| Key::from_parts(name, vec![Label::new("method", method.clone())]);
            let m = Method {
                calls: recorder.register_counter(&key(REQUESTS), &META),
                errors: recorder.register_counter(&key(ERRORS), &META),
                seconds: recorder.register_histogram(&key(SECONDS), &META),
            };
            by_method.insert(method, m);
        }
        Self { handle: recorder.handle(), _recorder: recorder, by_method }
    }

    pub(crate) fn record(&self, method: &str, seconds: f64, error: bool) {
        let Some(m) = self.by_method.get(method).or_else(|| self.by_method.get(OTHER)) else { return };
        m.calls.increment(1);
        if error {
            m.errors.increment(1);
        }
        m.seconds.record(seconds);
    }

    /// Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        let mismatches = crate::exec::MISMATCHES.load(std::sync::atomic::Ordering::Relaxed);
        text.push_str(&format!(
            "# HELP ether_cattle_replica_reexecution_mismatches_total Re-executed transactions whose gas \
             differed from their stored receipt (each answered an error, never a trace).\n\
             # TYPE ether_cattle_replica_reexecution_mismatches_total counter\n\
             ether_cattle_replica_reexecution_mismatches_total {mismatches}\n"
        ));
        text.push_str(&crate::filters::COUNTS.render());
        text
    }
}

/// The trie's recent past a replica keeps for proofs below the head ([`ec_store::TrieHistoryStats`]).
pub fn proof_history(stats: ec_store::TrieHistoryStats) -> String {
    let mut text = String::new();
    #[rustfmt::skip]
    let series: [(&str, &str, &str, u64); 4] = [
        ("proof_history_blocks", "gauge", "Consecutive blocks up to the head whose trie changes are kept in memory: \
          eth_getProof at those blocks reads the nodes as they were.", stats.blocks),
        ("proof_history_bytes", "gauge", "Memory those blocks' trie changes take (--proof-history-mb bounds it).",
          stats.bytes),
        ("proofs_from_history_total", "counter", "Proofs below the head read from the blocks kept.",
          stats.proofs_read),
        ("proofs_walked_total", "counter", "Proofs below the head walked over every key changed since (a block \
          not kept: caught up in a group, or before a restart).", stats.proofs_walked),
    ];
    for (name, kind, help, value) in series {
        text.push_str(&format!(
            "# HELP ether_cattle_replica_{name} {help}\n# TYPE ether_cattle_replica_{name} {kind}\n\
             ether_cattle_replica_{name} {value}\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tries_recent_past_has_its_four_series() {
        let stats =
            ec_store::TrieHistoryStats { blocks: 128, bytes: 5_000_000, proofs_read: 7, proofs_walked: 2 };
        let text = proof_history(stats);
        for line in [
            "ether_cattle_replica_proof_history_blocks 128",
            "ether_cattle_replica_proof_history_bytes 5000000",
            "ether_cattle_replica_proofs_from_history_total 7",
            "ether_cattle_replica_proofs_walked_total 2",
            "# TYPE ether_cattle_replica_proofs_walked_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn known_methods_have_their_own_series_and_the_rest_count_as_other() {
        let m = RpcMetrics::new(["eth_chainId".to_owned()]);
        m.record("eth_chainId", 0.001, false);
        m.record("eth_chainId", 0.003, true);
        m.record("made_up", 0.002, false);
        let text = m.render();
        assert!(text.contains("ether_cattle_replica_rpc_requests_total{method=\"eth_chainId\"} 2"), "{text}");
        assert!(text.contains("ether_cattle_replica_rpc_errors_total{method=\"eth_chainId\"} 1"), "{text}");
        assert!(text.contains("ether_cattle_replica_rpc_requests_total{method=\"other\"} 1"), "{text}");
        assert!(!text.contains("made_up"), "{text}");
        assert!(
            text.contains(
                "ether_cattle_replica_rpc_request_duration_seconds{method=\"eth_chainId\",quantile=\"0.99\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ether_cattle_replica_rpc_request_duration_seconds_count{method=\"eth_chainId\"} 2"
            ),
            "{text}"
        );
    }
}

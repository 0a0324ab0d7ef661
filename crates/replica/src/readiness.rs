//! Readiness for the load balancer: a pure decision from what the replay loop knows.
//!
//! Ready means: the replica has replayed to the topic's end at least once since it started, it is not more
//! than `max_lag_records` messages behind the high watermark, and it has received a record from the
//! publisher within `max_silence` (heartbeats arrive every few seconds even without blocks, so silence means
//! the publisher, or the path to it, is gone and this replica's data is going stale).

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessConfig {
    pub max_lag_records: i64,
    pub max_silence: Duration,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self { max_lag_records: 50, max_silence: Duration::from_secs(30) }
    }
}

/// The facts the decision needs, measured by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub caught_up: bool,
    /// Messages between the next offset to read and the high watermark; `None` when unknown.
    pub lag_records: Option<i64>,
    /// Time since the last record was received; `None` when none has been since start.
    pub silence: Option<Duration>,
    /// The process was asked to stop (SIGTERM) and is draining: still serving, but leaving the balancer.
    pub draining: bool,
    /// JSON-RPC is configured but its port is not open yet (it opens once caught up): a balancer that routed
    /// here now would get refused connections.
    pub rpc_pending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Every condition that fails, in words, for the 503 body and the logs.
    pub failing: Vec<String>,
}

pub fn readiness(o: &Observed, cfg: &ReadinessConfig) -> Readiness {
    let mut failing = Vec::new();
    if !o.caught_up {
        failing.push("replaying: not yet caught up with the topic since start".to_string());
    }
    match o.lag_records {
        Some(lag) if lag > cfg.max_lag_records => {
            failing.push(format!("lagging: {lag} messages behind the topic (limit {})", cfg.max_lag_records))
        }
        Some(_) => {}
        None => failing.push("lag unknown: the broker's high watermark has not been read".to_string()),
    }
    match o.silence {
        Some(s) if s > cfg.max_silence => failing.push(format!(
            "publisher silent: no record for {:.0}s (limit {:.0}s)",
            s.as_secs_f64(),
            cfg.max_silence.as_secs_f64()
        )),
        Some(_) => {}
        None => failing.push("publisher silent: no record received since start".to_string()),
    }
    if o.draining {
        failing.push("shutting down: draining in-flight requests".to_string());
    }
    if o.rpc_pending {
        failing.push("JSON-RPC not open yet".to_string());
    }
    Readiness { ready: failing.is_empty(), failing }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_table() {
        let cfg = ReadinessConfig { max_lag_records: 10, max_silence: Duration::from_secs(30) };
        let s = |secs| Some(Duration::from_secs(secs));
        let cases = [
            (
                "caught up, fresh",
                Observed {
                    caught_up: true,
                    lag_records: Some(0),
                    silence: s(1),
                    draining: false,
                    rpc_pending: false,
                },
                true,
                0,
            ),
            (
                "at the lag limit",
                Observed {
                    caught_up: true,
                    lag_records: Some(10),
                    silence: s(1),
                    draining: false,
                    rpc_pending: false,
                },
                true,
                0,
            ),
            (
                "over the lag limit",
                Observed {
                    caught_up: true,
                    lag_records: Some(11),
                    silence: s(1),
                    draining: false,
                    rpc_pending: false,
                },
                false,
                1,
            ),
            (
                "publisher silent",
                Observed {
                    caught_up: true,
                    lag_records: Some(0),
                    silence: s(31),
                    draining: false,
                    rpc_pending: false,
                },
                false,
                1,
            ),
            (
                "still replaying",
                Observed {
                    caught_up: false,
                    lag_records: Some(500),
                    silence: s(0),
                    draining: false,
                    rpc_pending: false,
                },
                false,
                2,
            ),
            (
                "nothing known",
                Observed {
                    caught_up: false,
                    lag_records: None,
                    silence: None,
                    draining: false,
                    rpc_pending: false,
                },
                false,
                3,
            ),
            (
                "draining after SIGTERM",
                Observed {
                    caught_up: true,
                    lag_records: Some(0),
                    silence: s(1),
                    draining: true,
                    rpc_pending: false,
                },
                false,
                1,
            ),
            (
                "caught up, but the RPC port is not open yet",
                Observed {
                    caught_up: true,
                    lag_records: Some(0),
                    silence: s(1),
                    draining: false,
                    rpc_pending: true,
                },
                false,
                1,
            ),
            (
                "silence at the limit",
                Observed {
                    caught_up: true,
                    lag_records: Some(0),
                    silence: s(30),
                    draining: false,
                    rpc_pending: false,
                },
                true,
                0,
            ),
        ];
        for (name, o, ready, failing) in cases {
            let r = readiness(&o, &cfg);
            assert_eq!((r.ready, r.failing.len()), (ready, failing), "{name}: {:?}", r.failing);
        }
    }
}

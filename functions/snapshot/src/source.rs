//! Whether the snapshot source may be snapshotted now: the pure decision.
//!
//! A snapshot is what every new replica starts from and what the retention margin is measured from. A source
//! that is not ready (replaying after a restart, not hearing its publisher, draining) or that lags the topic
//! would make a snapshot that is stale from the start, and, taken every schedule, would hide the problem: the
//! snapshot age stays low while the offset stands still. So such a source is refused, saying why, and the
//! snapshot-age and retention alarms report it instead.

use serde::Deserialize;

/// The body of the replica's `GET /health/ready` (200 or 503, the same JSON either way).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SourceHealth {
    pub ready: bool,
    /// The readiness conditions that fail, in words.
    #[serde(default)]
    pub failing: Vec<String>,
    /// Messages behind the topic's high watermark; `None` when the replica has not read it.
    pub lag_records: Option<i64>,
}

impl SourceHealth {
    /// A ready source with `lag` messages behind (tests and fixtures).
    pub fn ready(lag: i64) -> Self {
        Self { ready: true, failing: Vec::new(), lag_records: Some(lag) }
    }
}

/// `Ok` when the source is ready and at most `max_lag_records` behind; otherwise why not.
pub fn check_source(h: &SourceHealth, max_lag_records: i64) -> Result<(), String> {
    if !h.ready {
        let why = if h.failing.is_empty() { "no reason given".to_string() } else { h.failing.join("; ") };
        return Err(format!("the snapshot source is not ready ({why})"));
    }
    match h.lag_records {
        None => Err("the snapshot source does not know its lag (no high watermark read)".into()),
        Some(lag) if lag > max_lag_records => Err(format!(
            "the snapshot source is {lag} messages behind the topic (limit {max_lag_records}, MAX_SOURCE_LAG_RECORDS)"
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_table() {
        let unready = |failing: &[&str], lag| SourceHealth {
            ready: false,
            failing: failing.iter().map(|s| s.to_string()).collect(),
            lag_records: lag,
        };
        let cases = [
            ("ready, caught up", SourceHealth::ready(0), None),
            ("ready, at the limit", SourceHealth::ready(50), None),
            ("ready but over the snapshot limit", SourceHealth::ready(51), Some("51 messages behind")),
            (
                "ready, lag unknown",
                SourceHealth { lag_records: None, ..SourceHealth::ready(0) },
                Some("does not know its lag"),
            ),
            (
                "replaying",
                unready(&["replaying: not yet caught up with the topic since start"], Some(9000)),
                Some("not ready (replaying"),
            ),
            (
                "publisher silent",
                unready(&["publisher silent: no record for 45s (limit 30s)"], Some(0)),
                Some("publisher silent"),
            ),
            ("unready without a reason", unready(&[], Some(0)), Some("no reason given")),
        ];
        for (name, h, refused) in cases {
            match (check_source(&h, 50), refused) {
                (Ok(()), None) => {}
                (Err(why), Some(want)) => assert!(why.contains(want), "{name}: {why}"),
                (got, want) => panic!("{name}: got {got:?}, want refusal {want:?}"),
            }
        }
    }

    #[test]
    fn parses_the_replicas_health_body() {
        let body = r#"{"ready":false,"failing":["lagging: 900 messages behind the topic (limit 50)"],
            "caught_up":true,"lag_records":900,"seconds_since_last_record":0.2,"head_block":12}"#;
        let h: SourceHealth = serde_json::from_str(body).expect("parse");
        assert_eq!((h.ready, h.lag_records, h.failing.len()), (false, Some(900), 1));
    }
}

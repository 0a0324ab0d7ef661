//! Readiness for the load balancer: a pure decision from what the replay loop knows.
//!
//! Ready means all of:
//! - the replica has replayed to the topic's end at least once since it started, and is not more than
//!   `max_lag_records` messages behind the high watermark;
//! - it has received a record from the publisher within `max_silence` (heartbeats arrive every few seconds
//!   even without blocks, so silence means the publisher, or the path to it, is gone);
//! - its head block is younger than the head-age limit (a client that stopped producing blocks, or a
//!   publisher that cannot publish them, while heartbeats keep flowing): `max_head_age`, else the chain's
//!   default ([`chain_default_max_head_age`]);
//! - the publisher reports itself following its client, or has been in trouble (client unreachable, stuck on
//!   a block) for no longer than `publisher_grace`; a publisher that reports it stopped fails at once;
//! - the publisher keeps up with its client: the client's head in the last heartbeat is at most
//!   `max_behind_client_blocks` past the replica's head (on every chain, a genesis-file devnet included,
//!   where the head-age limit is off by default).

use std::time::Duration;

use ec_log::{ChainSpecSource, PublisherState};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessConfig {
    pub max_lag_records: i64,
    pub max_silence: Duration,
    /// Oldest head block served. `None`: the chain's default; `Some(ZERO)`: no limit.
    pub max_head_age: Option<Duration>,
    /// How long the publisher may report trouble (client unreachable, a block failing) before replicas
    /// leave the balancer. Short blips (a client restart) stay invisible to users.
    pub publisher_grace: Duration,
    /// Most blocks the client's head (as the last heartbeat reported it) may be past the replica's head; 0:
    /// no limit.
    pub max_behind_client_blocks: u64,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            max_lag_records: 50,
            max_silence: Duration::from_secs(30),
            max_head_age: None,
            publisher_grace: Duration::from_secs(20),
            max_behind_client_blocks: 16,
        }
    }
}

/// The head-age limit when none is configured: five slots (60 s) on the public networks this build knows,
/// whose blocks come every 12 s; none on a chain from a genesis file, whose block time is unknown (a dev
/// chain may mine only on demand). Set `--max-head-age` for those.
pub fn chain_default_max_head_age(spec: &ChainSpecSource) -> Option<Duration> {
    match spec {
        ChainSpecSource::Named(_) => Some(Duration::from_secs(60)),
        ChainSpecSource::Config(_) => None,
    }
}

/// The facts the decision needs, measured by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Wall-clock age of the head block (now minus its timestamp); `None` before the first block.
    pub head_age: Option<Duration>,
    /// The chain's default head-age limit ([`chain_default_max_head_age`]), once the chain is known.
    pub chain_max_head_age: Option<Duration>,
    /// What the last heartbeat said of the publisher; `None` before the first heartbeat.
    pub publisher: Option<PublisherState>,
    /// How long the publisher's trouble has lasted (now minus the state's `since`).
    pub publisher_trouble_for: Option<Duration>,
    /// Blocks the client's head (last heartbeat) is past the replica's head; `None` before both are known.
    pub behind_client: Option<u64>,
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
    let head_limit = cfg.max_head_age.or(o.chain_max_head_age).filter(|d| !d.is_zero());
    if let (Some(limit), Some(age)) = (head_limit, o.head_age) {
        if age > limit {
            failing.push(format!(
                "stale head: the head block is {:.0}s old (limit {:.0}s)",
                age.as_secs_f64(),
                limit.as_secs_f64()
            ));
        }
    }
    match &o.publisher {
        Some(PublisherState::Stopped { error }) => failing.push(format!("publisher stopped: {error}")),
        Some(state @ (PublisherState::ClientUnreachable { .. } | PublisherState::Stuck { .. })) => {
            let lasted = o.publisher_trouble_for.unwrap_or_default();
            if lasted > cfg.publisher_grace {
                failing.push(format!(
                    "publisher in trouble for {:.0}s (grace {:.0}s): {}",
                    lasted.as_secs_f64(),
                    cfg.publisher_grace.as_secs_f64(),
                    state.describe()
                ));
            }
        }
        Some(PublisherState::Following) | None => {}
    }
    if let Some(behind) =
        o.behind_client.filter(|b| cfg.max_behind_client_blocks > 0 && *b > cfg.max_behind_client_blocks)
    {
        failing.push(format!(
            "publisher behind its client: the client's head is {behind} blocks past this replica's (limit {})",
            cfg.max_behind_client_blocks
        ));
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

    fn healthy() -> Observed {
        Observed {
            caught_up: true,
            lag_records: Some(0),
            silence: Some(Duration::from_secs(1)),
            draining: false,
            rpc_pending: false,
            head_age: Some(Duration::from_secs(5)),
            chain_max_head_age: None,
            publisher: Some(PublisherState::Following),
            publisher_trouble_for: None,
            behind_client: Some(1),
        }
    }

    #[test]
    fn readiness_table() {
        let cfg = ReadinessConfig {
            max_lag_records: 10,
            max_silence: Duration::from_secs(30),
            max_head_age: None,
            publisher_grace: Duration::from_secs(20),
            max_behind_client_blocks: 16,
        };
        let s = |secs| Some(Duration::from_secs(secs));
        let unreachable = PublisherState::ClientUnreachable { since_ms: 0, error: "refused".into() };
        let stuck = PublisherState::Stuck { number: 9, since_ms: 0, error: "trace".into() };
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Box<dyn Fn(&mut Observed)>, Option<Duration>, bool, usize)> = vec![
            ("caught up, fresh", Box::new(|_| {}), None, true, 0),
            (
                "the publisher at its limit behind the client",
                Box::new(|o| o.behind_client = Some(16)),
                None,
                true,
                0,
            ),
            (
                "the publisher past its limit behind the client",
                Box::new(|o| o.behind_client = Some(17)),
                None,
                false,
                1,
            ),
            ("at the lag limit", Box::new(|o| o.lag_records = Some(10)), None, true, 0),
            ("over the lag limit", Box::new(|o| o.lag_records = Some(11)), None, false, 1),
            ("publisher silent", Box::new(|o| o.silence = s(31)), None, false, 1),
            ("silence at the limit", Box::new(|o| o.silence = s(30)), None, true, 0),
            (
                "still replaying",
                Box::new(|o| {
                    o.caught_up = false;
                    o.lag_records = Some(500);
                }),
                None,
                false,
                2,
            ),
            (
                "nothing known",
                Box::new(|o| {
                    *o = Observed { caught_up: false, lag_records: None, silence: None, ..healthy() };
                    o.head_age = None;
                    o.publisher = None;
                }),
                None,
                false,
                3,
            ),
            ("draining after SIGTERM", Box::new(|o| o.draining = true), None, false, 1),
            (
                "caught up, but the RPC port is not open yet",
                Box::new(|o| o.rpc_pending = true),
                None,
                false,
                1,
            ),
            // Head age: configured, the chain's default, or off.
            ("old head, no limit anywhere", Box::new(|o| o.head_age = s(3600)), None, true, 0),
            ("old head, configured limit", Box::new(|o| o.head_age = s(61)), s(60), false, 1),
            ("head at the configured limit", Box::new(|o| o.head_age = s(60)), s(60), true, 0),
            (
                "old head, the chain's default",
                Box::new(|o| {
                    o.head_age = s(61);
                    o.chain_max_head_age = s(60);
                }),
                None,
                false,
                1,
            ),
            (
                "configured limit wins over the chain's",
                Box::new(|o| {
                    o.head_age = s(61);
                    o.chain_max_head_age = s(60);
                }),
                s(120),
                true,
                0,
            ),
            (
                "limit switched off (zero)",
                Box::new(|o| {
                    o.head_age = s(6100);
                    o.chain_max_head_age = s(60);
                }),
                Some(Duration::ZERO),
                true,
                0,
            ),
            ("no head block yet", Box::new(|o| o.head_age = None), s(60), true, 0),
            // The publisher's own report.
            (
                "client unreachable within the grace",
                Box::new(move |o| {
                    o.publisher = Some(unreachable.clone());
                    o.publisher_trouble_for = s(5);
                }),
                None,
                true,
                0,
            ),
            (
                "client unreachable past the grace",
                Box::new({
                    let st = PublisherState::ClientUnreachable { since_ms: 0, error: "refused".into() };
                    move |o| {
                        o.publisher = Some(st.clone());
                        o.publisher_trouble_for = s(21);
                    }
                }),
                None,
                false,
                1,
            ),
            (
                "stuck on a block past the grace",
                Box::new(move |o| {
                    o.publisher = Some(stuck.clone());
                    o.publisher_trouble_for = s(60);
                }),
                None,
                false,
                1,
            ),
            (
                "publisher stopped: fails at once",
                Box::new(|o| o.publisher = Some(PublisherState::Stopped { error: "undecodable".into() })),
                None,
                false,
                1,
            ),
            ("no heartbeat yet is not itself a failure", Box::new(|o| o.publisher = None), None, true, 0),
        ];
        for (name, change, max_head_age, ready, failing) in cases {
            let mut o = healthy();
            change(&mut o);
            let cfg = ReadinessConfig { max_head_age, ..cfg.clone() };
            let r = readiness(&o, &cfg);
            assert_eq!((r.ready, r.failing.len()), (ready, failing), "{name}: {:?}", r.failing);
        }
    }

    #[test]
    fn the_chain_default_covers_known_networks_only() {
        assert_eq!(
            chain_default_max_head_age(&ChainSpecSource::Named("mainnet".into())),
            Some(Duration::from_secs(60))
        );
        assert_eq!(chain_default_max_head_age(&ChainSpecSource::Config("{}".into())), None);
    }

    #[test]
    fn failures_are_named() {
        let o = Observed {
            head_age: Some(Duration::from_secs(90)),
            publisher: Some(PublisherState::Stopped {
                error: "block 7: unknown transaction type 0x7f".into(),
            }),
            ..healthy()
        };
        let cfg =
            ReadinessConfig { max_head_age: Some(Duration::from_secs(60)), ..ReadinessConfig::default() };
        let r = readiness(&o, &cfg);
        assert_eq!(
            r.failing,
            vec![
                "stale head: the head block is 90s old (limit 60s)".to_string(),
                "publisher stopped: block 7: unknown transaction type 0x7f".to_string()
            ]
        );
    }
}

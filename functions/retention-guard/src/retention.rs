//! How long the newest snapshot can still resume: the pure margin and status decision.
//!
//! A replica started from a snapshot at offset `S` resumes at `S + 1`, so the snapshot is usable while the
//! partition still holds `S + 1` (or `S + 1` is the next offset to be written). The clock that matters is
//! therefore the time record `S + 1` was written, not the time the snapshot was taken: a snapshot of a
//! source that was stuck an hour behind is an hour closer to deletion than its creation time says. Two limits
//! delete records:
//! - time (`retention.ms`): a record is deleted no earlier than `retention.ms` after its timestamp (Kafka
//!   deletes whole segments once their newest record is that old), so the margin is
//!   `written(S + 1) + retention.ms - now`, a lower bound;
//! - size (`retention.bytes`): the broker keeps a window of data; at a steady write rate, that window spans the
//!   age of its oldest record, so record `S + 1` goes when it is that old: margin
//!   `written(S + 1) - oldest record's time`.
//!
//! When `S + 1` is not written yet it will be written no earlier than now. The margin is the smaller of the two
//! limits that apply. An unreadable input makes the status `Unknown`, never ok.

use serde::Serialize;

/// One retention limit as the broker reports it (`-1` is unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Limit {
    Unlimited,
    Value(i64),
    Unknown,
}

impl Limit {
    /// A Kafka config value: `-1` (or any negative) is unlimited; unparseable is unknown.
    pub fn parse(v: Option<&str>) -> Self {
        match v.map(str::trim).map(str::parse::<i64>) {
            Some(Ok(n)) if n < 0 => Limit::Unlimited,
            Some(Ok(n)) => Limit::Value(n),
            _ => Limit::Unknown,
        }
    }
}

/// The effective retention of the topic and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub ms: Limit,
    pub bytes: Limit,
    pub source: String,
}

impl Retention {
    pub fn is_known(&self) -> bool {
        self.ms != Limit::Unknown && self.bytes != Limit::Unknown
    }
}

/// What the partition holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionState {
    /// The first offset really available (see the Kafka adapter: not always the reported low watermark).
    pub earliest: i64,
    /// The next offset to be written.
    pub high: i64,
    /// Timestamp of the record at `earliest`, ms since the epoch; `None` when the partition is empty.
    pub oldest_record_ms: Option<i64>,
}

/// The newest completed snapshot's position, and the time of the record it resumes at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SnapshotPoint {
    pub kafka_offset: i64,
    /// Timestamp of the record at `kafka_offset + 1`, ms since the epoch; `None` when it could not be read
    /// (it is not consulted when that offset is not written yet).
    pub next_record_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    /// The `RetentionStatus` metric (docs/aws-contract.md).
    pub fn metric(self) -> f64 {
        match self {
            Status::Ok => 0.0,
            Status::Warning => 1.0,
            Status::Critical => 2.0,
            Status::Unknown => 3.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub status: Status,
    /// Seconds before the snapshot can no longer resume; `None` when unlimited or unknown.
    pub margin_secs: Option<i64>,
    pub reason: String,
}

/// `RetentionMarginSeconds` published for an unlimited margin: ten years, far above any alarm threshold.
pub const UNLIMITED_MARGIN_SECS: i64 = 10 * 365 * 86_400;

pub fn assess(
    snapshot: Option<SnapshotPoint>,
    retention: &Retention,
    partition: Option<PartitionState>,
    allowance_secs: i64,
    now: i64,
) -> Assessment {
    let unknown = |reason: String| Assessment { status: Status::Unknown, margin_secs: None, reason };
    let Some(snap) = snapshot else {
        return unknown("no completed snapshot with a position".into());
    };
    let Some(part) = partition else {
        return unknown("the partition's offsets could not be read".into());
    };
    let next = snap.kafka_offset + 1;
    if next < part.earliest {
        return Assessment {
            status: Status::Critical,
            margin_secs: Some(0),
            reason: format!(
                "the snapshot's next offset {next} is gone: the earliest offset available is {}",
                part.earliest
            ),
        };
    }
    // The topic ends before the snapshot: recreated, or emptied by retention on a broker that then reports
    // its offsets as 0 (tansu). A replica refuses to start from it either way.
    if next > part.high {
        return Assessment {
            status: Status::Critical,
            margin_secs: Some(0),
            reason: format!(
                "the snapshot's offset {} is past the topic's end {}: the topic was recreated or emptied",
                snap.kafka_offset, part.high
            ),
        };
    }
    if !retention.is_known() {
        return unknown(format!("the topic's retention is unknown ({retention:?})"));
    }
    // When the record the snapshot resumes at was written (seconds); not written yet: no earlier than now.
    let written = if next < part.high {
        match snap.next_record_ms {
            Some(ms) => ms.div_euclid(1000),
            None => {
                return unknown(format!("the time of record {next}, where the snapshot resumes, is unknown"))
            }
        }
    } else {
        now
    };
    let by_time = match retention.ms {
        Limit::Value(ms) => Some(written + ms / 1000 - now),
        _ => None,
    };
    // Size-limited retention: measured from the window the broker holds now. An empty partition is pushing
    // nothing out, so size gives no bound then.
    let by_size = match (retention.bytes, part.oldest_record_ms) {
        (Limit::Value(_), Some(oldest)) => Some(written - oldest.div_euclid(1000)),
        _ => None,
    };
    let margin = match (by_time, by_size) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let Some(margin) = margin else {
        return Assessment {
            status: Status::Ok,
            margin_secs: None,
            reason: "retention is unlimited (or size-limited with an empty partition)".into(),
        };
    };
    let (status, reason) = if margin <= 0 {
        (
            Status::Critical,
            format!(
                "the snapshot is past retention by {}s: its records go at the next retention pass",
                -margin
            ),
        )
    } else if margin < allowance_secs {
        (Status::Warning, format!("{margin}s left, under the troubleshooting allowance of {allowance_secs}s"))
    } else {
        (Status::Ok, format!("{margin}s left"))
    };
    Assessment { status, margin_secs: Some(margin), reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Limit::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;
    const ALLOW: i64 = DAY;

    fn ret(ms: Limit, bytes: Limit) -> Retention {
        Retention { ms, bytes, source: "test".into() }
    }

    fn part(earliest: i64, high: i64, oldest_age_secs: Option<i64>) -> Option<PartitionState> {
        Some(PartitionState { earliest, high, oldest_record_ms: oldest_age_secs.map(|a| (NOW - a) * 1000) })
    }

    /// A snapshot at `offset` whose next record was written `age_secs` ago.
    fn snap(offset: i64, age_secs: i64) -> Option<SnapshotPoint> {
        Some(SnapshotPoint { kafka_offset: offset, next_record_ms: Some((NOW - age_secs) * 1000) })
    }

    #[test]
    fn margin_table() {
        let week = Value(7 * DAY * 1000);
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            Option<SnapshotPoint>,
            Retention,
            Option<PartitionState>,
            Status,
            Option<i64>,
        )> = vec![
            (
                "ok: 1 day old in a 7 day topic",
                snap(100, DAY),
                ret(week, Unlimited),
                part(50, 200, Some(3 * DAY)),
                Status::Ok,
                Some(6 * DAY),
            ),
            (
                "warning: under the allowance",
                snap(100, 6 * DAY + 3600),
                ret(week, Unlimited),
                part(50, 200, Some(7 * DAY)),
                Status::Warning,
                Some(DAY - 3600),
            ),
            (
                "critical: offset already gone",
                snap(100, DAY),
                ret(week, Unlimited),
                part(102, 200, Some(DAY)),
                Status::Critical,
                Some(0),
            ),
            (
                "boundary: next offset is the earliest",
                snap(100, DAY),
                ret(week, Unlimited),
                part(101, 200, Some(DAY)),
                Status::Ok,
                Some(6 * DAY),
            ),
            (
                "boundary: next offset is the end (empty after snapshot): written no earlier than now",
                snap(199, DAY),
                ret(week, Unlimited),
                part(200, 200, None),
                Status::Ok,
                Some(7 * DAY),
            ),
            (
                "stuck source: a fresh snapshot whose next record is 6.5 days old warns",
                snap(100, 6 * DAY + DAY / 2),
                ret(week, Unlimited),
                part(50, 200, Some(7 * DAY)),
                Status::Warning,
                Some(DAY / 2),
            ),
            (
                "next record's time unreadable",
                Some(SnapshotPoint { kafka_offset: 100, next_record_ms: None }),
                ret(week, Unlimited),
                part(50, 200, Some(DAY)),
                Status::Unknown,
                None,
            ),
            (
                "next record's time not needed when it is not written yet",
                Some(SnapshotPoint { kafka_offset: 199, next_record_ms: None }),
                ret(week, Unlimited),
                part(150, 200, Some(DAY)),
                Status::Ok,
                Some(7 * DAY),
            ),
            (
                "critical: past retention but not yet deleted",
                snap(100, 8 * DAY),
                ret(week, Unlimited),
                part(0, 200, Some(9 * DAY)),
                Status::Critical,
                Some(-DAY),
            ),
            (
                "infinite retention",
                snap(100, 300 * DAY),
                ret(Unlimited, Unlimited),
                part(0, 200, Some(400 * DAY)),
                Status::Ok,
                None,
            ),
            (
                "size-limited: window of 2 days, snapshot 1.5 days old",
                snap(100, DAY + DAY / 2),
                ret(Unlimited, Value(1 << 30)),
                part(10, 200, Some(2 * DAY)),
                Status::Warning,
                Some(DAY / 2),
            ),
            (
                "size and time: the tighter wins",
                snap(100, DAY),
                ret(week, Value(1 << 30)),
                part(10, 200, Some(4 * DAY)),
                Status::Ok,
                Some(3 * DAY),
            ),
            (
                "size-limited, empty partition: unlimited",
                snap(199, DAY),
                ret(Unlimited, Value(1 << 30)),
                part(200, 200, None),
                Status::Ok,
                None,
            ),
            (
                "unknown retention.ms",
                snap(100, DAY),
                ret(Unknown, Unlimited),
                part(50, 200, Some(DAY)),
                Status::Unknown,
                None,
            ),
            (
                "unknown retention.bytes",
                snap(100, DAY),
                ret(week, Unknown),
                part(50, 200, Some(DAY)),
                Status::Unknown,
                None,
            ),
            (
                "gone beats unknown retention",
                snap(100, DAY),
                ret(Unknown, Unknown),
                part(150, 200, Some(DAY)),
                Status::Critical,
                Some(0),
            ),
            ("no snapshot", None, ret(week, Unlimited), part(0, 200, Some(DAY)), Status::Unknown, None),
            ("partition unreadable", snap(100, DAY), ret(week, Unlimited), None, Status::Unknown, None),
            (
                "snapshot past the topic's end: recreated or emptied (tansu reports 0, 0)",
                snap(20, DAY),
                ret(Value(3000), Unlimited),
                part(0, 0, None),
                Status::Critical,
                Some(0),
            ),
        ];
        for (name, s, r, p, status, margin) in cases {
            let a = assess(s, &r, p, ALLOW, NOW);
            assert_eq!((a.status, a.margin_secs), (status, margin), "{name}: {}", a.reason);
            assert!(!a.reason.is_empty());
        }
    }

    #[test]
    fn limits_parse_like_kafka() {
        assert_eq!(Limit::parse(Some("-1")), Unlimited);
        assert_eq!(Limit::parse(Some("604800000")), Value(604_800_000));
        assert_eq!(Limit::parse(Some("x")), Unknown);
        assert_eq!(Limit::parse(None), Unknown);
    }
}

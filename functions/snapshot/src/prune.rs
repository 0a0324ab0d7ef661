//! Which snapshots to delete: keep the newest N completed, the newest completed of each of the last D UTC days,
//! and never delete the newest completed snapshot, one still named by a volume or launch template, or one whose
//! state is not final. Incomplete information (names in use unknown) deletes nothing.

use std::collections::BTreeSet;

use ec_functions::{newest_completed, SnapshotRecord, SnapshotState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Completed snapshots kept by recency alone.
    pub keep_newest: usize,
    /// For each of this many UTC days back from today (today included), the newest completed snapshot.
    pub keep_daily_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The newest completed snapshot with a full position: what replicas start from. Never deleted.
    NewestUsable,
    NewestN,
    Daily,
    /// Named by a volume or a launch template.
    InUse,
    /// Not finished: it may still complete.
    Pending,
    /// Failed, but the newest attempt: left for troubleshooting until a later snapshot completes.
    FailedNotSuperseded,
    /// A state this code does not know.
    UnknownState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delete {
    /// Completed, outside the newest-N and daily windows.
    OutsidePolicy,
    /// Failed and older than a completed snapshot.
    FailedSuperseded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep(Keep),
    Delete(Delete),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// One verdict per snapshot, newest first.
    Decided(Vec<(String, Verdict)>),
    /// Not enough information to delete anything safely.
    Refused(String),
}

impl Plan {
    pub fn deletions(&self) -> Vec<&str> {
        match self {
            Plan::Decided(v) => {
                v.iter().filter(|(_, d)| matches!(d, Verdict::Delete(_))).map(|(id, _)| id.as_str()).collect()
            }
            Plan::Refused(_) => vec![],
        }
    }
}

const DAY: i64 = 86_400;

/// `in_use`: snapshot ids a volume or launch template names; `None` when that could not be read.
pub fn plan(
    policy: PrunePolicy,
    snaps: &[SnapshotRecord],
    in_use: Option<&BTreeSet<String>>,
    now: i64,
) -> Plan {
    let Some(in_use) = in_use else {
        return Plan::Refused("the snapshots in use by volumes and launch templates are unknown".into());
    };
    let Some((newest, _)) = newest_completed(snaps) else {
        return Plan::Refused("no completed snapshot with a full position: nothing can be pruned".into());
    };
    let mut sorted: Vec<&SnapshotRecord> = snaps.iter().collect();
    // Newest first; snapshots started in the same second are ordered by the offset they hold.
    let key = |s: &SnapshotRecord| (s.started_at, s.position().map_or(-1, |p| p.kafka_offset), s.id.clone());
    sorted.sort_by_key(|s| std::cmp::Reverse(key(s)));

    let completed: Vec<&SnapshotRecord> =
        sorted.iter().copied().filter(|s| s.state == SnapshotState::Completed).collect();
    let newest_n: BTreeSet<&str> = completed.iter().take(policy.keep_newest).map(|s| s.id.as_str()).collect();
    // Newest first, so the first completed snapshot seen on a day is that day's newest.
    let today = now.div_euclid(DAY);
    let mut daily = BTreeSet::new();
    let mut days_seen = BTreeSet::new();
    for s in &completed {
        let day = s.started_at.div_euclid(DAY).min(today);
        if today - day < i64::from(policy.keep_daily_days) && days_seen.insert(day) {
            daily.insert(s.id.as_str());
        }
    }

    let verdicts = sorted
        .iter()
        .map(|s| {
            let v = if s.id == newest.id {
                Verdict::Keep(Keep::NewestUsable)
            } else if in_use.contains(&s.id) {
                Verdict::Keep(Keep::InUse)
            } else {
                match s.state {
                    SnapshotState::Pending => Verdict::Keep(Keep::Pending),
                    SnapshotState::Other => Verdict::Keep(Keep::UnknownState),
                    SnapshotState::Error if s.started_at > newest.started_at => {
                        Verdict::Keep(Keep::FailedNotSuperseded)
                    }
                    SnapshotState::Error => Verdict::Delete(Delete::FailedSuperseded),
                    SnapshotState::Completed if newest_n.contains(s.id.as_str()) => {
                        Verdict::Keep(Keep::NewestN)
                    }
                    SnapshotState::Completed if daily.contains(s.id.as_str()) => Verdict::Keep(Keep::Daily),
                    SnapshotState::Completed => Verdict::Delete(Delete::OutsidePolicy),
                }
            };
            (s.id.clone(), v)
        })
        .collect();
    Plan::Decided(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ec_functions::snapshots::record;
    use SnapshotState::*;

    const NOW: i64 = 1_700_000_000 - 1_700_000_000 % DAY + 12 * 3600; // noon UTC
    const H: i64 = 3600;

    fn snap(id: &str, state: SnapshotState, hours_ago: i64) -> SnapshotRecord {
        record(id, "c", state, NOW - hours_ago * H, 1_000 - hours_ago)
    }

    fn untagged(id: &str, hours_ago: i64) -> SnapshotRecord {
        let mut s = snap(id, Completed, hours_ago);
        s.tags.retain(|k, _| k == ec_functions::tags::CLUSTER);
        s
    }

    struct Case {
        name: &'static str,
        policy: (usize, u32),
        snaps: Vec<SnapshotRecord>,
        in_use: Option<Vec<&'static str>>,
        deleted: Vec<&'static str>,
        refused: bool,
    }

    #[test]
    fn pruning_table() {
        let cases = vec![
            Case {
                name: "newest N kept, older deleted (no daily window)",
                policy: (2, 0),
                snaps: vec![snap("a", Completed, 1), snap("b", Completed, 2), snap("c", Completed, 3)],
                in_use: Some(vec![]),
                deleted: vec!["c"],
                refused: false,
            },
            Case {
                name: "keep 0 still never deletes the newest completed",
                policy: (0, 0),
                snaps: vec![snap("a", Completed, 1), snap("b", Completed, 2)],
                in_use: Some(vec![]),
                deleted: vec!["b"],
                refused: false,
            },
            Case {
                name: "one a day for D days: each day's newest survives, others go",
                policy: (1, 3),
                snaps: vec![
                    snap("today", Completed, 1),
                    snap("today-old", Completed, 2),
                    snap("yday-new", Completed, 14),
                    snap("yday-old", Completed, 20),
                    snap("2d", Completed, 40),
                    snap("3d", Completed, 64),
                ],
                in_use: Some(vec![]),
                deleted: vec!["3d", "today-old", "yday-old"],
                refused: false,
            },
            Case {
                name: "in use by a volume or launch template is never deleted",
                policy: (1, 0),
                snaps: vec![snap("a", Completed, 1), snap("b", Completed, 2), snap("c", Completed, 3)],
                in_use: Some(vec!["c"]),
                deleted: vec!["b"],
                refused: false,
            },
            Case {
                name: "pending and unknown states are kept; newest usable is newest completed",
                policy: (0, 0),
                snaps: vec![
                    snap("p", Pending, 1),
                    snap("o", Other, 2),
                    snap("a", Completed, 3),
                    snap("b", Completed, 4),
                ],
                in_use: Some(vec![]),
                deleted: vec!["b"],
                refused: false,
            },
            Case {
                name: "failed snapshots: kept while newest attempt, deleted once superseded",
                policy: (5, 0),
                snaps: vec![snap("e-new", Error, 1), snap("a", Completed, 2), snap("e-old", Error, 3)],
                in_use: Some(vec![]),
                deleted: vec!["e-old"],
                refused: false,
            },
            Case {
                name: "a newer completed snapshot without position tags does not displace the newest usable",
                policy: (0, 0),
                snaps: vec![untagged("u", 1), snap("a", Completed, 2), snap("b", Completed, 3)],
                in_use: Some(vec![]),
                deleted: vec!["b", "u"],
                refused: false,
            },
            Case {
                name: "names in use unknown: delete nothing",
                policy: (0, 0),
                snaps: vec![snap("a", Completed, 1), snap("b", Completed, 2)],
                in_use: None,
                deleted: vec![],
                refused: true,
            },
            Case {
                name: "no completed snapshot: delete nothing, even failed ones",
                policy: (0, 0),
                snaps: vec![snap("p", Pending, 1), snap("e", Error, 2)],
                in_use: Some(vec![]),
                deleted: vec![],
                refused: true,
            },
            Case {
                name: "empty list",
                policy: (3, 3),
                snaps: vec![],
                in_use: Some(vec![]),
                deleted: vec![],
                refused: true,
            },
        ];
        for c in cases {
            let in_use: Option<BTreeSet<String>> =
                c.in_use.map(|v| v.into_iter().map(String::from).collect());
            let policy = PrunePolicy { keep_newest: c.policy.0, keep_daily_days: c.policy.1 };
            let plan = plan(policy, &c.snaps, in_use.as_ref(), NOW);
            let mut deleted = plan.deletions();
            deleted.sort();
            assert_eq!(deleted, c.deleted, "{}: {plan:?}", c.name);
            assert_eq!(matches!(plan, Plan::Refused(_)), c.refused, "{}: {plan:?}", c.name);
        }
    }

    #[test]
    fn reasons_are_given() {
        let snaps = vec![snap("a", Completed, 1), snap("b", Completed, 2), snap("c", Completed, 30)];
        let used: BTreeSet<String> = ["c".to_string()].into();
        let Plan::Decided(v) =
            plan(PrunePolicy { keep_newest: 1, keep_daily_days: 0 }, &snaps, Some(&used), NOW)
        else {
            panic!("refused")
        };
        assert_eq!(
            v,
            vec![
                ("a".into(), Verdict::Keep(Keep::NewestUsable)),
                ("b".into(), Verdict::Delete(Delete::OutsidePolicy)),
                ("c".into(), Verdict::Keep(Keep::InUse)),
            ]
        );
    }
}

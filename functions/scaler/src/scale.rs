//! How many replicas to run: the pure decision.
//!
//! - Needed: `ceil(load / target per replica)`, within `[min, max]`.
//! - Scale out to what is needed, unless the last change is within the cool-down; an alarm in `ALARM` (the
//!   load alarm) skips the cool-down, since waiting is worse than one extra replica.
//! - Scale in only outside the cool-down, only as far as load at `target × SCALE_IN_HEADROOM` allows
//!   (hysteresis: load hovering at a boundary does not flap), and never below the ready replicas needed plus
//!   those not ready yet (the group may terminate ready ones first).
//! - Out-of-bounds counts are corrected at once: bounds need no load figure.
//! - Unknown load: no change (except bounds), and the reason says so.
//! - Nothing to start from (a cluster that starts at block N, before its first snapshot): none, whatever the
//!   floor. A replica on an empty volume would replay a topic that begins at N onto no state, fail, and be
//!   replaced, for ever; the snapshot source imports block N's state and its first snapshot ends the wait.

use serde::Serialize;

/// Scale in only when the remaining replicas would run at most this fraction of the target.
pub const SCALE_IN_HEADROOM: f64 = 0.75;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalePolicy {
    pub min: u32,
    pub max: u32,
    /// Requests per minute one replica should carry.
    pub target_per_replica: f64,
    pub cooldown_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    /// The group's desired count now.
    pub desired: u32,
    /// Replicas the load balancer reports healthy.
    pub ready: u32,
    /// Requests per minute across the cluster; `None` when it could not be read.
    pub load_per_min: Option<f64>,
    /// When the scaler last changed the count, seconds since the epoch.
    pub last_change_at: Option<i64>,
    /// The invocation came from the load alarm entering `ALARM`.
    pub alarm: bool,
    /// New replicas have a volume to start from: the launch template names a snapshot, or the cluster starts
    /// at genesis (an empty volume replays the whole topic).
    pub startable: bool,
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    None,
    Out,
    In,
    Bounds,
    /// To none: nothing to start from yet.
    Wait,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub desired: u32,
    pub change: Change,
    pub reason: String,
}

/// Requests per minute arriving at this cluster.
///
/// User traffic reaches every cluster through the shared serving target group, which spreads it evenly over
/// its healthy targets; CloudWatch's `RequestCountPerTarget` of that group is its requests divided by them.
/// This cluster's share is its healthy targets over the group's, so its load is the per-target figure times
/// its own healthy targets. With none ready yet it is counted as one: the replicas it is starting will carry
/// at least a target's share. `None` when either figure is unknown.
pub fn cluster_load(serving_per_target: Option<f64>, cluster_ready: Option<u32>) -> Option<f64> {
    match (serving_per_target, cluster_ready) {
        (Some(p), Some(r)) if p.is_finite() && p >= 0.0 => Some(p * f64::from(r.max(1))),
        _ => None,
    }
}

pub fn decide(p: &ScalePolicy, o: &Observed) -> Decision {
    let keep = |reason: String| Decision { desired: o.desired, change: Change::None, reason };
    if p.min > p.max {
        return keep(format!("bounds are inverted (min {} > max {}): not scaling", p.min, p.max));
    }
    if !o.startable {
        let why =
            "no snapshot to start from yet (the cluster starts at a block: its snapshot source imports \
                   that block's state, and the first snapshot of it ends the wait)";
        if o.desired == 0 {
            return keep(why.into());
        }
        return Decision { desired: 0, change: Change::Wait, reason: why.into() };
    }
    if o.desired < p.min || o.desired > p.max {
        let desired = o.desired.clamp(p.min, p.max);
        return Decision {
            desired,
            change: Change::Bounds,
            reason: format!("{} is outside [{}, {}]", o.desired, p.min, p.max),
        };
    }
    let Some(load) = o.load_per_min.filter(|l| l.is_finite() && *l >= 0.0) else {
        return keep("load unknown: keeping the current count".into());
    };
    if p.target_per_replica <= 0.0 || !p.target_per_replica.is_finite() {
        return keep(format!("target per replica {} is not positive: not scaling", p.target_per_replica));
    }
    let need = |per: f64| ((load / per).ceil() as u32).clamp(p.min, p.max);
    let needed = need(p.target_per_replica);
    let cooling = o.last_change_at.is_some_and(|t| o.now - t < p.cooldown_secs);
    let per_ready = if o.ready > 0 { load / f64::from(o.ready) } else { f64::INFINITY };

    if needed > o.desired {
        if cooling && !o.alarm {
            return keep(format!(
                "{needed} needed for {load:.0} req/min, but within the {}s cool-down",
                p.cooldown_secs
            ));
        }
        return Decision {
            desired: needed,
            change: Change::Out,
            reason: format!(
                "{load:.0} req/min ({per_ready:.0} per ready replica, target {}) needs {needed}",
                p.target_per_replica
            ),
        };
    }
    let not_ready = o.desired.saturating_sub(o.ready);
    let floor = needed.saturating_add(not_ready).min(p.max);
    let target = need(p.target_per_replica * SCALE_IN_HEADROOM).max(floor);
    if target < o.desired {
        if cooling {
            return keep(format!(
                "could scale in to {target}, but within the {}s cool-down",
                p.cooldown_secs
            ));
        }
        return Decision {
            desired: target,
            change: Change::In,
            reason: format!(
                "{load:.0} req/min fits {target} replicas under {:.0}% of target ({not_ready} not ready)",
                SCALE_IN_HEADROOM * 100.0
            ),
        };
    }
    keep(format!("{load:.0} req/min ({per_ready:.0} per ready replica): {} is right", o.desired))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const P: ScalePolicy = ScalePolicy { min: 2, max: 10, target_per_replica: 1000.0, cooldown_secs: 300 };

    fn obs(desired: u32, ready: u32, load: Option<f64>, since_change: Option<i64>, alarm: bool) -> Observed {
        Observed {
            desired,
            ready,
            load_per_min: load,
            last_change_at: since_change.map(|s| NOW - s),
            alarm,
            startable: true,
            now: NOW,
        }
    }

    fn waiting(o: Observed) -> Observed {
        Observed { startable: false, ..o }
    }

    #[test]
    fn scale_table() {
        let cases = [
            ("steady", obs(3, 3, Some(2500.0), None, false), 3, Change::None),
            ("out to what is needed", obs(3, 3, Some(5500.0), None, false), 6, Change::Out),
            ("out capped at max", obs(3, 3, Some(50_000.0), None, false), 10, Change::Out),
            ("in, with headroom", obs(6, 6, Some(1400.0), None, false), 2, Change::In),
            (
                "in to the headroom count, not to the bare need",
                obs(6, 6, Some(3100.0), None, false),
                5,
                Change::In,
            ),
            ("in never below min", obs(4, 4, Some(0.0), None, false), 2, Change::In),
            ("below min corrected without load", obs(1, 1, None, Some(10), false), 2, Change::Bounds),
            ("above max corrected in cool-down", obs(12, 12, Some(0.0), Some(10), false), 10, Change::Bounds),
            ("unknown load keeps", obs(4, 4, None, None, false), 4, Change::None),
            ("cool-down blocks scale out", obs(3, 3, Some(5500.0), Some(100), false), 3, Change::None),
            (
                "alarm skips the cool-down for scale out",
                obs(3, 3, Some(5500.0), Some(100), true),
                6,
                Change::Out,
            ),
            ("alarm does not force scale in", obs(6, 6, Some(100.0), Some(100), true), 6, Change::None),
            ("cool-down blocks scale in", obs(6, 6, Some(1400.0), Some(100), false), 6, Change::None),
            ("cool-down over", obs(6, 6, Some(1400.0), Some(301), false), 2, Change::In),
            ("not-ready replicas hold scale in", obs(6, 2, Some(1400.0), None, false), 6, Change::None),
            (
                "partly ready: floor is needed + not ready",
                obs(8, 6, Some(1400.0), None, false),
                4,
                Change::In,
            ),
            ("no ready replicas, load: scale out", obs(2, 0, Some(3000.0), None, false), 3, Change::Out),
            ("a new group starts at the floor", obs(0, 0, None, None, false), 2, Change::Bounds),
            (
                "nothing to start from: none, below the floor",
                waiting(obs(0, 0, None, None, false)),
                0,
                Change::None,
            ),
            (
                "nothing to start from, alarm and load",
                waiting(obs(0, 0, Some(9e9), None, true)),
                0,
                Change::None,
            ),
            (
                "nothing to start from: launched ones go",
                waiting(obs(2, 0, Some(3000.0), Some(10), false)),
                0,
                Change::Wait,
            ),
        ];
        for (name, o, desired, change) in cases {
            let d = decide(&P, &o);
            assert_eq!((d.desired, d.change), (desired, change), "{name}: {}", d.reason);
        }
    }

    /// Load at a boundary, moving a little either way, never makes the count go back and forth.
    #[test]
    fn no_flapping_around_a_boundary() {
        let mut desired = 3;
        let mut changes = 0;
        for (i, load) in
            [3000.0, 3050.0, 2950.0, 3100.0, 2900.0, 3001.0, 2999.0, 3000.0].into_iter().enumerate()
        {
            let o = Observed {
                desired,
                ready: desired,
                load_per_min: Some(load),
                last_change_at: None,
                alarm: false,
                startable: true,
                now: NOW + i as i64 * 600,
            };
            let d = decide(&P, &o);
            if d.desired != desired {
                changes += 1;
                desired = d.desired;
            }
        }
        assert_eq!((desired, changes), (4, 1), "one step out at 3050, and no step back in");
    }

    #[test]
    fn cluster_load_table() {
        let cases = [
            ("one of two equal clusters: its half of the group", Some(500.0), Some(3), Some(1500.0)),
            ("none ready yet counts as one target", Some(500.0), Some(0), Some(500.0)),
            ("no requests", Some(0.0), Some(4), Some(0.0)),
            ("metric missing", None, Some(3), None),
            ("health unreadable", Some(500.0), None, None),
            ("nonsense metric", Some(f64::NAN), Some(3), None),
            ("negative metric", Some(-1.0), Some(3), None),
        ];
        for (name, per_target, ready, want) in cases {
            assert_eq!(cluster_load(per_target, ready), want, "{name}");
        }
    }

    #[test]
    fn bad_policy_does_nothing() {
        let bad = ScalePolicy { min: 5, max: 2, ..P };
        assert_eq!(decide(&bad, &obs(3, 3, Some(9e9), None, false)).change, Change::None);
        let zero = ScalePolicy { target_per_replica: 0.0, ..P };
        assert_eq!(decide(&zero, &obs(3, 3, Some(9e9), None, false)).change, Change::None);
    }
}

//! One run of the scaler.

use ec_functions::{
    newest_completed, ConfigError, Ec2, Env, Metric, Publisher, SnapshotCatalog, Trigger, Unit,
};
use serde::Serialize;
use serde_json::Value;

use crate::{
    fleet::{AlbLoad, AsgFleet, FleetState, LoadSource, ReplicaFleet},
    roll::{decide_roll, outdated, Roll},
    scale::{cluster_load, decide, Change, Decision, Observed, ScalePolicy},
};

#[derive(Debug, Clone)]
pub struct Config {
    pub cluster: String,
    pub namespace: String,
    pub asg_name: String,
    pub snapshot_source_asg_name: Option<String>,
    pub launch_template_id: String,
    /// This cluster's target group (ready replicas).
    pub target_group_arn: String,
    /// The shared serving target group (load).
    pub serving_target_group_arn: String,
    pub device_name: String,
    pub policy: ScalePolicy,
    /// Start instance refreshes for instances on an older launch configuration (`ROLL_INSTANCES`).
    pub roll_instances: bool,
    /// The cluster starts at a block, not genesis (`REPLICAS_NEED_SNAPSHOT`): an empty volume cannot become a
    /// replica, so none is launched before the launch template names a snapshot.
    pub replicas_need_snapshot: bool,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            cluster: env.cluster()?,
            namespace: env.namespace(),
            asg_name: env.required("ASG_NAME")?,
            snapshot_source_asg_name: env.optional("SNAPSHOT_SOURCE_ASG_NAME"),
            launch_template_id: env.required("LAUNCH_TEMPLATE_ID")?,
            target_group_arn: env.required("TARGET_GROUP_ARN")?,
            serving_target_group_arn: env.required("SERVING_TARGET_GROUP_ARN")?,
            device_name: env.optional("DATA_DEVICE_NAME").unwrap_or_else(|| "/dev/sdf".into()),
            roll_instances: env.parse_or("ROLL_INSTANCES", true)?,
            replicas_need_snapshot: env.parse_or("REPLICAS_NEED_SNAPSHOT", false)?,
            policy: ScalePolicy {
                min: env.parse_or("MIN_REPLICAS", 1)?,
                max: env.parse_or("MAX_REPLICAS", 10)?,
                target_per_replica: env.parse_or("TARGET_REQUESTS_PER_REPLICA_PER_MIN", 6000.0)?,
                cooldown_secs: env.parse_or("COOLDOWN_SECS", 300)?,
            },
        })
    }
}

pub struct Deps<'a> {
    pub snapshots: &'a dyn SnapshotCatalog,
    pub fleet: &'a dyn ReplicaFleet,
    pub load: &'a dyn LoadSource,
    pub metrics: &'a Publisher,
}

/// The function with its AWS adapters.
pub struct Lambda {
    pub config: Config,
    pub ec2: Ec2,
    pub fleet: AsgFleet,
    pub load: AlbLoad,
    pub metrics: Publisher,
}

impl Lambda {
    pub fn new(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let config = Config::from_env(env)?;
        let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
        Ok(Self {
            ec2: Ec2(aws_sdk_ec2::Client::new(sdk)),
            fleet: AsgFleet {
                asg: aws_sdk_autoscaling::Client::new(sdk),
                ec2: aws_sdk_ec2::Client::new(sdk),
                asg_name: config.asg_name.clone(),
                snapshot_source_asg_name: config.snapshot_source_asg_name.clone(),
                launch_template_id: config.launch_template_id.clone(),
                device_name: config.device_name.clone(),
            },
            load: AlbLoad {
                elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
                cloudwatch: cloudwatch.clone(),
                target_group_arn: config.target_group_arn.clone(),
                serving_target_group_arn: config.serving_target_group_arn.clone(),
            },
            metrics: Publisher::cloudwatch(&config.namespace, &config.cluster, cloudwatch),
            config,
        })
    }

    pub async fn handle(&self, event: Value) -> anyhow::Result<Value> {
        let deps =
            Deps { snapshots: &self.ec2, fleet: &self.fleet, load: &self.load, metrics: &self.metrics };
        let trigger = Trigger::from_event(&event);
        let report = run(&self.config, &deps, &trigger, ec_functions::unix_now()).await?;
        Ok(serde_json::to_value(report)?)
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub trigger: String,
    /// The snapshot new replicas start from after this run, and what was changed to get there.
    pub snapshot: Option<String>,
    pub snapshot_change: Option<String>,
    /// Why new replicas were not moved to a newer snapshot this run (an instance refresh running).
    pub repoint_deferred: Option<String>,
    pub ready: Option<u32>,
    pub load_per_min: Option<f64>,
    pub decision: Decision,
    /// Per group: roll its instances or not, and the refresh started.
    pub rolls: Vec<GroupRoll>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct GroupRoll {
    pub group: String,
    pub decision: Roll,
    pub started: Option<String>,
}

/// One run. Fails (doing nothing) when the fleet cannot be read; otherwise does what it safely can and lists
/// the rest as problems.
pub async fn run(cfg: &Config, d: &Deps<'_>, trigger: &Trigger, now: i64) -> anyhow::Result<Report> {
    tracing::info!(cluster = %cfg.cluster, ?trigger, "scaler run");
    let mut problems = Vec::new();
    let mut problem = |p: String| {
        tracing::error!(problem = %p);
        problems.push(p);
    };
    if let Trigger::SnapshotCreated { snapshot_id, succeeded: false } = trigger {
        problem(format!("snapshot {snapshot_id} failed (EBS notification)"));
    }
    let state = d.fleet.state().await.map_err(|e| anyhow::anyhow!("{e}; nothing done"))?;

    // Not while an instance refresh runs: moving the groups to another launch template version mid-refresh
    // would leave its replacements on the old one and roll them again. A refresh state that cannot be read
    // does not hold the move back (a lasting denial would leave new replicas on ever older snapshots, until
    // one is older than the topic's retention): it is reported.
    let refreshing = refreshing_groups(d).await;
    let repoint_deferred = match &refreshing {
        Ok(groups) if groups.is_empty() => None,
        Ok(groups) => Some(format!("instance refresh running in {groups:?}")),
        Err(e) => {
            problem(format!("cannot tell whether an instance refresh runs: {e}"));
            None
        }
    };
    let (snapshot, snapshot_change) = match &repoint_deferred {
        Some(why) => {
            tracing::info!(reason = %why, "new replicas keep their snapshot for now");
            (state.snapshot_id.clone(), None)
        }
        None => match point_new_replicas(cfg, d, &state).await {
            Ok(r) => r,
            Err(e) => {
                problem(e);
                (state.snapshot_id.clone(), None)
            }
        },
    };

    let ready = d.load.ready().await.map_err(|e| problem(e.to_string())).ok();
    let per_target =
        d.load.requests_per_target_per_min(now).await.map_err(|e| problem(e.to_string())).ok().flatten();
    let load_per_min = cluster_load(per_target, ready);
    let observed = Observed {
        desired: state.desired,
        ready: ready.unwrap_or(0),
        load_per_min,
        last_change_at: state.last_change_at,
        alarm: matches!(trigger, Trigger::AlarmStateChange { state, .. } if state == "ALARM"),
        startable: snapshot.is_some() || !cfg.replicas_need_snapshot,
        now,
    };
    let decision = decide(&cfg.policy, &observed);
    tracing::info!(desired = decision.desired, change = ?decision.change, reason = %decision.reason, "scale decision");
    if decision.change != Change::None && decision.desired != state.desired {
        if let Err(e) = d.fleet.set_desired(decision.desired, now).await {
            problem(e.to_string());
        }
    }
    let mut rolls = Vec::new();
    if cfg.roll_instances {
        let (done, errors) = roll_outdated(d, refreshing.as_deref().ok()).await;
        rolls = done;
        errors.into_iter().for_each(&mut problem);
    }
    let mut metrics = vec![Metric::gauge("DesiredReplicas", Unit::Count, f64::from(decision.desired))];
    if let Some(r) = ready {
        metrics.push(Metric::gauge("ReadyReplicas", Unit::Count, f64::from(r)));
    }
    if let Err(e) = d.metrics.publish(&metrics).await {
        problem(e.to_string());
    }
    Ok(Report {
        trigger: format!("{trigger:?}"),
        snapshot,
        snapshot_change,
        repoint_deferred,
        ready,
        load_per_min,
        decision,
        rolls,
        problems,
    })
}

/// Starts an instance refresh for each group whose instances run an older launch configuration than the
/// group's (after a stack update; never for snapshot-only changes): the decision is [`decide_roll`].
/// `refreshing`: the groups this run already found refreshing (`None`: that read failed, so each group's
/// state is read here).
async fn roll_outdated(d: &Deps<'_>, refreshing: Option<&[String]>) -> (Vec<GroupRoll>, Vec<String>) {
    let (mut rolls, mut errors) = (Vec::new(), Vec::new());
    for group in d.fleet.roll_groups() {
        let configs = match d.fleet.launch_configs(&group).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        // The refresh state counts only when there is something to roll.
        let in_progress = match refreshing {
            _ if outdated(&configs.group, &configs.instances) == 0 => None,
            Some(running) => Some(running.contains(&group)),
            None => d.fleet.refresh_in_progress(&group).await.map_err(|e| errors.push(e.to_string())).ok(),
        };
        let decision = decide_roll(&configs.group, &configs.instances, in_progress);
        let mut started = None;
        if let Roll::Start(why) = &decision {
            tracing::info!(%group, reason = %why, "rolling outdated instances");
            started = d.fleet.start_refresh(&group).await.map_err(|e| errors.push(e.to_string())).ok();
        }
        rolls.push(GroupRoll { group, decision, started });
    }
    (rolls, errors)
}

/// The groups with an instance refresh running.
async fn refreshing_groups(d: &Deps<'_>) -> Result<Vec<String>, String> {
    let mut running = Vec::new();
    for group in d.fleet.roll_groups() {
        if d.fleet.refresh_in_progress(&group).await.map_err(|e| e.to_string())? {
            running.push(group);
        }
    }
    Ok(running)
}

/// Moves new replicas to the newest usable snapshot when it is newer than the one they start from now.
async fn point_new_replicas(
    cfg: &Config,
    d: &Deps<'_>,
    state: &FleetState,
) -> Result<(Option<String>, Option<String>), String> {
    let snaps = d.snapshots.list_snapshots(&cfg.cluster).await.map_err(|e| e.to_string())?;
    let Some((newest, pos)) = newest_completed(&snaps) else {
        return Err(format!(
            "cluster {} has no completed snapshot with a position; launch template unchanged",
            cfg.cluster
        ));
    };
    if state.snapshot_id.as_deref() == Some(newest.id.as_str()) {
        return Ok((Some(newest.id.clone()), None));
    }
    // Never step back: a current snapshot that is newer (set by hand, say) stays.
    let current = state.snapshot_id.as_deref().and_then(|id| snaps.iter().find(|s| s.id == id));
    if let Some(cur) = current.and_then(|c| c.position().map(|p| (c, p))) {
        if cur.1.kafka_offset >= pos.kafka_offset {
            return Ok((Some(cur.0.id.clone()), None));
        }
    }
    let change = d.fleet.point_at(&newest.id).await.map_err(|e| e.to_string())?;
    tracing::info!(snapshot = %newest.id, kafka_offset = pos.kafka_offset, %change, "new replicas start from a newer snapshot");
    Ok((Some(newest.id.clone()), Some(change)))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ec_functions::{snapshots::record, MemoryMetrics, MemorySnapshots, SnapshotState};

    use super::*;
    use crate::{
        fleet::{GroupConfigs, MemoryFleet},
        roll::LaunchConfig,
    };

    const NOW: i64 = 1_800_000_000;

    fn cfg() -> Config {
        Config::from_env(&Env::from_pairs([
            ("CLUSTER_ID", "c"),
            ("ASG_NAME", "g"),
            ("LAUNCH_TEMPLATE_ID", "lt-1"),
            ("TARGET_GROUP_ARN", "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/tg/1"),
            ("SERVING_TARGET_GROUP_ARN", "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/serving/2"),
            ("MIN_REPLICAS", "1"),
            ("MAX_REPLICAS", "5"),
            ("TARGET_REQUESTS_PER_REPLICA_PER_MIN", "100"),
        ]))
        .expect("config")
    }

    async fn go(
        fleet: &MemoryFleet,
        snaps: Vec<ec_functions::SnapshotRecord>,
        trigger: Trigger,
    ) -> (Report, MemoryMetrics) {
        go_with(&cfg(), fleet, snaps, trigger).await
    }

    async fn go_with(
        cfg: &Config,
        fleet: &MemoryFleet,
        snaps: Vec<ec_functions::SnapshotRecord>,
        trigger: Trigger,
    ) -> (Report, MemoryMetrics) {
        let m = MemoryMetrics::default();
        let publisher = m.publisher("c");
        let snaps = MemorySnapshots::with(snaps);
        let deps = Deps { snapshots: &snaps, fleet, load: fleet, metrics: &publisher };
        (run(cfg, &deps, &trigger, NOW).await.expect("run"), m)
    }

    fn fleet(desired: u32, snapshot: Option<&str>, ready: u32, per_target: Option<f64>) -> MemoryFleet {
        MemoryFleet {
            state: Arc::new(Mutex::new(FleetState {
                desired,
                snapshot_id: snapshot.map(String::from),
                last_change_at: None,
            })),
            ready,
            per_target,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn outdated_instances_are_rolled_once() {
        let config = |s: &str| LaunchConfig(s.into());
        let snaps = vec![record("s", "c", SnapshotState::Completed, NOW - 60, 20)];
        let mut f = fleet(2, Some("s"), 2, Some(150.0));
        f.configs = Some(GroupConfigs {
            group: config("image-2"),
            instances: vec![Some(config("image-1")), Some(config("image-2"))],
        });
        let (r, _) = go(&f, snaps.clone(), Trigger::Scheduled).await;
        assert!(matches!(r.rolls[0].decision, Roll::Start(_)), "{:?}", r.rolls);
        assert_eq!(f.refreshes.lock().expect("lock").as_slice(), ["replicas"]);

        // A refresh already running: nothing more started.
        f.refreshing = true;
        let (r, _) = go(&f, snaps.clone(), Trigger::Scheduled).await;
        assert!(matches!(r.rolls[0].decision, Roll::Keep(_)) && r.rolls[0].started.is_none());
        assert_eq!(f.refreshes.lock().expect("lock").len(), 1);

        // All current: nothing to roll.
        f.refreshing = false;
        f.configs = Some(GroupConfigs { group: config("image-2"), instances: vec![Some(config("image-2"))] });
        let (r, _) = go(&f, snaps, Trigger::Scheduled).await;
        assert!(matches!(r.rolls[0].decision, Roll::Keep(_)));
        assert_eq!(f.refreshes.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn points_at_the_newest_and_scales_out() {
        let f = fleet(2, Some("old"), 2, Some(150.0));
        let snaps = vec![
            record("old", "c", SnapshotState::Completed, NOW - 7200, 10),
            record("new", "c", SnapshotState::Completed, NOW - 60, 20),
            record("pending", "c", SnapshotState::Pending, NOW - 10, 30),
        ];
        let created = Trigger::SnapshotCreated { snapshot_id: "new".into(), succeeded: true };
        let (r, m) = go(&f, snaps, created).await;
        assert_eq!(r.snapshot.as_deref(), Some("new"));
        assert!(r.snapshot_change.is_some());
        let s = f.state.lock().expect("lock").clone();
        assert_eq!((s.snapshot_id.as_deref(), s.desired, s.last_change_at), (Some("new"), 3, Some(NOW)));
        assert_eq!(m.value("DesiredReplicas"), Some(3.0));
        assert_eq!(m.value("ReadyReplicas"), Some(2.0));
    }

    #[tokio::test]
    async fn no_repoint_while_an_instance_refresh_runs() {
        let config = |s: &str| LaunchConfig(s.into());
        let mut f = fleet(2, Some("old"), 2, Some(150.0));
        f.configs = Some(GroupConfigs { group: config("image-2"), instances: vec![Some(config("image-1"))] });
        f.refreshing = true;
        let snaps = vec![
            record("old", "c", SnapshotState::Completed, NOW - 7200, 10),
            record("new", "c", SnapshotState::Completed, NOW - 60, 20),
        ];
        let (r, _) = go(&f, snaps.clone(), Trigger::Scheduled).await;
        assert_eq!((r.snapshot.as_deref(), r.snapshot_change.as_deref()), (Some("old"), None));
        assert!(
            r.repoint_deferred.as_deref().is_some_and(|w| w.contains("replicas")),
            "{:?}",
            r.repoint_deferred
        );
        assert_eq!(f.state.lock().expect("lock").snapshot_id.as_deref(), Some("old"));
        // Once it has ended, the next run moves them.
        f.refreshing = false;
        f.configs = Some(GroupConfigs { group: config("image-2"), instances: vec![Some(config("image-2"))] });
        let (r, _) = go(&f, snaps, Trigger::Scheduled).await;
        assert_eq!(r.snapshot.as_deref(), Some("new"));
        assert!(r.snapshot_change.is_some() && r.repoint_deferred.is_none());
    }

    #[tokio::test]
    async fn never_steps_back_and_unknown_load_keeps_the_count() {
        let f = fleet(3, Some("manual"), 3, None);
        let snaps = vec![
            record("manual", "c", SnapshotState::Completed, NOW - 7200, 50),
            record("newer-but-behind", "c", SnapshotState::Completed, NOW - 60, 40),
        ];
        let (r, _) = go(&f, snaps, Trigger::Scheduled).await;
        assert_eq!((r.snapshot.as_deref(), r.snapshot_change.as_deref()), (Some("manual"), None));
        assert_eq!((r.decision.desired, r.decision.change), (3, Change::None));
    }

    #[tokio::test]
    async fn a_cluster_that_starts_at_a_block_waits_for_its_first_snapshot() {
        let c = Config { replicas_need_snapshot: true, ..cfg() };
        // A new group (desired 0, no snapshot) under load: it stays empty, below the floor of 1.
        let f = fleet(0, None, 0, Some(500.0));
        let (r, _) = go_with(&c, &f, vec![], Trigger::Scheduled).await;
        assert_eq!((r.decision.desired, r.decision.change), (0, Change::None), "{}", r.decision.reason);
        assert!(r.decision.reason.contains("no snapshot to start from"), "{}", r.decision.reason);
        assert_eq!(f.state.lock().expect("lock").desired, 0);
        // The snapshot source's first snapshot: the template is pointed at it and the group grows in one run.
        let first = vec![record("first", "c", SnapshotState::Completed, NOW - 60, 5)];
        let (r, _) = go_with(&c, &f, first, Trigger::Scheduled).await;
        assert_eq!(r.snapshot.as_deref(), Some("first"));
        assert_eq!(r.decision.change, Change::Bounds, "{}", r.decision.reason);
        let s = f.state.lock().expect("lock").clone();
        assert_eq!((s.snapshot_id.as_deref(), s.desired), (Some("first"), 1));

        // A genesis cluster (the default) launches on empty volumes: the floor applies at once.
        let f = fleet(0, None, 0, None);
        let (r, _) = go(&f, vec![], Trigger::Scheduled).await;
        assert_eq!((r.decision.desired, r.decision.change), (1, Change::Bounds));
    }

    #[tokio::test]
    async fn no_snapshot_is_a_problem_not_a_change() {
        let f = fleet(2, None, 2, Some(10.0));
        let (r, _) = go(&f, vec![], Trigger::Scheduled).await;
        assert_eq!(r.snapshot, None);
        assert!(r.problems.iter().any(|p| p.contains("no completed snapshot")), "{:?}", r.problems);
        assert_eq!(r.decision.desired, 1, "scales in to what load needs");
    }
}

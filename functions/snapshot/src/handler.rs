//! One run of the snapshot function.

use anyhow::{anyhow, Context};
use ec_functions::{
    newest_completed, ConfigError, Ec2, Env, Metric, Publisher, SnapshotPosition, SnapshotRecord,
    SnapshotState, Trigger, Unit,
};
use serde::Serialize;
use serde_json::Value;

use crate::{
    adapters::{Ebs, Fleet, HttpPosition},
    ports::{BlockCheck, ReplicaPosition, Volumes},
    prune::{self, Plan, PrunePolicy},
    source::check_source,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub cluster: String,
    pub namespace: String,
    pub policy: PrunePolicy,
    pub admin_port: u16,
    /// Fixed admin URL instead of `http://<instance IP>:<ADMIN_PORT>/admin/position` (tests, or a replica
    /// behind a fixed name).
    pub admin_url: Option<String>,
    /// A snapshot still pending after this long is reported as a problem.
    pub pending_warn_secs: i64,
    /// The source must be ready and at most this many messages behind the topic (`MAX_SOURCE_LAG_RECORDS`).
    pub max_source_lag_records: i64,
    /// Time allowed to each EBS direct API count of the newest snapshot (`EBS_CHECK_SECS`): listing a large
    /// snapshot's blocks takes many pages, and taking the new snapshot must not wait for it.
    pub ebs_check: std::time::Duration,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            cluster: env.cluster()?,
            namespace: env.namespace(),
            policy: PrunePolicy {
                keep_newest: env.parse_or("KEEP_NEWEST", 7)?,
                keep_daily_days: env.parse_or("KEEP_DAILY_DAYS", 14)?,
            },
            admin_port: env.parse_or("ADMIN_PORT", 8081)?,
            admin_url: env.optional("ADMIN_URL"),
            pending_warn_secs: env.parse_or("PENDING_WARN_SECS", 6 * 3600)?,
            max_source_lag_records: env.parse_or("MAX_SOURCE_LAG_RECORDS", 50)?,
            ebs_check: std::time::Duration::from_secs_f64(env.parse_or("EBS_CHECK_SECS", 30.0f64)?.max(0.0)),
        })
    }
}

/// The function with its AWS adapters.
pub struct Lambda {
    pub config: Config,
    pub ec2: Fleet,
    pub ebs: Ebs,
    pub position: HttpPosition,
    pub metrics: Publisher,
}

impl Lambda {
    pub fn new(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let config = Config::from_env(env)?;
        let metrics =
            Publisher::cloudwatch(&config.namespace, &config.cluster, aws_sdk_cloudwatch::Client::new(sdk));
        Ok(Self {
            ec2: Fleet {
                ec2: Ec2(aws_sdk_ec2::Client::new(sdk)),
                groups: aws_sdk_autoscaling::Client::new(sdk),
            },
            ebs: Ebs(aws_sdk_ebs::Client::new(sdk)),
            position: HttpPosition::new(config.admin_port, config.admin_url.clone()),
            metrics,
            config,
        })
    }

    pub async fn handle(&self, event: Value) -> anyhow::Result<Value> {
        let trigger = Trigger::from_event(&event);
        tracing::info!(cluster = %self.config.cluster, ?trigger, "snapshot run");
        let deps = Deps { ec2: &self.ec2, ebs: &self.ebs, position: &self.position, metrics: &self.metrics };
        let report = run(&self.config, &deps, ec_functions::unix_now()).await?;
        Ok(serde_json::to_value(report)?)
    }
}

pub struct Deps<'a> {
    pub ec2: &'a dyn Volumes,
    pub ebs: &'a dyn BlockCheck,
    pub position: &'a dyn ReplicaPosition,
    pub metrics: &'a Publisher,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The snapshot taken by this run.
    pub created: Option<String>,
    pub kafka_offset: Option<i64>,
    /// Why no snapshot was taken.
    pub not_created: Option<String>,
    /// The newest completed snapshot before this run, and what the EBS direct APIs said of it.
    pub newest_completed: Option<String>,
    pub newest_blocks: Option<u64>,
    pub changed_bytes: Option<u64>,
    pub pruned: Vec<String>,
    pub prune_refused: Option<String>,
    /// Problems that did not stop the run (each also logged at error level).
    pub problems: Vec<String>,
}

impl Report {
    fn problem(&mut self, p: impl std::fmt::Display) {
        tracing::error!(problem = %p);
        self.problems.push(p.to_string());
    }
}

/// One run: check earlier snapshots, take a new one, prune. Fails (so the invocation counts as an error) only
/// when no snapshot could be taken; other problems are logged and listed in the report.
pub async fn run(cfg: &Config, d: &Deps<'_>, now: i64) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let before = d.ec2.list_snapshots(&cfg.cluster).await.context("listing snapshots; nothing done")?;
    let mut metrics = Vec::new();

    check_earlier(cfg, d, &before, now, &mut report, &mut metrics).await;

    match take_snapshot(cfg, d, &before, now).await {
        Ok((id, pos)) => {
            tracing::info!(snapshot = %id, kafka_offset = pos.kafka_offset, block = pos.block_number, "snapshot started");
            report.created = Some(id);
            report.kafka_offset = Some(pos.kafka_offset);
        }
        Err(why) => {
            tracing::error!(reason = %why, "no snapshot taken");
            report.not_created = Some(why);
        }
    }

    prune_snapshots(cfg, d, now, &mut report).await;
    metrics.push(Metric::count("SnapshotsPruned", report.pruned.len() as f64));
    if let Err(e) = d.metrics.publish(&metrics).await {
        report.problem(e);
    }
    tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "snapshot run done");
    match &report.not_created {
        Some(why) => Err(anyhow!("no snapshot taken: {why}")),
        None => Ok(report),
    }
}

/// Confirms earlier snapshots completed, and checks the newest completed one with the EBS direct APIs.
async fn check_earlier(
    cfg: &Config,
    d: &Deps<'_>,
    snaps: &[SnapshotRecord],
    now: i64,
    report: &mut Report,
    metrics: &mut Vec<Metric>,
) {
    for s in snaps {
        match s.state {
            SnapshotState::Pending if now - s.started_at > cfg.pending_warn_secs => {
                report.problem(format!("snapshot {} still pending after {}s", s.id, now - s.started_at))
            }
            SnapshotState::Error => report.problem(format!("snapshot {} failed (state error)", s.id)),
            _ => {}
        }
    }
    let Some((newest, pos)) = newest_completed(snaps) else {
        report.problem(format!("cluster {} has no completed snapshot yet", cfg.cluster));
        return;
    };
    report.newest_completed = Some(newest.id.clone());
    metrics.push(Metric::gauge("SnapshotAgeSeconds", Unit::Seconds, (now - pos.taken_at).max(0) as f64));
    // Counts of a completed snapshot (never of the one this run starts): a sanity check and a change metric,
    // each bounded by `ebs_check`.
    let late =
        |what: &str| format!("{what} of snapshot {} not done in {:?}: skipped", newest.id, cfg.ebs_check);
    match tokio::time::timeout(cfg.ebs_check, d.ebs.snapshot_blocks(&newest.id)).await {
        Err(_) => report.problem(late("counting the blocks")),
        Ok(Ok(b)) if b.blocks == 0 => report.problem(format!("snapshot {} lists no blocks", newest.id)),
        Ok(Ok(b)) => report.newest_blocks = Some(b.blocks),
        Ok(Err(e)) => report.problem(e),
    }
    let older: Vec<SnapshotRecord> = snaps.iter().filter(|s| s.id != newest.id).cloned().collect();
    if let Some((previous, _)) = newest_completed(&older) {
        match tokio::time::timeout(cfg.ebs_check, d.ebs.changed_bytes(&previous.id, &newest.id)).await {
            Err(_) => report.problem(late("counting the changed blocks")),
            Ok(Ok(bytes)) => {
                report.changed_bytes = Some(bytes);
                metrics.push(Metric::gauge("SnapshotChangedBytes", Unit::Bytes, bytes as f64));
            }
            Ok(Err(e)) => report.problem(e),
        }
    }
}

/// Finds the one source volume, reads its replica's position and snapshots it. `Err` says why not.
async fn take_snapshot(
    cfg: &Config,
    d: &Deps<'_>,
    before: &[SnapshotRecord],
    now: i64,
) -> Result<(String, SnapshotPosition), String> {
    let sources = d.ec2.source_volumes(&cfg.cluster).await.map_err(|e| e.to_string())?;
    let source = match sources.as_slice() {
        [one] => one,
        [] => return Err(format!("no volume tagged as cluster {}'s snapshot source", cfg.cluster)),
        many => {
            let ids: Vec<&str> = many.iter().map(|v| v.volume_id.as_str()).collect();
            return Err(format!("several snapshot-source volumes for cluster {}: {ids:?}", cfg.cluster));
        }
    };
    let health = d.position.health(source).await.map_err(|e| e.to_string())?;
    check_source(&health, cfg.max_source_lag_records)?;
    let p = d.position.position(source).await.map_err(|e| e.to_string())?;
    let (Some(block_number), Some(block_hash)) = (p.block_number, p.block_hash.clone()) else {
        return Err(format!("replica on {} reports no head block: {p:?}", source.volume_id));
    };
    if p.topic.is_empty() {
        return Err(format!("replica on {} reports no topic", source.volume_id));
    }
    // A snapshot behind the newest one would be picked as "newest" by start time while resuming from further
    // back: a replica that went backwards needs a person, not a snapshot.
    if let Some((newest, np)) = newest_completed(before) {
        if p.kafka_offset < np.kafka_offset {
            return Err(format!(
                "replica position {} is behind the newest snapshot {} at offset {}",
                p.kafka_offset, newest.id, np.kafka_offset
            ));
        }
    }
    let pos = SnapshotPosition {
        topic: p.topic,
        kafka_offset: p.kafka_offset,
        sequence: p.sequence,
        block_number,
        block_hash,
        taken_at: now,
    };
    let description = format!(
        "ether-cattle {} topic {} offset {} block {}",
        cfg.cluster, pos.topic, pos.kafka_offset, pos.block_number
    );
    let id = d
        .ec2
        .create_snapshot(&source.volume_id, &description, &pos.to_tags(&cfg.cluster))
        .await
        .map_err(|e| e.to_string())?;
    Ok((id, pos))
}

async fn prune_snapshots(cfg: &Config, d: &Deps<'_>, now: i64, report: &mut Report) {
    let snaps = match d.ec2.list_snapshots(&cfg.cluster).await {
        Ok(s) => s,
        Err(e) => {
            report.prune_refused = Some(format!("cannot list snapshots: {e}"));
            return report.problem(e);
        }
    };
    let ids: Vec<String> = snaps.iter().map(|s| s.id.clone()).collect();
    let in_use = match d.ec2.snapshots_in_use(&cfg.cluster, &ids).await {
        Ok(u) => Some(u),
        Err(e) => {
            report.problem(&e);
            None
        }
    };
    let plan = prune::plan(cfg.policy, &snaps, in_use.as_ref(), now);
    match &plan {
        Plan::Refused(why) => {
            tracing::warn!(reason = %why, "pruning nothing");
            report.prune_refused = Some(why.clone());
        }
        Plan::Decided(verdicts) => {
            for (id, v) in verdicts {
                tracing::info!(snapshot = %id, verdict = ?v, "prune verdict");
            }
        }
    }
    for id in plan.deletions() {
        match d.ec2.delete_snapshot(id).await {
            Ok(()) => report.pruned.push(id.to_string()),
            Err(e) => report.problem(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ec_functions::{snapshots::record, MemoryMetrics, MemorySnapshots};

    use super::*;
    use crate::{
        ports::{AdminPosition, FixedPosition, MemoryBlocks, MemoryEc2, SourceVolume},
        source::SourceHealth,
    };

    const NOW: i64 = 1_800_000_000;

    fn cfg() -> Config {
        Config::from_env(&Env::from_pairs([
            ("CLUSTER_ID", "c"),
            ("KEEP_NEWEST", "2"),
            ("KEEP_DAILY_DAYS", "0"),
        ]))
        .expect("config")
    }

    fn fixture(position: Option<AdminPosition>) -> (MemoryEc2, MemoryBlocks, FixedPosition, MemoryMetrics) {
        let snaps = vec![
            record("s1", "c", SnapshotState::Completed, NOW - 3000, 10),
            record("s2", "c", SnapshotState::Completed, NOW - 2000, 20),
            record("s3", "c", SnapshotState::Completed, NOW - 1000, 30),
            record("other", "d", SnapshotState::Completed, NOW - 9000, 5),
        ];
        let ec2 = MemoryEc2 {
            snapshots: MemorySnapshots::with(snaps),
            sources: vec![SourceVolume {
                volume_id: "vol-src".into(),
                instance_id: Some("i-1".into()),
                private_ip: Some("10.0.0.1".into()),
            }],
            now: NOW,
            ..Default::default()
        };
        let blocks = MemoryBlocks(BTreeMap::from([
            ("s2".to_string(), BTreeMap::from([(0, 1), (1, 1), (2, 1)])),
            ("s3".to_string(), BTreeMap::from([(0, 1), (1, 2), (2, 1), (3, 1)])),
        ]));
        (ec2, blocks, FixedPosition(position, SourceHealth::ready(0)), MemoryMetrics::default())
    }

    fn pos(offset: i64) -> AdminPosition {
        AdminPosition {
            topic: "t".into(),
            kafka_offset: offset,
            sequence: offset as u64,
            block_number: Some(7),
            block_hash: Some("0xab".into()),
        }
    }

    async fn go(
        ec2: &MemoryEc2,
        blocks: &MemoryBlocks,
        p: &FixedPosition,
        m: &MemoryMetrics,
    ) -> anyhow::Result<Report> {
        let publisher = m.publisher("c");
        let deps = Deps { ec2, ebs: blocks, position: p, metrics: &publisher };
        run(&cfg(), &deps, NOW).await
    }

    #[tokio::test]
    async fn takes_tags_checks_and_prunes() {
        let (ec2, blocks, p, m) = fixture(Some(pos(40)));
        let r = go(&ec2, &blocks, &p, &m).await.expect("run");
        let created = r.created.clone().expect("created");
        let all = ec2.snapshots.all();
        let new = all.iter().find(|s| s.id == created).expect("new snapshot listed");
        assert_eq!(new.position().map(|p| p.kafka_offset), Some(40));
        assert_eq!(new.tags[ec_functions::tags::BLOCK_HASH], "0xab");
        // Keep 2 completed (s3, s2) + the pending new one; s1 goes; the other cluster's is untouched.
        assert_eq!(r.pruned, vec!["s1".to_string()]);
        assert!(all.iter().any(|s| s.id == "other"));
        assert_eq!(r.newest_blocks, Some(4));
        assert_eq!(r.changed_bytes, Some(2 * 512 * 1024));
        assert_eq!(m.value("SnapshotAgeSeconds"), Some(1000.0));
        assert_eq!(m.value("SnapshotChangedBytes"), Some(2.0 * 512.0 * 1024.0));
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[tokio::test]
    async fn empty_replica_takes_no_snapshot_and_says_why() {
        let (ec2, blocks, p, m) = fixture(None);
        let err = go(&ec2, &blocks, &p, &m).await.expect_err("must fail");
        assert!(err.to_string().contains("503"), "{err}");
        assert!(ec2.snapshots.all().iter().all(|s| s.state == SnapshotState::Completed));
    }

    #[tokio::test]
    async fn replica_behind_the_newest_snapshot_is_not_snapshotted() {
        let (ec2, blocks, p, m) = fixture(Some(pos(25)));
        let err = go(&ec2, &blocks, &p, &m).await.expect_err("must fail");
        assert!(err.to_string().contains("behind the newest snapshot s3"), "{err}");
    }

    #[tokio::test]
    async fn unready_or_lagging_source_is_not_snapshotted() {
        let unready = SourceHealth {
            ready: false,
            failing: vec!["publisher silent: no record for 90s (limit 30s)".into()],
            lag_records: Some(0),
        };
        for (health, why) in
            [(unready, "not ready (publisher silent"), (SourceHealth::ready(51), "51 messages behind")]
        {
            let (ec2, blocks, _, m) = fixture(Some(pos(40)));
            let p = FixedPosition(Some(pos(40)), health);
            let err = go(&ec2, &blocks, &p, &m).await.expect_err("must refuse");
            assert!(err.to_string().contains(why), "{err}");
            assert!(ec2.snapshots.all().iter().all(|s| s.state == SnapshotState::Completed), "none taken");
            assert_eq!(m.value("SnapshotAgeSeconds"), Some(1000.0), "the age still reported");
        }
    }

    /// EBS direct APIs that take longer than the run allows.
    struct SlowBlocks;

    #[async_trait::async_trait]
    impl crate::ports::BlockCheck for SlowBlocks {
        async fn snapshot_blocks(
            &self,
            _id: &str,
        ) -> Result<crate::ports::BlockSummary, ec_functions::AwsError> {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            Ok(crate::ports::BlockSummary { blocks: 1, block_size: 1 })
        }
        async fn changed_bytes(&self, _a: &str, _b: &str) -> Result<u64, ec_functions::AwsError> {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            Ok(1)
        }
    }

    #[tokio::test]
    async fn slow_ebs_counts_are_skipped_and_the_snapshot_still_taken() {
        let (ec2, _, p, m) = fixture(Some(pos(40)));
        let mut cfg = cfg();
        cfg.ebs_check = std::time::Duration::from_millis(50);
        let publisher = m.publisher("c");
        let deps = Deps { ec2: &ec2, ebs: &SlowBlocks, position: &p, metrics: &publisher };
        let started = std::time::Instant::now();
        let r = run(&cfg, &deps, NOW).await.expect("run");
        assert!(started.elapsed() < std::time::Duration::from_secs(4), "bounded: {:?}", started.elapsed());
        assert!(r.created.is_some());
        assert_eq!((r.newest_blocks, r.changed_bytes), (None, None));
        assert_eq!(r.problems.iter().filter(|p| p.contains("not done in")).count(), 2, "{:?}", r.problems);
    }

    #[tokio::test]
    async fn unknown_names_in_use_prune_nothing() {
        let (mut ec2, blocks, p, m) = fixture(Some(pos(40)));
        ec2.in_use_fails = true;
        let r = go(&ec2, &blocks, &p, &m).await.expect("run");
        assert!(r.pruned.is_empty());
        assert!(r.prune_refused.is_some());
        assert!(r.problems.iter().any(|p| p.contains("DescribeLaunchTemplateVersions")), "{:?}", r.problems);
    }

    #[tokio::test]
    async fn no_or_several_source_volumes_take_nothing() {
        let (mut ec2, blocks, p, m) = fixture(Some(pos(40)));
        ec2.sources.clear();
        assert!(go(&ec2, &blocks, &p, &m).await.expect_err("none").to_string().contains("no volume tagged"));
        let v = SourceVolume { volume_id: "v".into(), instance_id: None, private_ip: None };
        ec2.sources = vec![v.clone(), v];
        assert!(go(&ec2, &blocks, &p, &m).await.expect_err("two").to_string().contains("several"));
    }
}

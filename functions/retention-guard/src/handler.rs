//! One run of the retention guard.

use ec_functions::{newest_completed, ConfigError, Ec2, Env, Metric, Publisher, SnapshotCatalog, Unit};
use ec_kafka::KafkaConfig;
use serde::Serialize;
use serde_json::Value;

use crate::{
    credentials::{secret_string, start_msk_iam, with_scram, SecretError},
    retention::{
        assess, Assessment, Limit, PartitionState, Retention, SnapshotPoint, Status, UNLIMITED_MARGIN_SECS,
    },
    sources::{ClusterRetention, KafkaAdmin, Msk, Partition, RetentionSource},
};

#[derive(Debug, Clone)]
pub struct Config {
    pub cluster: String,
    pub namespace: String,
    pub topic: String,
    pub kafka: KafkaConfig,
    /// The MSK cluster whose configuration is the fallback for the topic's retention.
    pub msk_cluster_arn: Option<String>,
    /// A Secrets Manager secret with SCRAM credentials for Kafka (`KAFKA_SASL_SECRET_ARN`), read at the first
    /// run; credentials in `KAFKA_SASL_USERNAME`/`_PASSWORD` are used as they are.
    pub kafka_sasl_secret_arn: Option<String>,
    /// Margin below which the status is `warning`: time to notice and fix a failing snapshot.
    pub allowance_secs: i64,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            cluster: env.cluster()?,
            namespace: env.namespace(),
            topic: env.required("TOPIC")?,
            kafka: KafkaConfig {
                brokers: env.required("KAFKA_BROKERS")?,
                security_protocol: env.optional("KAFKA_SECURITY_PROTOCOL"),
                sasl_mechanism: env.optional("KAFKA_SASL_MECHANISM"),
                sasl_username: env.optional("KAFKA_SASL_USERNAME"),
                sasl_password: env.optional("KAFKA_SASL_PASSWORD"),
                ..KafkaConfig::default()
            },
            msk_cluster_arn: env.optional("MSK_CLUSTER_ARN"),
            kafka_sasl_secret_arn: env.optional("KAFKA_SASL_SECRET_ARN"),
            allowance_secs: env.parse_or("TROUBLESHOOT_ALLOWANCE_SECS", 86_400)?,
        })
    }
}

pub struct Deps<'a> {
    pub snapshots: &'a dyn SnapshotCatalog,
    pub topic: &'a dyn RetentionSource,
    pub msk: &'a dyn ClusterRetention,
    pub partition: &'a dyn Partition,
    pub metrics: &'a Publisher,
}

/// The function with its Kafka and AWS adapters.
pub struct Lambda {
    pub config: Config,
    pub ec2: Ec2,
    pub msk: Msk,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// Region and credentials, for MSK IAM tokens.
    sdk: aws_config::SdkConfig,
    /// The Kafka client configuration with the secret's credentials, once read.
    kafka: tokio::sync::OnceCell<KafkaConfig>,
    pub metrics: Publisher,
}

impl Lambda {
    pub fn new(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let config = Config::from_env(env)?;
        Ok(Self {
            ec2: Ec2(aws_sdk_ec2::Client::new(sdk)),
            msk: Msk(aws_sdk_kafka::Client::new(sdk)),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            sdk: sdk.clone(),
            kafka: tokio::sync::OnceCell::new(),
            metrics: Publisher::cloudwatch(
                &config.namespace,
                &config.cluster,
                aws_sdk_cloudwatch::Client::new(sdk),
            ),
            config,
        })
    }

    pub async fn handle(&self, _event: Value) -> anyhow::Result<Value> {
        // An unreadable secret is reported with the run, whose Kafka reads then fail and make the status
        // unknown (published, alarmed), rather than failing before anything is published.
        let (kafka, secret_problem) = match self.kafka_config().await {
            Ok(c) => (c.clone(), None),
            Err(e) => (self.config.kafka.clone(), Some(e.to_string())),
        };
        let kafka = KafkaAdmin { config: kafka };
        let deps = Deps {
            snapshots: &self.ec2,
            topic: &kafka,
            msk: &self.msk,
            partition: &kafka,
            metrics: &self.metrics,
        };
        let mut report = run(&self.config, &deps, ec_functions::unix_now()).await?;
        if let Some(p) = secret_problem {
            tracing::error!(problem = %p);
            report.problems.insert(0, p);
        }
        Ok(serde_json::to_value(report)?)
    }

    /// The configured Kafka client settings, with the SCRAM secret's credentials when one is named.
    pub async fn kafka_config(&self) -> Result<&KafkaConfig, SecretError> {
        // Boxed: the SDK call's future nested in the cell's would make the handler's future type too deep
        // for the compiler's layout computation.
        self.kafka
            .get_or_try_init(|| {
                Box::pin(async {
                    if self.config.kafka.is_msk_iam() {
                        start_msk_iam(&self.sdk).await?;
                    }
                    match &self.config.kafka_sasl_secret_arn {
                        Some(arn) if self.config.kafka.sasl_username.is_none() => {
                            with_scram(&self.config.kafka, arn, &secret_string(&self.secrets, arn).await?)
                        }
                        _ => Ok(self.config.kafka.clone()),
                    }
                })
            })
            .await
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub assessment: Assessment,
    pub snapshot: Option<String>,
    pub snapshot_offset: Option<i64>,
    /// The time of the record at `snapshot_offset + 1` (ms), from which the margin is measured.
    pub resumes_at_record_ms: Option<i64>,
    pub retention: Retention,
    pub partition: Option<PartitionState>,
    /// Reads that failed (each also logged with the call and resource).
    pub problems: Vec<String>,
}

/// One run. Always publishes `RetentionStatus` (3 when it cannot decide, saying why); fails only when the
/// metrics cannot be published.
pub async fn run(cfg: &Config, d: &Deps<'_>, now: i64) -> anyhow::Result<Report> {
    let mut problems = Vec::new();
    let mut problem = |p: String| {
        tracing::error!(problem = %p);
        problems.push(p);
    };

    let snaps = d.snapshots.list_snapshots(&cfg.cluster).await.map_err(|e| problem(e.to_string())).ok();
    let newest = snaps.as_deref().and_then(newest_completed);
    // The snapshot function publishes the age only when it runs (every few hours); published here too, the
    // snapshot-age alarm sees a value every guard run instead of missing data most of the day.
    let age = newest.as_ref().map(|(_, p)| (now - p.taken_at).max(0));
    let (snapshot, offset) = match newest {
        Some((s, p)) if p.topic != cfg.topic => {
            problem(format!("newest snapshot {} is of topic {}, not {}", s.id, p.topic, cfg.topic));
            (Some(s.id.clone()), None)
        }
        Some((s, p)) => (Some(s.id.clone()), Some(p.kafka_offset)),
        None => (None, None),
    };

    let retention = match d.topic.topic_retention(&cfg.topic).await {
        Ok(r) if r.is_known() => r,
        other => {
            match other {
                Ok(r) => problem(format!("topic {} retention incomplete: {r:?}", cfg.topic)),
                Err(e) => problem(e.to_string()),
            }
            match &cfg.msk_cluster_arn {
                Some(arn) => d.msk.cluster_retention(arn).await.unwrap_or_else(|e| {
                    problem(e.to_string());
                    unknown_retention("MSK fallback failed")
                }),
                None => unknown_retention("topic unreadable and no MSK_CLUSTER_ARN to fall back on"),
            }
        }
    };
    let mut partition = d.partition.state(&cfg.topic).await.map_err(|e| problem(e.to_string())).ok();
    // The record the snapshot resumes at: its time, not the snapshot's, starts the retention clock.
    let mut point = None;
    if let Some(offset) = offset {
        let next = offset + 1;
        let held = partition.is_some_and(|p| p.earliest <= next && next < p.high);
        let next_record_ms = if held {
            match d.partition.record_time(&cfg.topic, next).await {
                Ok(Some(ms)) => Some(ms),
                read => {
                    // Retention may have deleted the record between the two reads: if the partition now
                    // starts after it, that is the answer (critical), not "cannot tell".
                    let again = d.partition.state(&cfg.topic).await.ok();
                    if again.is_some_and(|p| p.earliest > next) {
                        partition = again;
                    } else if let Err(e) = read {
                        problem(e.to_string());
                    }
                    None
                }
            }
        } else {
            None
        };
        point = Some(SnapshotPoint { kafka_offset: offset, next_record_ms });
    }

    let assessment = assess(point, &retention, partition, cfg.allowance_secs, now);
    let (status, margin, reason) = (assessment.status, assessment.margin_secs, &assessment.reason);
    match status {
        Status::Ok => tracing::info!(?status, margin, %reason, "retention margin"),
        Status::Warning => tracing::warn!(?status, margin, %reason, "retention margin"),
        Status::Critical | Status::Unknown => tracing::error!(?status, margin, %reason, "retention margin"),
    }
    let mut metrics = vec![Metric::gauge("RetentionStatus", Unit::None, status.metric())];
    if let Some(age) = age {
        metrics.push(Metric::gauge("SnapshotAgeSeconds", Unit::Seconds, age as f64));
    }
    // Unknown publishes no margin: a made-up number would hide the problem; the status says it.
    let margin_metric = match (status, margin) {
        (Status::Unknown, _) => None,
        (_, Some(m)) => Some(m),
        (_, None) => Some(UNLIMITED_MARGIN_SECS),
    };
    if let Some(m) = margin_metric {
        metrics.push(Metric::gauge("RetentionMarginSeconds", Unit::Seconds, m as f64));
    }
    d.metrics.publish(&metrics).await?;
    Ok(Report {
        snapshot_offset: offset,
        resumes_at_record_ms: point.and_then(|p| p.next_record_ms),
        assessment,
        snapshot,
        retention,
        partition,
        problems,
    })
}

fn unknown_retention(why: &str) -> Retention {
    Retention { ms: Limit::Unknown, bytes: Limit::Unknown, source: why.into() }
}

#[cfg(test)]
mod tests {
    use ec_functions::{snapshots::record, MemoryMetrics, MemorySnapshots, SnapshotState};

    use super::*;
    use crate::sources::{Fixed, SourceError};

    const NOW: i64 = 1_800_000_000;

    fn cfg(msk: bool) -> Config {
        let mut pairs = vec![("CLUSTER_ID", "c"), ("TOPIC", "t"), ("KAFKA_BROKERS", "127.0.0.1:1")];
        if msk {
            pairs.push(("MSK_CLUSTER_ARN", "arn:aws:kafka:us-east-1:1:cluster/x/y"));
        }
        Config::from_env(&Env::from_pairs(pairs)).expect("config")
    }

    async fn go(
        cfg: &Config,
        topic: Result<Retention, String>,
        msk: Result<Retention, String>,
    ) -> (Report, MemoryMetrics) {
        let snaps = MemorySnapshots::with(vec![record("s", "c", SnapshotState::Completed, NOW - 3600, 99)]);
        let m = MemoryMetrics::default();
        let publisher = m.publisher("c");
        let partition =
            Fixed(Ok(PartitionState { earliest: 0, high: 200, oldest_record_ms: Some((NOW - 7200) * 1000) }));
        let deps = Deps {
            snapshots: &snaps,
            topic: &Fixed(topic),
            msk: &Fixed(msk),
            partition: &partition,
            metrics: &publisher,
        };
        (run(cfg, &deps, NOW).await.expect("run"), m)
    }

    fn hours(h: i64, source: &str) -> Retention {
        Retention { ms: Limit::Value(h * 3_600_000), bytes: Limit::Unlimited, source: source.into() }
    }

    #[tokio::test]
    async fn topic_config_first_then_msk_then_unknown() {
        let (r, m) = go(&cfg(true), Ok(hours(48, "topic")), Ok(hours(1, "msk"))).await;
        assert_eq!((r.assessment.status, r.retention.source.as_str()), (Status::Ok, "topic"));
        // Measured from the next record (written 2 hours ago), not from the snapshot (1 hour ago).
        assert_eq!(m.value("RetentionMarginSeconds"), Some((46 * 3600) as f64));
        assert_eq!(r.resumes_at_record_ms, Some((NOW - 7200) * 1000));
        assert_eq!(m.value("SnapshotAgeSeconds"), Some(3600.0));

        let (r, _) = go(&cfg(true), Err("DescribeConfigs denied".into()), Ok(hours(20, "msk"))).await;
        assert_eq!((r.assessment.status, r.retention.source.as_str()), (Status::Warning, "msk"));
        assert!(r.problems.iter().any(|p| p.contains("DescribeConfigs denied")));

        let (r, m) = go(&cfg(false), Err("down".into()), Ok(hours(20, "msk"))).await;
        assert_eq!(r.assessment.status, Status::Unknown);
        assert_eq!(m.value("RetentionStatus"), Some(3.0));
        assert_eq!(m.value("RetentionMarginSeconds"), None);
    }

    /// Retention deletes the snapshot's next record between the guard's two reads: the answer is
    /// "critical" (the record is gone), not "cannot tell".
    #[tokio::test]
    async fn a_record_deleted_between_the_reads_is_critical() {
        struct Vanishing(std::sync::atomic::AtomicBool);
        #[async_trait::async_trait]
        impl Partition for Vanishing {
            async fn state(&self, _topic: &str) -> Result<PartitionState, SourceError> {
                let gone = self.0.load(std::sync::atomic::Ordering::Relaxed);
                Ok(PartitionState { earliest: if gone { 150 } else { 0 }, high: 200, oldest_record_ms: None })
            }
            async fn record_time(&self, _topic: &str, _offset: i64) -> Result<Option<i64>, SourceError> {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
                Err(SourceError::Other("offset out of range".into()))
            }
        }
        let snaps = MemorySnapshots::with(vec![record("s", "c", SnapshotState::Completed, NOW - 3600, 99)]);
        let m = MemoryMetrics::default();
        let publisher = m.publisher("c");
        let deps = Deps {
            snapshots: &snaps,
            topic: &Fixed(Ok(hours(48, "topic"))),
            msk: &Fixed(Err("unused".into())),
            partition: &Vanishing(Default::default()),
            metrics: &publisher,
        };
        let r = run(&cfg(false), &deps, NOW).await.expect("run");
        assert_eq!(r.assessment.status, Status::Critical, "{}", r.assessment.reason);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(m.value("RetentionStatus"), Some(2.0));
    }
}

//! Metrics: every metric is written as an embedded-metric-format (EMF) log line, which CloudWatch Logs turns
//! into a metric with no API call; the key gauges (those alarms watch) are also sent with `PutMetricData`, so
//! they land even when log extraction lags or the log group is misconfigured. Sending a gauge twice with the
//! same value and timestamp leaves its Minimum/Maximum/Average unchanged; counts go by EMF only, so their sums
//! are not doubled.

use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use serde_json::{json, Map, Value};

use crate::{aws::AwsError, tags::DIMENSION_CLUSTER};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Bytes,
    Count,
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "Seconds",
            Unit::Bytes => "Bytes",
            Unit::Count => "Count",
            Unit::None => "None",
        }
    }

    fn standard(self) -> StandardUnit {
        match self {
            Unit::Seconds => StandardUnit::Seconds,
            Unit::Bytes => StandardUnit::Bytes,
            Unit::Count => StandardUnit::Count,
            Unit::None => StandardUnit::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub value: f64,
    /// Also sent with `PutMetricData` (a gauge an alarm or a test reads), not only as EMF.
    pub key: bool,
}

impl Metric {
    /// A gauge sent both ways.
    pub fn gauge(name: &'static str, unit: Unit, value: f64) -> Self {
        Self { name, unit, value, key: true }
    }

    /// A count sent by EMF only (a second copy would double its sum).
    pub fn count(name: &'static str, value: f64) -> Self {
        Self { name, unit: Unit::Count, value, key: false }
    }
}

/// The EMF log line for `metrics` (one namespace, dimension `Cluster`).
pub fn emf_line(namespace: &str, cluster: &str, metrics: &[Metric], timestamp_ms: i64) -> String {
    let defs: Vec<Value> = metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit.as_str()})).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[DIMENSION_CLUSTER]],
                "Metrics": defs,
            }],
        }),
    );
    root.insert(DIMENSION_CLUSTER.into(), json!(cluster));
    for m in metrics {
        root.insert(m.name.into(), json!(m.value));
    }
    Value::Object(root).to_string()
}

/// Where the key metrics go besides the log.
#[async_trait::async_trait]
pub trait Metrics: Send + Sync {
    async fn put(&self, namespace: &str, cluster: &str, metrics: &[Metric]) -> Result<(), AwsError>;
}

/// CloudWatch `PutMetricData`.
pub struct CloudWatchMetrics(pub aws_sdk_cloudwatch::Client);

#[async_trait::async_trait]
impl Metrics for CloudWatchMetrics {
    async fn put(&self, namespace: &str, cluster: &str, metrics: &[Metric]) -> Result<(), AwsError> {
        if metrics.is_empty() {
            return Ok(());
        }
        let dim = Dimension::builder().name(DIMENSION_CLUSTER).value(cluster).build();
        let data: Vec<MetricDatum> = metrics
            .iter()
            .map(|m| {
                MetricDatum::builder()
                    .metric_name(m.name)
                    .unit(m.unit.standard())
                    .value(m.value)
                    .dimensions(dim.clone())
                    .build()
            })
            .collect();
        self.0
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(data))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::new("PutMetricData", format!("{namespace}/{cluster}"), e))
    }
}

/// Keeps what was put, for tests.
#[derive(Debug, Default, Clone)]
pub struct MemoryMetrics(pub Arc<Mutex<Vec<(String, String, Metric)>>>);

impl MemoryMetrics {
    /// A publisher (namespace `N`) whose backend is this.
    pub fn publisher(&self, cluster: &str) -> Publisher {
        Publisher { namespace: "N".into(), cluster: cluster.into(), backend: Arc::new(self.clone()) }
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().rev().find(|(_, _, m)| m.name == name).map(|(_, _, m)| m.value)
    }
}

#[async_trait::async_trait]
impl Metrics for MemoryMetrics {
    async fn put(&self, namespace: &str, cluster: &str, metrics: &[Metric]) -> Result<(), AwsError> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.extend(metrics.iter().map(|m| (namespace.to_string(), cluster.to_string(), m.clone())));
        Ok(())
    }
}

/// Writes the EMF line and sends the key metrics to the backend.
pub struct Publisher {
    pub namespace: String,
    pub cluster: String,
    pub backend: Arc<dyn Metrics>,
}

impl Publisher {
    /// A publisher to CloudWatch for `cluster`, in `namespace`.
    pub fn cloudwatch(namespace: &str, cluster: &str, client: aws_sdk_cloudwatch::Client) -> Self {
        Self {
            namespace: namespace.into(),
            cluster: cluster.into(),
            backend: Arc::new(CloudWatchMetrics(client)),
        }
    }

    pub async fn publish(&self, metrics: &[Metric]) -> Result<(), AwsError> {
        if metrics.is_empty() {
            return Ok(());
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Straight to stdout, not through tracing: CloudWatch Logs only extracts a line that is the EMF
        // object itself.
        println!("{}", emf_line(&self.namespace, &self.cluster, metrics, now_ms));
        let key: Vec<Metric> = metrics.iter().filter(|m| m.key).cloned().collect();
        self.backend.put(&self.namespace, &self.cluster, &key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_under_the_cluster_dimension() {
        let line = emf_line(
            "EtherCattle",
            "c1",
            &[
                Metric::gauge("RetentionMarginSeconds", Unit::Seconds, 12.5),
                Metric::count("SnapshotsPruned", 2.0),
            ],
            1_700_000_000_000,
        );
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["Cluster"], "c1");
        assert_eq!(v["RetentionMarginSeconds"], 12.5);
        assert_eq!(v["SnapshotsPruned"], 2.0);
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "EtherCattle");
        assert_eq!(cw["Dimensions"], json!([["Cluster"]]));
        assert_eq!(cw["Metrics"][0], json!({"Name": "RetentionMarginSeconds", "Unit": "Seconds"}));
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }

    #[tokio::test]
    async fn only_key_metrics_go_to_the_backend() {
        let mem = MemoryMetrics::default();
        let p = Publisher { namespace: "N".into(), cluster: "c".into(), backend: Arc::new(mem.clone()) };
        p.publish(&[Metric::gauge("A", Unit::None, 1.0), Metric::count("B", 3.0)]).await.expect("publish");
        assert_eq!(mem.value("A"), Some(1.0));
        assert_eq!(mem.value("B"), None);
    }
}

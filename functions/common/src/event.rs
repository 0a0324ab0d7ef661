//! The EventBridge events the functions are invoked with, reduced to what they decide on.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// `Scheduled Event` (a schedule rule), or a direct invocation without an EventBridge envelope.
    Scheduled,
    /// `EBS Snapshot Notification` for `createSnapshot`.
    SnapshotCreated { snapshot_id: String, succeeded: bool },
    /// `CloudWatch Alarm State Change`.
    AlarmStateChange { alarm: String, state: String },
    /// Any other detail-type: logged and otherwise treated like a schedule tick.
    Other(String),
}

impl Trigger {
    pub fn from_event(event: &Value) -> Self {
        let detail = &event["detail"];
        match event["detail-type"].as_str() {
            None | Some("Scheduled Event") => Trigger::Scheduled,
            Some("EBS Snapshot Notification") => {
                // `snapshot_id` is an ARN: arn:aws:ec2::<region>:snapshot/snap-…
                let arn = detail["snapshot_id"].as_str().unwrap_or_default();
                Trigger::SnapshotCreated {
                    snapshot_id: arn.rsplit('/').next().unwrap_or(arn).to_string(),
                    succeeded: detail["result"].as_str() == Some("succeeded"),
                }
            }
            Some("CloudWatch Alarm State Change") => Trigger::AlarmStateChange {
                alarm: detail["alarmName"].as_str().unwrap_or_default().to_string(),
                state: detail["state"]["value"].as_str().unwrap_or_default().to_string(),
            },
            Some(other) => Trigger::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_three_event_kinds() {
        let table = [
            (json!({"detail-type": "Scheduled Event", "detail": {}}), Trigger::Scheduled),
            (json!({}), Trigger::Scheduled),
            (
                json!({"detail-type": "EBS Snapshot Notification", "detail": {"event": "createSnapshot",
                    "result": "succeeded", "snapshot_id": "arn:aws:ec2::us-east-1:snapshot/snap-01"}}),
                Trigger::SnapshotCreated { snapshot_id: "snap-01".into(), succeeded: true },
            ),
            (
                json!({"detail-type": "CloudWatch Alarm State Change", "detail": {"alarmName": "hot",
                    "state": {"value": "ALARM"}}}),
                Trigger::AlarmStateChange { alarm: "hot".into(), state: "ALARM".into() },
            ),
            (json!({"detail-type": "X"}), Trigger::Other("X".into())),
        ];
        for (event, want) in table {
            assert_eq!(Trigger::from_event(&event), want, "{event}");
        }
    }
}

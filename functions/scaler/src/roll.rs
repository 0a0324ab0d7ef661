//! Whether to replace running instances: the pure "roll or not" decision.
//!
//! A stack update (new image, AMI, instance type, user data) makes a new launch-template version and sets it
//! on the groups, but running instances keep what they were launched from. New snapshots make new versions
//! too, and those must not roll anything: a running replica does not care which snapshot its volume came
//! from. So instances are compared with the group's version on everything *but* the data volume's snapshot
//! (a [`LaunchConfig`]), and a group with instances on an older configuration gets an instance refresh that
//! launches each replacement first and keeps every ready replica in service until the replacement is ready
//! (the launch hook holds new instances out of service until `/health/ready` answers).

use serde::Serialize;

/// What an instance is launched with, without the data volume's snapshot: two versions with equal configs
/// differ only in the snapshot new volumes come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LaunchConfig(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "roll", content = "reason", rename_all = "kebab-case")]
pub enum Roll {
    Keep(String),
    Start(String),
}

/// `group`: the configuration of the version the group launches now; `instances`: that of each in-service
/// instance (`None`: launched from something else than the template, or a version that no longer exists);
/// `refresh_in_progress`: asked only when there is something to roll (`None` when not asked).
pub fn decide_roll(
    group: &LaunchConfig,
    instances: &[Option<LaunchConfig>],
    refresh_in_progress: Option<bool>,
) -> Roll {
    let n = outdated(group, instances);
    if n == 0 {
        return Roll::Keep(format!("all {} instances run the group's launch configuration", instances.len()));
    }
    match refresh_in_progress {
        Some(true) => Roll::Keep(format!("{n} instances outdated; an instance refresh is in progress")),
        Some(false) => Roll::Start(format!(
            "{n} of {} instances run an older launch configuration (image, instance type or user data)",
            instances.len()
        )),
        None => Roll::Keep(format!("{n} instances outdated; refresh state not read")),
    }
}

/// How many instances a decision would roll (the caller asks for the refresh state only when this is > 0).
pub fn outdated(group: &LaunchConfig, instances: &[Option<LaunchConfig>]) -> usize {
    instances.iter().filter(|c| c.as_ref() != Some(group)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<LaunchConfig> {
        Some(LaunchConfig(s.into()))
    }

    #[test]
    fn roll_table() {
        let group = LaunchConfig("image-2".into());
        // (name, instances' configs, refresh in progress, outdated count, start a refresh)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Vec<Option<LaunchConfig>>, Option<bool>, usize, bool)> = vec![
            (
                "all current (snapshot-only versions compare equal)",
                vec![c("image-2"), c("image-2")],
                None,
                0,
                false,
            ),
            ("no instances", vec![], None, 0, false),
            ("one on the old image", vec![c("image-2"), c("image-1")], Some(false), 1, true),
            ("all old", vec![c("image-1"), c("image-1")], Some(false), 2, true),
            ("launched from an unknown version", vec![None], Some(false), 1, true),
            ("a refresh already runs", vec![c("image-1")], Some(true), 1, false),
            ("refresh state unread", vec![c("image-1")], None, 1, false),
        ];
        for (name, instances, in_progress, n, start) in cases {
            assert_eq!(outdated(&group, &instances), n, "{name}");
            let r = decide_roll(&group, &instances, in_progress);
            assert_eq!(matches!(r, Roll::Start(_)), start, "{name}: {r:?}");
        }
    }
}

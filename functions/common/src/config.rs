//! Configuration from environment variables (the Lambda way), with defaults as in `docs/aws-contract.md`.

use std::{collections::HashMap, str::FromStr};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
}

/// A snapshot of the variables, so tests pass a map instead of mutating the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    /// The value, if set and not empty (CloudFormation passes empty strings for unset parameters).
    pub fn optional(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    pub fn parse_or<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                value: v.clone(),
                reason: e.to_string(),
            }),
        }
    }

    pub fn parse_required<T: FromStr>(&self, name: &'static str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.required(name)?;
        v.parse().map_err(|e: T::Err| ConfigError::Invalid { name, value: v.clone(), reason: e.to_string() })
    }

    /// `CLUSTER_ID`, which every function needs.
    pub fn cluster(&self) -> Result<String, ConfigError> {
        self.required("CLUSTER_ID")
    }

    /// `METRICS_NAMESPACE`, default `EtherCattle`.
    pub fn namespace(&self) -> String {
        self.optional("METRICS_NAMESPACE").unwrap_or_else(|| "EtherCattle".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parsing_and_errors() {
        let env = Env::from_pairs([("A", "5"), ("B", "x"), ("E", "  ")]);
        assert_eq!(env.parse_or("A", 1u32), Ok(5));
        assert_eq!(env.parse_or("Z", 1u32), Ok(1));
        assert_eq!(env.parse_or("E", 2u32), Ok(2), "empty counts as unset");
        assert!(matches!(env.parse_or("B", 1u32), Err(ConfigError::Invalid { name: "B", .. })));
        assert_eq!(env.required("Z"), Err(ConfigError::Missing("Z")));
        assert_eq!(env.namespace(), "EtherCattle");
    }
}

//! Kafka credentials for the guard: SCRAM from the same Secrets Manager secret the publisher and the replicas
//! read (`{"username": ..., "password": ...}`, an `AmazonMSK_*` secret), or MSK IAM tokens signed with the
//! function's role. Set up once per container, at the first run, and kept: Lambda reuses the container.

use ec_functions::AwsError;
use ec_kafka::KafkaConfig;
use serde::Deserialize;

#[derive(Deserialize)]
struct ScramSecret {
    username: String,
    password: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("secret {arn} is not SCRAM credentials ({{\"username\", \"password\"}}): {reason}")]
    Shape { arn: String, reason: String },
    #[error("MSK IAM: {0}")]
    MskIam(String),
}

/// `config` with the secret's SCRAM credentials (mechanism SCRAM-SHA-512 unless one is set).
pub fn with_scram(config: &KafkaConfig, arn: &str, secret: &str) -> Result<KafkaConfig, SecretError> {
    let s: ScramSecret = serde_json::from_str(secret)
        .map_err(|e| SecretError::Shape { arn: arn.to_string(), reason: e.to_string() })?;
    let mut c = config.clone();
    c.sasl_mechanism.get_or_insert_with(|| "SCRAM-SHA-512".to_string());
    c.sasl_username = Some(s.username);
    c.sasl_password = Some(s.password);
    Ok(c)
}

/// Starts MSK IAM tokens for this process from the function's region and role.
pub async fn start_msk_iam(sdk: &aws_config::SdkConfig) -> Result<(), SecretError> {
    let region = sdk.region().ok_or_else(|| SecretError::MskIam("no AWS region".into()))?;
    let provider =
        sdk.credentials_provider().ok_or_else(|| SecretError::MskIam("no credentials provider".into()))?;
    ec_kafka::msk_iam::MskIam::start(region.as_ref(), provider)
        .await
        .map(|_| ())
        .map_err(|e| SecretError::MskIam(e.to_string()))
}

/// `GetSecretValue`'s string.
pub async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<String, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| AwsError::new("GetSecretValue", arn, e))?;
    out.secret_string()
        .map(str::to_string)
        .ok_or_else(|| AwsError::malformed("GetSecretValue", arn, "no SecretString").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_secret_table() {
        let base =
            KafkaConfig { security_protocol: Some("SASL_SSL".into()), ..KafkaConfig::plaintext("b:9096") };
        let c = with_scram(&base, "arn:s", r#"{"username":"guard","password":"p w"}"#).expect("parse");
        assert_eq!(
            (c.sasl_mechanism.as_deref(), c.sasl_username.as_deref(), c.sasl_password.as_deref()),
            (Some("SCRAM-SHA-512"), Some("guard"), Some("p w"))
        );
        let sha256 = KafkaConfig { sasl_mechanism: Some("SCRAM-SHA-256".into()), ..base.clone() };
        let c = with_scram(&sha256, "arn:s", r#"{"username":"u","password":"p"}"#).expect("parse");
        assert_eq!(c.sasl_mechanism.as_deref(), Some("SCRAM-SHA-256"), "a mechanism set is kept");
        for bad in [r#"{"username":"u"}"#, "not json", r#"{"user":"u","pass":"p"}"#] {
            let err = with_scram(&base, "arn:s", bad).expect_err(bad);
            assert!(err.to_string().contains("secret arn:s is not SCRAM credentials"), "{err}");
        }
    }
}

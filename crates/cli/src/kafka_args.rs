//! Kafka connection flags, shared by every subcommand that talks to a broker.

use anyhow::Context;
use ec_kafka::KafkaConfig;

#[derive(clap::Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Bootstrap brokers, `host:port[,host:port...]` (MSK: the TLS or SASL/SCRAM bootstrap string).
    #[arg(long, env = "EC_KAFKA_BROKERS")]
    pub brokers: String,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(long, env = "EC_KAFKA_SECURITY_PROTOCOL")]
    pub kafka_security_protocol: Option<String>,
    /// SASL mechanism: SCRAM-SHA-512 (MSK SCRAM), or AWS_MSK_IAM for MSK IAM access control (OAUTHBEARER
    /// tokens signed with the process's AWS credentials; brokers on port 9098).
    #[arg(long, env = "EC_KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    #[arg(long, env = "EC_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// Prefer the environment variable: flags show up in process listings.
    #[arg(long, env = "EC_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// PEM CA bundle for TLS; unset, the system's bundle found at its usual paths (librdkafka's `probe`).
    #[arg(long, env = "EC_KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<String>,
    /// With `--kafka-sasl-mechanism OAUTHBEARER`: sign in with unsigned tokens naming this principal, for a
    /// development or test broker that validates with Kafka's unsecured validator (never in production).
    #[arg(long, env = "EC_KAFKA_OAUTH_UNSECURED_PRINCIPAL")]
    pub kafka_oauth_unsecured_principal: Option<String>,
    /// Any librdkafka property, `key=value`; repeatable.
    #[arg(long = "kafka-option", value_parser = parse_key_value)]
    pub kafka_options: Vec<(String, String)>,
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

impl KafkaArgs {
    /// The configuration, with MSK IAM authentication started when the SASL mechanism is `AWS_MSK_IAM`: AWS
    /// credentials and region from the SDK's usual chain (environment, instance profile, ...), refreshed in
    /// the background for as long as the process runs.
    pub async fn connect(self) -> anyhow::Result<KafkaConfig> {
        let unsecured = self.kafka_oauth_unsecured_principal.clone();
        let cfg = self.into_config();
        if let Some(principal) = unsecured {
            if cfg.sasl_mechanism.as_deref() != Some("OAUTHBEARER") {
                anyhow::bail!("--kafka-oauth-unsecured-principal needs --kafka-sasl-mechanism OAUTHBEARER");
            }
            ec_kafka::unsecured::UnsecuredJwt::install(&principal);
            tracing::warn!(%principal, "Kafka: unsigned OAUTHBEARER tokens (a development broker's unsecured validator)");
        }
        if cfg.is_msk_iam() {
            let sdk = crate::aws::sdk_config().await;
            let region = sdk
                .region()
                .map(|r| r.to_string())
                .context("MSK IAM needs an AWS region (AWS_REGION, or the instance's metadata)")?;
            let provider = sdk.credentials_provider().context("MSK IAM needs an AWS credentials provider")?;
            ec_kafka::msk_iam::MskIam::start(&region, provider)
                .await
                .context("starting MSK IAM authentication")?;
            tracing::info!(%region, "Kafka: MSK IAM authentication (SASL/OAUTHBEARER)");
        }
        Ok(cfg)
    }

    pub fn into_config(self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.brokers,
            security_protocol: self.kafka_security_protocol,
            sasl_mechanism: self.kafka_sasl_mechanism,
            sasl_username: self.kafka_sasl_username,
            sasl_password: self.kafka_sasl_password,
            ssl_ca_location: self.kafka_ssl_ca_location,
            extra: self.kafka_options,
        }
    }
}

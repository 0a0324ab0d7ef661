//! Kafka connection flags, shared by every subcommand that talks to a broker.

use ec_kafka::KafkaConfig;

#[derive(clap::Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Bootstrap brokers, `host:port[,host:port...]` (MSK: the TLS or SASL/SCRAM bootstrap string).
    #[arg(long, env = "EC_KAFKA_BROKERS")]
    pub brokers: String,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(long, env = "EC_KAFKA_SECURITY_PROTOCOL")]
    pub kafka_security_protocol: Option<String>,
    /// SASL mechanism, e.g. SCRAM-SHA-512 (MSK).
    #[arg(long, env = "EC_KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    #[arg(long, env = "EC_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// Prefer the environment variable: flags show up in process listings.
    #[arg(long, env = "EC_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// PEM CA bundle for TLS; the system trust store when unset.
    #[arg(long, env = "EC_KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<String>,
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

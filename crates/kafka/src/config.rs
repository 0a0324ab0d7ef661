//! Connection settings shared by producers and consumers.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// Where the brokers are and how to authenticate. The defaults suit a local plaintext broker; for MSK set
/// `security_protocol` to `SSL` (TLS, port 9094) or `SASL_SSL` with `sasl_mechanism = "SCRAM-SHA-512"`
/// (port 9096).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port`.
    pub brokers: String,
    /// `security.protocol`: PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL.
    pub security_protocol: Option<String>,
    /// `sasl.mechanism`, e.g. SCRAM-SHA-512 for MSK.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// `ssl.ca.location`: a PEM bundle; unset uses the system's trust store.
    pub ssl_ca_location: Option<String>,
    /// Any other librdkafka property, `key=value`, applied last.
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn plaintext(brokers: impl Into<String>) -> Self {
        Self { brokers: brokers.into(), ..Self::default() }
    }

    /// The librdkafka configuration common to every client.
    pub fn client_config(&self) -> ClientConfig {
        self.client_config_with(&[])
    }

    /// The common configuration plus a client's own `defaults`; the operator's `extra` properties are
    /// applied last, so any default can be tuned without a new build.
    pub fn client_config_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        // Test brokers listen on 127.0.0.1; resolving "localhost" to ::1 first only costs time.
        c.set("broker.address.family", "v4");
        let optional = [
            ("security.protocol", &self.security_protocol),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
            ("ssl.ca.location", &self.ssl_ca_location),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                c.set(key, v);
            }
        }
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

//! Connection settings shared by producers and consumers.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// Where the brokers are and how to authenticate. The defaults suit a local plaintext broker; for MSK set
/// `security_protocol` to `SSL` (TLS, port 9094), `SASL_SSL` with `sasl_mechanism = "SCRAM-SHA-512"`
/// (port 9096), or `sasl_mechanism = "AWS_MSK_IAM"` for IAM access control (port 9098; the process must
/// start [`crate::msk_iam::MskIam`]).
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

    /// Whether the SASL mechanism is MSK IAM ([`crate::msk_iam::MECHANISM`]).
    pub fn is_msk_iam(&self) -> bool {
        self.sasl_mechanism.as_deref() == Some(crate::msk_iam::MECHANISM)
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
        // MSK IAM is SASL/OAUTHBEARER over TLS (port 9098) with tokens from crate::msk_iam, which the
        // clients' context asks for.
        if self.is_msk_iam() {
            c.set("sasl.mechanism", "OAUTHBEARER");
            c.set("security.protocol", self.security_protocol.as_deref().unwrap_or("SASL_SSL"));
        }
        // OpenSSL is built into the binaries (rdkafka's `ssl-vendored`), so its default certificate paths are
        // its build's, not the system's: over TLS with no CA bundle named, librdkafka probes the system's
        // usual bundle paths (Debian's, Amazon Linux's and the Lambda runtime's among them).
        let tls = c
            .get("security.protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("SSL") || p.eq_ignore_ascii_case("SASL_SSL"));
        if tls && self.ssl_ca_location.is_none() {
            c.set("ssl.ca.location", "probe");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msk_iam_asks_for_oauthbearer_over_tls() {
        let iam =
            KafkaConfig { sasl_mechanism: Some("AWS_MSK_IAM".into()), ..KafkaConfig::plaintext("b-1:9098") };
        let c = iam.client_config();
        assert_eq!(
            (c.get("sasl.mechanism"), c.get("security.protocol")),
            (Some("OAUTHBEARER"), Some("SASL_SSL"))
        );
        let scram = KafkaConfig {
            security_protocol: Some("SASL_SSL".into()),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            ..KafkaConfig::plaintext("b-1:9096")
        };
        assert_eq!(scram.client_config().get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert!(!scram.is_msk_iam() && iam.is_msk_iam());
        // A test broker's SASL_PLAINTEXT listener with MSK IAM's mechanism (the OAUTHBEARER path, no TLS).
        let plain = KafkaConfig { security_protocol: Some("SASL_PLAINTEXT".into()), ..iam.clone() };
        assert_eq!(plain.client_config().get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(plain.client_config().get("ssl.ca.location"), None);
    }

    #[test]
    fn tls_finds_the_systems_certificates_unless_told_where() {
        let tls = |protocol: &str, ca: Option<&str>| {
            let k = KafkaConfig {
                security_protocol: Some(protocol.into()),
                ssl_ca_location: ca.map(String::from),
                ..KafkaConfig::plaintext("b-1:9094")
            };
            k.client_config().get("ssl.ca.location").map(String::from)
        };
        assert_eq!(tls("SSL", None).as_deref(), Some("probe"));
        assert_eq!(tls("SASL_SSL", None).as_deref(), Some("probe"));
        assert_eq!(tls("SSL", Some("/etc/ca.pem")).as_deref(), Some("/etc/ca.pem"));
        assert_eq!(tls("PLAINTEXT", None), None);
        // MSK IAM defaults to SASL_SSL.
        let iam =
            KafkaConfig { sasl_mechanism: Some("AWS_MSK_IAM".into()), ..KafkaConfig::plaintext("b-1:9098") };
        assert_eq!(iam.client_config().get("ssl.ca.location"), Some("probe"));
    }
}

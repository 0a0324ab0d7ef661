//! Amazon MSK IAM access control: SASL/OAUTHBEARER whose token is a SigV4-presigned `kafka-cluster:Connect`
//! request, as AWS's `aws-msk-iam-sasl-signer` libraries make it:
//!
//! 1. the URL `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`, presigned in the query
//!    string for service `kafka-cluster`, valid 15 minutes;
//! 2. a `User-Agent` parameter appended (not signed);
//! 3. the whole URL base64url-encoded without padding.
//!
//! Signing is local and quick; fetching credentials is not, so [`MskIam`] keeps the newest credentials from
//! the AWS SDK's provider (instance profile, Lambda role, ...) refreshed by a background task, and signs with
//! them whenever librdkafka asks for a token (at start and before each token expires).

use std::{
    error::Error,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use aws_credential_types::{
    provider::{ProvideCredentials, SharedCredentialsProvider},
    Credentials,
};
use aws_sigv4::{
    http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rdkafka::client::OAuthToken;

use crate::context::{install_token_source, TokenSource};

/// How long a token is valid (the signature's `X-Amz-Expires`).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// The `sasl.mechanism` value that selects MSK IAM in [`crate::KafkaConfig`] (the name AWS's Java client uses).
pub const MECHANISM: &str = "AWS_MSK_IAM";

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded (SigV4's rule).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[derive(Debug, thiserror::Error)]
pub enum MskIamError {
    #[error("signing the MSK IAM token for region {region}: {message}")]
    Sign { region: String, message: String },
    #[error("no AWS credentials for MSK IAM yet: {0}")]
    NoCredentials(String),
}

/// The token for `region` signed with `credentials` at `now`.
pub fn token(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
    user_agent: &str,
) -> Result<OAuthToken, MskIamError> {
    let err = |e: &dyn std::fmt::Display| MskIamError::Sign { region: region.into(), message: e.to_string() };
    let url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kafka-cluster")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| err(&e))?
        .into();
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| err(&e))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| err(&e))?.into_parts();
    let mut signed = url;
    for (name, value) in instructions.params() {
        signed.push_str(&format!("&{name}={}", utf8_percent_encode(value, QUERY_VALUE)));
    }
    signed.push_str(&format!("&User-Agent={}", utf8_percent_encode(user_agent, QUERY_VALUE)));
    let issued_ms = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    Ok(OAuthToken {
        token: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed),
        principal_name: credentials.access_key_id().to_string(),
        lifetime_ms: issued_ms + TOKEN_LIFETIME.as_millis() as i64,
    })
}

/// Tokens for one region from credentials kept fresh in the background.
pub struct MskIam {
    region: String,
    user_agent: String,
    credentials: RwLock<Option<Credentials>>,
}

impl MskIam {
    /// Fetches credentials once (so the first token can be signed), installs this as the process's token
    /// source, and refreshes the credentials every few minutes on the current Tokio runtime.
    pub async fn start(region: &str, provider: SharedCredentialsProvider) -> Result<Arc<Self>, MskIamError> {
        let first =
            provider.provide_credentials().await.map_err(|e| MskIamError::NoCredentials(e.to_string()))?;
        let me = Arc::new(Self {
            region: region.to_string(),
            user_agent: format!("ether-cattle/{}", env!("CARGO_PKG_VERSION")),
            credentials: RwLock::new(Some(first)),
        });
        install_token_source(me.clone());
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(300)).await;
                let Some(me) = weak.upgrade() else { return };
                match provider.provide_credentials().await {
                    Ok(c) => *me.credentials.write().unwrap_or_else(|e| e.into_inner()) = Some(c),
                    // The previous credentials stay until they expire; the next attempt is in 5 minutes.
                    Err(e) => tracing::error!("refreshing AWS credentials for MSK IAM: {e}"),
                }
            }
        });
        Ok(me)
    }
}

impl TokenSource for MskIam {
    fn token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        let credentials = self.credentials.read().unwrap_or_else(|e| e.into_inner()).clone();
        let credentials = credentials.ok_or_else(|| MskIamError::NoCredentials("none fetched".into()))?;
        Ok(token(&self.region, &credentials, SystemTime::now(), &self.user_agent)?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn decode(token: &str) -> (String, BTreeMap<String, String>) {
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .expect("base64url without padding");
        let url = String::from_utf8(url).expect("utf-8");
        let (base, query) = url.split_once('?').expect("a query");
        let params = query
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("k=v");
                (
                    k.to_string(),
                    percent_encoding::percent_decode_str(v).decode_utf8().expect("utf-8").into_owned(),
                )
            })
            .collect();
        (base.to_string(), params)
    }

    #[test]
    fn token_is_a_presigned_connect_request() {
        let creds =
            Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, None, "test");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200); // 2026-12-01T00:00:00Z
        let t = token("eu-west-1", &creds, now, "ether-cattle/test").expect("token");
        assert!(
            !t.token.contains('=') && !t.token.contains('+') && !t.token.contains('/'),
            "base64url, no padding"
        );
        let (base, q) = decode(&t.token);
        assert_eq!(base, "https://kafka.eu-west-1.amazonaws.com/");
        assert_eq!(q["Action"], "kafka-cluster:Connect");
        assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(q["X-Amz-Credential"], "AKIDEXAMPLE/20261201/eu-west-1/kafka-cluster/aws4_request");
        assert_eq!(q["X-Amz-Date"], "20261201T000000Z");
        assert_eq!(q["X-Amz-Expires"], "900");
        assert_eq!(q["X-Amz-SignedHeaders"], "host");
        assert_eq!(q["User-Agent"], "ether-cattle/test");
        let sig = &q["X-Amz-Signature"];
        assert!(sig.len() == 64 && sig.chars().all(|c| c.is_ascii_hexdigit()), "{sig}");
        assert!(!q.contains_key("X-Amz-Security-Token"), "no session token given");
        assert_eq!(t.lifetime_ms, (1_796_083_200 + 900) * 1000);
        assert_eq!(t.principal_name, "AKIDEXAMPLE");

        // Deterministic for fixed inputs, different for another time or key; a session token is carried.
        let again = token("eu-west-1", &creds, now, "ether-cattle/test").expect("token");
        assert_eq!(again.token, t.token);
        let later =
            token("eu-west-1", &creds, now + Duration::from_secs(1), "ether-cattle/test").expect("token");
        assert_ne!(decode(&later.token).1["X-Amz-Signature"], *sig);
        let session = Credentials::new("ASIAEXAMPLE", "secret", Some("session/token+x".into()), None, "test");
        let (_, q) = decode(&token("eu-west-1", &session, now, "ua").expect("token").token);
        assert_eq!(q["X-Amz-Security-Token"], "session/token+x");
    }
}

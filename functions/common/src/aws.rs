//! AWS client construction and error wrapping.

use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// The shared SDK configuration: region and credentials from the Lambda environment. `AWS_ENDPOINT_URL`
/// (and the per-service `AWS_ENDPOINT_URL_<SERVICE>`) is honoured by the loader, which is how the tests point
/// every client at a moto server.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client()).load().await
}

/// The HTTPS client every AWS call goes through: hyper on rustls with the ring crypto provider (the SDK's
/// default would be aws-lc, a C build the project does not otherwise need; see the workspace Cargo.toml).
fn https_client() -> aws_sdk_ec2::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// An AWS call that failed, naming the API call and the resource it was about, with the SDK's full error
/// chain (service error code and message, or the transport failure).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("AWS {call} on {resource} failed: {message}")]
pub struct AwsError {
    pub call: &'static str,
    pub resource: String,
    pub message: String,
}

impl AwsError {
    pub fn new(call: &'static str, resource: impl Into<String>, err: impl std::error::Error) -> Self {
        // DisplayErrorContext prints the whole source chain; the plain Display of an SdkError is only
        // "service error".
        let message = aws_sdk_ec2::error::DisplayErrorContext(&err).to_string();
        Self { call, resource: resource.into(), message }
    }

    /// A call that answered, but without something it must have (a missing id, an unparseable field).
    pub fn malformed(call: &'static str, resource: impl Into<String>, what: impl Into<String>) -> Self {
        Self { call, resource: resource.into(), message: what.into() }
    }
}

/// An SDK configuration for a local emulator (moto) at `endpoint`: region us-east-1, static dummy credentials.
/// Tests use it instead of mutating the process environment.
pub async fn emulator_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let creds = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "emulator");
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await
}

//! The AWS SDK's configuration for the commands that call AWS (MSK IAM tokens, the filter table): credentials
//! and region from the SDK's usual chain (environment, instance profile, ...), an endpoint from
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` when set (the local cluster's emulator), rustls for TLS.

pub async fn sdk_config() -> aws_config::SdkConfig {
    let tls = aws_smithy_http_client::tls::Provider::Rustls(
        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
    );
    let http = aws_smithy_http_client::Builder::new().tls_provider(tls).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await
}

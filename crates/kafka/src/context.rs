//! The client context every Ether Cattle Kafka client is created with ([`KafkaContext`]): librdkafka's errors
//! through `tracing`, and SASL/OAUTHBEARER tokens from the process's token source.
//!
//! The token source is process-wide ([`install_token_source`]): credentials belong to the process (an
//! instance profile, a Lambda role), and one place to install them spares every producer, consumer and admin
//! client a parameter. librdkafka asks for a token when a client starts and again before the last one
//! expires; with no source installed, OAUTHBEARER clients fail to authenticate with an error saying so.

use std::{
    error::Error,
    ffi::{c_char, CString},
    sync::{Arc, RwLock},
};

use rdkafka::{
    client::OAuthToken,
    consumer::ConsumerContext,
    error::{KafkaError, RDKafkaErrorCode},
    ClientContext,
};

/// Produces SASL/OAUTHBEARER tokens. Called on librdkafka's polling path, possibly on an async worker: it
/// must not block on I/O (sign with credentials already at hand).
pub trait TokenSource: Send + Sync {
    fn token(&self) -> Result<OAuthToken, Box<dyn Error>>;
}

static TOKEN_SOURCE: RwLock<Option<Arc<dyn TokenSource>>> = RwLock::new(None);

/// Makes `source` the token source of every OAUTHBEARER client of this process, created before or after.
pub fn install_token_source(source: Arc<dyn TokenSource>) {
    *TOKEN_SOURCE.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
}

/// Sets a fresh token on a client just made, when its configuration uses OAUTHBEARER: every client of the
/// crate (admin, consumers, producers) is primed so.
///
/// librdkafka asks for a token through an event on the client's main queue, which rust-rdkafka handles only
/// while something polls that queue: a consumer handles it in its first `recv`, a producer on its polling
/// thread, an admin client never (it polls only its own result queue). A call made before then (a consumer's
/// watermarks before its first poll, as the replica, the publisher's tail reader and the retention guard all
/// start) waits for a token that never comes and times out. Primed, the first call signs in; the refresh
/// before expiry comes through the poll path (consumers and producers poll for as long as they live; admin
/// clients are made for one request each, well within a token's lifetime).
pub fn prime<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    config: &crate::KafkaConfig,
) -> Result<(), crate::KafkaIoError> {
    prime_token(client, config)
        .map_err(|message| crate::KafkaIoError::Auth { brokers: config.brokers.clone(), message })
}

fn prime_token<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    config: &crate::KafkaConfig,
) -> Result<(), String> {
    let oauth = config.is_msk_iam() || config.sasl_mechanism.as_deref() == Some("OAUTHBEARER");
    if !oauth {
        return Ok(());
    }
    let token = KafkaContext.generate_oauth_token(None).map_err(|e| e.to_string())?;
    let value = CString::new(token.token).map_err(|e| format!("token: {e}"))?;
    let principal = CString::new(token.principal_name).map_err(|e| format!("principal: {e}"))?;
    let mut errstr = [0 as c_char; 512];
    // SAFETY: the client pointer is live for the borrow of `client`; the strings are NUL-terminated and
    // outlive the call, which copies them; no extensions (null, 0); errstr is a writable buffer of its size.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_oauthbearer_set_token(
            client.native_ptr(),
            value.as_ptr(),
            token.lifetime_ms,
            principal.as_ptr(),
            std::ptr::null_mut(),
            0,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        // SAFETY: librdkafka wrote a NUL-terminated message into errstr (zero-initialised, so terminated).
        let message = unsafe { std::ffi::CStr::from_ptr(errstr.as_ptr()) };
        Err(format!("setting the OAUTHBEARER token: {}", message.to_string_lossy()))
    }
}

/// The context of every client: errors to `tracing` (except "end of partition", which a replica reads as the
/// news that it caught up, see [`crate::Fetched::EndOfPartition`]), tokens from the installed source.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaContext;

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !eof {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        let source = TOKEN_SOURCE.read().unwrap_or_else(|e| e.into_inner()).clone();
        match source {
            Some(s) => s.token(),
            None => Err("SASL/OAUTHBEARER needs a token source, and none is installed (for MSK IAM set the \
                         SASL mechanism to AWS_MSK_IAM)"
                .into()),
        }
    }
}

impl ConsumerContext for KafkaContext {}

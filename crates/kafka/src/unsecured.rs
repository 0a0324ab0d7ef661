//! Unsigned JWTs for Kafka's unsecured OAUTHBEARER validator, the broker's default when it is given no other:
//! it takes a token's `sub` claim as the client's principal. A development or test broker (the grant tests,
//! `tests/kafka_grants.rs`) names each client so, and its ACLs then apply per principal, without AWS. Never
//! for production: anybody can sign such a token.

use std::{
    error::Error,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use rdkafka::client::OAuthToken;

use crate::context::{install_token_source, TokenSource};

/// How long each token lives; librdkafka asks for the next one before it ends.
const LIFETIME_SECS: u64 = 900;

/// Tokens for one principal.
pub struct UnsecuredJwt {
    principal: String,
}

impl UnsecuredJwt {
    pub fn new(principal: &str) -> Self {
        Self { principal: principal.to_owned() }
    }

    /// Makes it the token source of every OAUTHBEARER client of this process.
    pub fn install(principal: &str) {
        install_token_source(Arc::new(Self::new(principal)));
    }
}

impl TokenSource for UnsecuredJwt {
    fn token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let claims = serde_json::json!({"sub": self.principal, "iat": now, "exp": now + LIFETIME_SECS});
        Ok(OAuthToken {
            token: format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&claims.to_string())),
            principal_name: self.principal.clone(),
            lifetime_ms: ((now + LIFETIME_SECS) * 1000) as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_principal_and_is_unsigned() {
        let t = UnsecuredJwt::new("replica").token().expect("token");
        let parts: Vec<&str> = t.token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "", "no signature");
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).expect("base64");
        let claims: serde_json::Value = serde_json::from_slice(&claims).expect("json");
        assert_eq!(claims["sub"], "replica");
        assert_eq!(t.principal_name, "replica");
    }
}

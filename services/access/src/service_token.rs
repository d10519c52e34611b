//! Client credentials for service-to-service calls: a service trades its id and secret
//! for a short-lived token with the callee as audience, and reuses it until near expiry.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::AccessError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

pub struct ServiceTokenSource {
    endpoint: String,
    client_id: String,
    client_secret: String,
    audience: String,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl ServiceTokenSource {
    /// `auth_url` is the auth service's base URL (`http://auth:8081`).
    pub fn new(
        auth_url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: format!("{}/v1/auth/service-token", auth_url.trim_end_matches('/')),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            audience: audience.into(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// A token valid for at least 30 more seconds.
    pub async fn token(&self) -> Result<String, AccessError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let response = self
            .client
            .post(&self.endpoint)
            .json(&serde_json::json!({
                "clientId": self.client_id,
                "clientSecret": self.client_secret,
                "audience": self.audience,
            }))
            .send()
            .await
            .map_err(|error| AccessError::ServiceToken(error.into()))?;
        if !response.status().is_success() {
            return Err(AccessError::ServiceToken(
                format!("auth answered {}", response.status()).into(),
            ));
        }
        let issued: ServiceTokenResponse = response
            .json()
            .await
            .map_err(|error| AccessError::ServiceToken(error.into()))?;
        let renew_at = Instant::now() + Duration::from_secs(issued.expires_in.saturating_sub(30));
        *cached = Some((issued.access_token.clone(), renew_at));
        Ok(issued.access_token)
    }

    /// Adds `authorization: Bearer <token>` to an outgoing gRPC request.
    pub async fn authorize<T>(
        &self,
        mut request: tonic::Request<T>,
    ) -> Result<tonic::Request<T>, AccessError> {
        let token = self.token().await?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| AccessError::ServiceToken("token is not a valid header".into()))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

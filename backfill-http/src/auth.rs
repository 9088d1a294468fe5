//! Bearer tokens: where they come from and when they are refreshed.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::error::{HttpError, Result};

/// Hands out the bearer token requests carry.
///
/// # Contract
/// 1. `token` returns a token that was valid when issued; it may refresh ahead of expiry.
/// 2. `refresh` is called after a `401` with the token that was refused; it returns a new token
///    unless another request already replaced `stale`, in which case it returns the newer one.
/// 3. Tokens never reach captures, errors or logs: the source records requests without their
///    `Authorization` header.
#[async_trait]
pub trait TokenProvider: fmt::Debug + Send + Sync + 'static {
    /// The current token.
    async fn token(&self) -> Result<String>;

    /// A token other than `stale`.
    async fn refresh(&self, stale: &str) -> Result<String>;
}

/// A token that never changes (a personal access token). `refresh` returns it again, so a `401`
/// after it is final.
#[derive(Clone)]
pub struct StaticToken(String);

impl StaticToken {
    /// Wraps `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(***)")
    }
}

#[async_trait]
impl TokenProvider for StaticToken {
    async fn token(&self) -> Result<String> {
        Ok(self.0.clone())
    }

    async fn refresh(&self, _stale: &str) -> Result<String> {
        Ok(self.0.clone())
    }
}

/// OAuth 2 client credentials: `POST <token_url>` with `grant_type=client_credentials` (the client
/// id and secret in HTTP Basic authentication), reading
/// `access_token` and `expires_in` from the JSON answer. Refreshes proactively once
/// `refresh_at` (default 0.8) of the lifetime has passed.
pub struct ClientCredentials {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: String,
    refresh_at: f64,
    current: Mutex<Option<(String, Instant, Duration)>>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Credentials for `token_url`.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            http: reqwest::Client::new(),
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_at: 0.8,
            current: Mutex::new(None),
        }
    }

    /// Refreshes once this fraction of a token's `expires_in` has passed (clamped to 0.1..=1.0).
    pub fn refresh_at(mut self, fraction: f64) -> Self {
        self.refresh_at = fraction.clamp(0.1, 1.0);
        self
    }

    async fn fetch(&self) -> Result<(String, Instant, Duration)> {
        let err = |detail: String| HttpError::Token {
            url: self.token_url.clone(),
            detail,
        };
        let resp = self
            .http
            .post(&self.token_url)
            // RFC 6749 §2.3.1: client credentials in HTTP Basic, never in the URL.
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(err(format!("status {status}")));
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| err(e.to_string()))?;
        let token = body
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| err("no access_token in the answer".into()))?;
        let lifetime = body
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(3600);
        Ok((
            token.to_owned(),
            Instant::now(),
            Duration::from_secs(lifetime),
        ))
    }
}

#[async_trait]
impl TokenProvider for ClientCredentials {
    async fn token(&self) -> Result<String> {
        let mut current = self.current.lock().await;
        if let Some((token, issued, lifetime)) = current.as_ref() {
            if issued.elapsed().as_secs_f64() < lifetime.as_secs_f64() * self.refresh_at {
                return Ok(token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.0.clone();
        *current = Some(fresh);
        Ok(token)
    }

    async fn refresh(&self, stale: &str) -> Result<String> {
        let mut current = self.current.lock().await;
        if let Some((token, _, _)) = current.as_ref() {
            if token != stale {
                return Ok(token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.0.clone();
        *current = Some(fresh);
        Ok(token)
    }
}

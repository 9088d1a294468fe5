//! One HTTP request, done politely: the vendor's rate limit, retries with backoff that honour
//! `Retry-After`, one token refresh on `401`, and a pause when `429`s outlast the schedule.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::auth::TokenProvider;
use crate::error::{is_retryable_status, HttpError, Result};

/// One API vendor: its rate limit, shared by every source and request that talks to it.
///
/// Clones share the limiter, so two sources over one vendor stay under one limit together.
#[derive(Clone)]
pub struct Vendor {
    name: String,
    per_second: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl fmt::Debug for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vendor")
            .field("name", &self.name)
            .field("per_second", &self.per_second)
            .finish()
    }
}

impl Vendor {
    /// A vendor allowing `per_second` requests a second, evenly spaced (no bursts).
    pub fn new(name: impl Into<String>, per_second: u32) -> Self {
        let per_second = per_second.max(1);
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(NonZeroU32::MIN);
        Self {
            name: name.into(),
            per_second,
            limiter: Arc::new(RateLimiter::direct(quota)),
        }
    }

    /// The vendor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests a second it allows.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    async fn admit(&self) {
        self.limiter.until_ready().await;
    }
}

/// How requests are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries of transient failures (408, 5xx, timeouts) per request, on an exponential schedule
    /// with jitter (`backon`).
    pub max_retries: usize,
    /// First backoff.
    pub min_delay: Duration,
    /// Backoff ceiling.
    pub max_delay: Duration,
    /// Consecutive `429`s a request waits out (each for its `Retry-After`, or the schedule's
    /// delay); one more pauses the run.
    pub storm_limit: u32,
    /// The longest `Retry-After` honoured; a longer one pauses the run at once.
    pub max_retry_after: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            storm_limit: 30,
            max_retry_after: Duration::from_secs(120),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Short delays for tests on loopback (10 ms to 100 ms); `Retry-After` is still honoured.
    pub fn fast() -> Self {
        Self {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(10),
            ..Self::default()
        }
    }

    /// Sets how many consecutive `429`s are waited out before the run pauses.
    pub fn with_storm_limit(mut self, storm_limit: u32) -> Self {
        self.storm_limit = storm_limit;
        self
    }

    /// Sets the longest `Retry-After` waited in place; a longer one pauses the run at once.
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Sets the retries of transient failures.
    pub fn with_max_retries(mut self, max_retries: usize) -> Self {
        self.max_retries = max_retries;
        self
    }

    fn schedule(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
            .build()
    }
}

/// A successful answer, as captured.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

/// The HTTP side of a source: base address, vendor, retries, credentials.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) vendor: Vendor,
    pub(crate) retry: RetryPolicy,
    pub(crate) auth: Option<Arc<dyn TokenProvider>>,
    pub(crate) keep_headers: Vec<String>,
}

/// Method, path and sorted query of a request: how captures and errors name it.
pub(crate) fn describe(path: &str, query: &[(String, String)]) -> String {
    let mut q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    q.sort();
    if q.is_empty() {
        format!("GET {path}")
    } else {
        format!("GET {path}?{}", q.join("&"))
    }
}

impl Client {
    /// `GET base + path ? query`, retried as the policy says.
    pub(crate) async fn get(
        &self,
        chunk: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Answer> {
        let request = describe(path, query);
        let url = format!("{}{}", self.base.trim_end_matches('/'), path);
        let mut schedule = self.retry.schedule();
        let mut storm = 0u32;
        let mut refreshed = false;
        let mut token = match &self.auth {
            Some(a) => Some(a.token().await?),
            None => None,
        };
        loop {
            self.vendor.admit().await;
            let mut req = self.http.get(&url).query(query).timeout(self.retry.timeout);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let wait = match req.send().await {
                // No answer (refused, reset, timed out): retried on the schedule.
                Err(e) => {
                    let e = e.without_url();
                    storm = 0;
                    match schedule.next() {
                        Some(d) => d,
                        None => {
                            return Err(HttpError::Transport {
                                chunk: chunk.into(),
                                request,
                                source: e,
                            })
                        }
                    }
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = retry_after(&resp);
                    if (200..300).contains(&status) {
                        let headers = self.kept_headers(&resp);
                        match resp.text().await {
                            Ok(body) => {
                                return Ok(Answer {
                                    status,
                                    headers,
                                    body,
                                })
                            }
                            // The body broke off: retried on the schedule like no answer.
                            Err(e) => match schedule.next() {
                                Some(d) => {
                                    tracing::debug!(chunk, %request, wait = ?d, "body broke off; retrying");
                                    tokio::time::sleep(d).await;
                                    continue;
                                }
                                None => {
                                    return Err(HttpError::Transport {
                                        chunk: chunk.into(),
                                        request,
                                        source: e.without_url(),
                                    })
                                }
                            },
                        }
                    }
                    let body = resp.text().await.unwrap_or_default();
                    let body: String = body.chars().take(200).collect();
                    if status == 401 {
                        match (&self.auth, refreshed) {
                            (Some(a), false) => {
                                refreshed = true;
                                let stale = token.take().unwrap_or_default();
                                token = Some(a.refresh(&stale).await?);
                                tracing::debug!(chunk, %request, "401: token refreshed");
                                continue;
                            }
                            _ => {
                                return Err(HttpError::Unauthorized {
                                    chunk: chunk.into(),
                                    request,
                                })
                            }
                        }
                    }
                    if status == 429 {
                        storm += 1;
                        let advertised = retry_after.unwrap_or(Duration::ZERO);
                        if storm > self.retry.storm_limit || advertised > self.retry.max_retry_after
                        {
                            return Err(HttpError::Storm {
                                chunk: chunk.into(),
                                request,
                                count: storm,
                                limit: self.retry.storm_limit,
                            });
                        }
                        let backoff = self.retry.min_delay.saturating_mul(storm.min(64));
                        retry_after.unwrap_or(backoff.min(self.retry.max_delay))
                    } else if is_retryable_status(status) {
                        storm = 0;
                        match schedule.next() {
                            Some(d) => d.max(
                                retry_after
                                    .unwrap_or(Duration::ZERO)
                                    .min(self.retry.max_retry_after),
                            ),
                            None => {
                                return Err(HttpError::Status {
                                    chunk: chunk.into(),
                                    request,
                                    status,
                                    body,
                                })
                            }
                        }
                    } else {
                        return Err(HttpError::Status {
                            chunk: chunk.into(),
                            request,
                            status,
                            body,
                        });
                    }
                }
            };
            tracing::debug!(chunk, %request, ?wait, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    fn kept_headers(&self, resp: &reqwest::Response) -> BTreeMap<String, String> {
        self.keep_headers
            .iter()
            .filter_map(|name| {
                let v = resp.headers().get(name.as_str())?.to_str().ok()?;
                Some((name.to_ascii_lowercase(), v.to_owned()))
            })
            .collect()
    }
}

/// `Retry-After` as seconds or as an HTTP date (a date in the past is no wait).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

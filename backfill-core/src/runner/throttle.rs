//! Rate limits from the manifest, enforced with `governor` token buckets.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::manifest::Limits;

/// One token bucket; requests larger than its burst are split.
#[derive(Debug)]
struct Bucket {
    limiter: DefaultDirectRateLimiter,
    burst: NonZeroU32,
}

impl Bucket {
    /// `amount` per `period`, with a burst of `amount / burst_divisor` (at least 1).
    fn new(amount: u64, period: Duration, burst_divisor: u64) -> Option<Self> {
        let amount = NonZeroU32::new(u32::try_from(amount).unwrap_or(u32::MAX))?;
        let per_token = period / amount.get();
        let burst = (u64::from(amount.get()) / burst_divisor.max(1)).max(1);
        let burst = NonZeroU32::new(u32::try_from(burst).unwrap_or(u32::MAX))?;
        let quota = Quota::with_period(per_token.max(Duration::from_nanos(1)))?.allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::direct(quota),
            burst,
        })
    }

    async fn take(&self, mut n: u64) {
        while n > 0 {
            let step = n.min(u64::from(self.burst.get()));
            n -= step;
            if let Some(step) = NonZeroU32::new(u32::try_from(step).unwrap_or(u32::MAX)) {
                // `step` never exceeds the burst, so capacity is always sufficient.
                let _ = self.limiter.until_n_ready(step).await;
            }
        }
    }
}

/// Rows/min, bytes/min and commits/hour limits plus the pause between windows.
///
/// Per-minute buckets allow a burst of one second's share, commits/hour a burst of one, so the limits
/// hold from the first batch rather than only on average over the first minute or hour.
#[derive(Debug)]
pub(crate) struct Throttle {
    rows: Option<Bucket>,
    bytes: Option<Bucket>,
    commits: Option<Bucket>,
    pause: Duration,
}

impl Throttle {
    pub(crate) fn new(limits: &Limits) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            rows: limits
                .max_rows_per_minute
                .and_then(|n| Bucket::new(n, minute, 60)),
            bytes: limits
                .max_bytes_per_minute
                .and_then(|n| Bucket::new(n, minute, 60)),
            commits: limits
                .max_sink_commits_per_hour
                .and_then(|n| Bucket::new(n, Duration::from_secs(3600), u64::MAX)),
            pause: Duration::from_millis(limits.pause_between_windows_ms),
        }
    }

    /// Waits until `rows` rows of `bytes` bytes may pass.
    pub(crate) async fn admit(&self, rows: u64, bytes: u64) {
        if let Some(b) = &self.rows {
            b.take(rows).await;
        }
        if let Some(b) = &self.bytes {
            b.take(bytes).await;
        }
    }

    /// Waits until one more sink commit may happen.
    pub(crate) async fn commit(&self) {
        if let Some(b) = &self.commits {
            b.take(1).await;
        }
    }

    /// The pause after each window (chunk).
    pub(crate) async fn pause(&self) {
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
    }
}

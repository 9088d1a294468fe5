//! Run-wide budgets: rate limits shared by every worker of a run through its [`RunStore`].
//!
//! A manifest's `rows per minute`, `bytes per minute` and `sink commits per hour` are limits of the
//! run, not of one process: three workers on three machines share one budget. Each budget is a
//! token bucket kept in the run store. A worker takes what its batch needs before it may go on;
//! the bucket may go into debt, and the taker waits until the debt is paid back at the budget's
//! rate. So however many workers take at once, the run as a whole stays within the rate plus one
//! burst (one batch per worker at most in flight).
//!
//! [`Budget::take`] is the arithmetic every store applies atomically to its stored bucket.
//!
//! [`RunStore`]: crate::store::RunStore

use std::time::Duration;

use chrono::{DateTime, Utc};

/// One run-wide budget: units that refill at a constant rate up to a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// The manifest field it comes from, such as `safety.limits.max_rows_per_minute`; stores key
    /// the bucket by run and name.
    pub name: &'static str,
    /// Units added per second.
    pub per_second: f64,
    /// Most units that accumulate while nobody takes any (a new bucket starts full).
    pub burst: f64,
}

/// A bucket's stored state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    /// Units available; negative while in debt.
    pub tokens: f64,
    /// When `tokens` was computed.
    pub at: DateTime<Utc>,
}

impl Budget {
    /// `amount` per `period`, with a burst of `burst_share` of the amount (at least one unit).
    pub fn per(name: &'static str, amount: u64, period: Duration, burst_share: f64) -> Self {
        let per_second = amount as f64 / period.as_secs_f64().max(f64::MIN_POSITIVE);
        Self {
            name,
            per_second,
            burst: (amount as f64 * burst_share).max(1.0),
        }
    }

    /// Takes `amount` from a bucket last stored as `state` (`None`: a new, full bucket) at `now`:
    /// the bucket to store and how long the taker waits before using what it took.
    ///
    /// A bucket's time never runs backwards: a taker whose `now` is earlier than the stored
    /// instant (it read its clock before it got the bucket's lock, and another took meanwhile)
    /// takes as of that instant and also waits out the difference, so no stretch of time refills
    /// the bucket twice.
    pub fn take(
        &self,
        state: Option<BucketState>,
        now: DateTime<Utc>,
        amount: f64,
    ) -> (BucketState, Duration) {
        let (available, at) = match state {
            None => (self.burst, now),
            Some(s) => {
                let at = s.at.max(now);
                let elapsed =
                    (at - s.at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1_000_000.0;
                ((s.tokens + elapsed * self.per_second).min(self.burst), at)
            }
        };
        let left = available - amount;
        let wait = if left >= 0.0 || self.per_second <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.per_second)
                + (at - now).to_std().unwrap_or_default()
        };
        (BucketState { tokens: left, at }, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn takers_in_debt_wait_for_the_rate() {
        let b = Budget::per("rows", 600, Duration::from_secs(60), 1.0 / 60.0);
        assert_eq!(b.per_second, 10.0);
        assert_eq!(b.burst, 10.0);
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        // A new bucket is full: the first 10 pass at once.
        let (s, wait) = b.take(None, t0, 10.0);
        assert_eq!(wait, Duration::ZERO);
        // Three workers take 10 each at the same instant: they wait 1, 2 and 3 seconds.
        let (s, w1) = b.take(Some(s), t0, 10.0);
        let (s, w2) = b.take(Some(s), t0, 10.0);
        let (s, w3) = b.take(Some(s), t0, 10.0);
        assert_eq!(
            (w1, w2, w3),
            (
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(3)
            )
        );
        // Four seconds later the debt is paid and 10 more pass; never more than the burst accrues.
        let (s, w) = b.take(Some(s), t0 + chrono::Duration::seconds(4), 10.0);
        assert_eq!(w, Duration::ZERO);
        let (_, w) = b.take(Some(s), t0 + chrono::Duration::seconds(100), 11.0);
        assert_eq!(w, Duration::from_millis(100));
    }

    #[test]
    fn a_taker_whose_clock_reads_earlier_gets_no_time_twice() {
        let b = Budget::per("rows", 600, Duration::from_secs(60), 1.0 / 60.0);
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let ms = chrono::Duration::milliseconds;
        // One taker empties the bucket at t0 + 1 s; another, whose clock read t0 + 0.5 s before it
        // got the bucket, takes 10 more: it waits 1 s for the units and 0.5 s for its late clock.
        let (s, _) = b.take(None, t0 + ms(1_000), 10.0);
        let (s, w) = b.take(Some(s), t0 + ms(500), 10.0);
        assert_eq!(w, Duration::from_millis(1_500));
        assert_eq!(s.at, t0 + ms(1_000), "the bucket's time did not move back");
        // At t0 + 2 s one second has refilled 10 units: the debt is paid, nothing more (with the
        // stored instant moved back to t0 + 0.5 s, 15 units would have refilled).
        let (_, w) = b.take(Some(s), t0 + ms(2_000), 1.0);
        assert_eq!(w, Duration::from_millis(100));
    }
}

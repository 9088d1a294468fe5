//! Enforcement case events and a deterministic generator of realistic ones.
//!
//! Cases are opened on weekdays during local office hours (until late evening, which is when UTC and
//! local dates differ in the Americas), may be paused and resumed, are decided and then closed. The
//! case system went live on 2024-12-01, so the first cases open then; cases opened in December 2024
//! run into 2025, and cases opened in late 2025 run into 2026.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use sha2::{Digest, Sha256};

use super::calendar::{Jurisdiction, JURISDICTIONS};

/// What happened to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// The case was opened: the SLA clock starts.
    Opened,
    /// Handling was paused (waiting for the party): the SLA clock stops.
    Paused,
    /// Handling resumed: the SLA clock runs again.
    Resumed,
    /// A decision took effect: the SLA clock ends.
    Decided,
    /// The case was closed.
    Closed,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
            Self::Decided => "decided",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "opened" => Self::Opened,
            "paused" => Self::Paused,
            "resumed" => Self::Resumed,
            "decided" => Self::Decided,
            "closed" => Self::Closed,
            other => return Err(format!("unknown case event kind {other:?}")),
        })
    }
}

/// One event of a case, as the case system recorded it (an instant in UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseEvent {
    /// Position in the case's history.
    pub seq: u32,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
}

/// A case with its events in order: the transform's input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseHistory {
    /// Case id, such as `US-NY-20250107-003`.
    pub case_id: String,
    /// Jurisdiction code.
    pub jurisdiction: String,
    /// Events in `seq` order.
    pub events: Vec<CaseEvent>,
}

impl CaseHistory {
    /// When the case was opened (its first event).
    pub fn opened_at(&self) -> Option<DateTime<Utc>> {
        self.events
            .iter()
            .find(|e| e.kind == EventKind::Opened)
            .map(|e| e.at)
    }
}

/// SplitMix64: small, fast and fully determined by its seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// Generator settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Seed: the same seed gives the same events.
    pub seed: u64,
    /// First day cases are opened.
    pub first_day: NaiveDate,
    /// Day after the last day cases are opened.
    pub end_day: NaiveDate,
    /// Most cases opened per jurisdiction and weekday (at least 1).
    pub max_cases_per_day: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 20_250_704,
            first_day: NaiveDate::from_ymd_opt(2024, 12, 1).unwrap_or_default(),
            end_day: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
            max_cases_per_day: 7,
        }
    }
}

/// A local wall-clock time in the jurisdiction, as a UTC instant (the later one in a DST gap or fold).
fn local(j: &Jurisdiction, day: NaiveDate, minutes: u64) -> DateTime<Utc> {
    let m = u32::try_from(minutes.min(24 * 60 - 1)).unwrap_or(0);
    let t = NaiveTime::from_hms_opt(m / 60, m % 60, 0).unwrap_or_default();
    let naive = day.and_time(t);
    match j.tz.from_local_datetime(&naive).latest() {
        Some(t) => t.with_timezone(&Utc),
        // In a DST gap: an hour later exists.
        None => Utc.from_utc_datetime(&naive) + chrono::Duration::hours(1),
    }
}

/// A minute of the working day: four in five between 08:00 and 17:59 local, the rest in the evening
/// until 23:29 (late filings and decisions signed at night).
fn office_minute(rng: &mut Rng) -> u64 {
    if rng.chance(80) {
        rng.between(8 * 60, 17 * 60 + 59)
    } else {
        rng.between(18 * 60, 23 * 60 + 29)
    }
}

/// Generates every case of every jurisdiction, in case-id order within each day and jurisdiction.
pub fn generate(cfg: &GeneratorConfig) -> Vec<CaseHistory> {
    let mut rng = Rng(cfg.seed);
    let mut cases = Vec::new();
    let mut day = cfg.first_day;
    while day < cfg.end_day {
        for j in &JURISDICTIONS {
            if matches!(
                chrono::Datelike::weekday(&day),
                chrono::Weekday::Sat | chrono::Weekday::Sun
            ) {
                continue;
            }
            let n = rng.between(1, cfg.max_cases_per_day.max(1));
            for k in 0..n {
                cases.push(one_case(&mut rng, j, day, k));
            }
        }
        day = day + Days::new(1);
    }
    cases
}

fn one_case(rng: &mut Rng, j: &Jurisdiction, opened: NaiveDate, k: u64) -> CaseHistory {
    let case_id = format!("{}-{}-{:03}", j.code, opened.format("%Y%m%d"), k + 1);
    let mut events = vec![(local(j, opened, office_minute(rng)), EventKind::Opened)];
    // Calendar days the SLA roughly allows; decisions land around it, some late.
    let allowed = u64::from(j.sla_business_days) * 7 / 5;
    let mut day = opened;
    let mut paused_days = 0;
    if rng.chance(30) {
        let pause = day + Days::new(rng.between(1, allowed.max(2) / 2));
        events.push((local(j, pause, office_minute(rng)), EventKind::Paused));
        paused_days = rng.between(2, 20);
        let resume = pause + Days::new(paused_days);
        events.push((local(j, resume, office_minute(rng)), EventKind::Resumed));
        day = resume;
    }
    let spent = day.signed_duration_since(opened).num_days().max(0) as u64;
    let left = (allowed + paused_days).saturating_sub(spent);
    // 0.55x to 1.35x of what is left: roughly one case in five decides late.
    let decide_after = (left * rng.between(55, 135) / 100).max(1);
    let decided = day + Days::new(decide_after);
    events.push((local(j, decided, office_minute(rng)), EventKind::Decided));
    if rng.chance(85) {
        let closed = decided + Days::new(rng.between(1, 12));
        events.push((local(j, closed, office_minute(rng)), EventKind::Closed));
    }
    events.sort_by_key(|(at, _)| *at);
    CaseHistory {
        case_id,
        jurisdiction: j.code.to_owned(),
        events: events
            .into_iter()
            .enumerate()
            .map(|(i, (at, kind))| CaseEvent {
                seq: u32::try_from(i).unwrap_or(u32::MAX),
                at,
                kind,
            })
            .collect(),
    }
}

/// The content hash of a set of generated cases: what a load of `bronze.case_events` records, so the
/// same cases are loaded once and other cases are refused. (The snapshot a manifest pins is the
/// source's, see [`super::source::pinned_snapshot`].)
pub fn snapshot_id(cases: &[CaseHistory]) -> String {
    let mut h = Sha256::new();
    for c in cases {
        for e in &c.events {
            h.update(
                format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    c.case_id,
                    c.jurisdiction,
                    e.seq,
                    e.at.timestamp(),
                    e.kind
                )
                .as_bytes(),
            );
        }
    }
    format!("sha256:{}", &hex::encode(h.finalize())[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_realistic() {
        let cfg = GeneratorConfig::default();
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a, b);
        assert_eq!(snapshot_id(&a), snapshot_id(&b));
        assert!(a.len() > 4_000, "{} cases", a.len());
        // Every jurisdiction, cases opened in December 2024, events running into 2026.
        for j in &JURISDICTIONS {
            assert!(a.iter().any(|c| c.jurisdiction == j.code));
        }
        assert!(a.iter().any(|c| c.case_id.contains("-202412")));
        let y2026 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert!(a.iter().any(|c| c.events.iter().any(|e| e.at >= y2026)));
        // Some histories pause, and events are in time order.
        assert!(a
            .iter()
            .any(|c| c.events.iter().any(|e| e.kind == EventKind::Paused)));
        assert!(a
            .iter()
            .all(|c| c.events.windows(2).all(|w| w[0].at <= w[1].at)));
        let other = generate(&GeneratorConfig { seed: 7, ..cfg });
        assert_ne!(snapshot_id(&a), snapshot_id(&other));
    }
}

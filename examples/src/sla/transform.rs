//! The case SLA transform: one row per case and month in which the case was active.
//!
//! The SLA clock starts the day after a case is opened (in the jurisdiction's local date), counts
//! business days of the jurisdiction's calendar, stops while the case is paused and ends when a
//! decision takes effect. A case breaches on the day after its due date unless it was decided by then.
//!
//! Version 2.4.1 took the calendar date of every event in UTC instead of the jurisdiction's local time:
//! an event late in a New York evening landed on the next day, and with it the due date. Version 3.1.0
//! takes local dates. Both read the calendar version the manifest pins and refuse any other, so a run
//! can never mix reference data into a truth nobody approved.

use std::borrow::Cow;

use backfill_core::digest::OutputRow;
use backfill_core::manifest::InputRange;
use backfill_core::prelude::{DeterministicTransform, TransformContext, TransformError};
use backfill_sql::{Column, SqlRow, SqlType};
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::calendar::{jurisdiction, BusinessCalendar, CALENDAR_NAME};
use super::events::{CaseHistory, EventKind};

/// The transform's name in manifests.
pub const TRANSFORM_NAME: &str = "case-sla-transform";

/// One case in one month: its SLA state at the end of that month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSlaMonth {
    /// Deterministic row id (run, case, month).
    pub id: String,
    /// Case id.
    pub case_id: String,
    /// Jurisdiction code.
    pub jurisdiction: String,
    /// The publish partition, `YYYY-MM`.
    pub month: String,
    /// Local date the case was opened.
    pub opened_on: NaiveDate,
    /// SLA due date (`None` while the clock is stopped by a pause that never ended).
    pub due_on: Option<NaiveDate>,
    /// Local date the decision took effect, if by the end of the month.
    pub decided_on: Option<NaiveDate>,
    /// `open`, `paused`, `decided` or `closed` at the end of the month.
    pub status: String,
    /// SLA business days used by the end of the month (or the decision).
    pub business_days_used: i64,
    /// Whether the case had breached its SLA by the end of the month.
    pub breached: bool,
    /// Whether the breach happened in this month.
    pub breached_in_month: bool,
    /// Why the row was (re)computed. The staging sink adds the rest of the lineage to every row
    /// (`produced_by_run_id`, `transform_version`, `reference_data_version`, input range and snapshot).
    pub restatement_reason: String,
}

impl OutputRow for CaseSlaMonth {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

impl SqlRow for CaseSlaMonth {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::Text),
        Column::new("case_id", SqlType::Text),
        Column::new("jurisdiction", SqlType::Text),
        Column::new("month", SqlType::Text),
        Column::new("opened_on", SqlType::Date),
        Column::nullable("due_on", SqlType::Date),
        Column::nullable("decided_on", SqlType::Date),
        Column::new("status", SqlType::Text),
        Column::new("business_days_used", SqlType::BigInt),
        Column::new("breached", SqlType::Boolean),
        Column::new("breached_in_month", SqlType::Boolean),
        Column::new("restatement_reason", SqlType::Text),
    ];
    const PARTITION_COLUMN: &'static str = "month";
}

/// How event instants become business dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateBasis {
    /// The date in UTC (the v2.4.1 bug).
    Utc,
    /// The date in the jurisdiction's time zone (correct).
    Local,
}

/// The SLA transform, in one of its released versions.
#[derive(Debug, Clone)]
pub struct CaseSlaTransform {
    version: &'static str,
    basis: DateBasis,
    calendar: BusinessCalendar,
    reason: String,
}

impl CaseSlaTransform {
    /// Version 2.4.1, with the timezone bug, on the given calendar.
    pub fn v2_4_1(calendar: BusinessCalendar) -> Self {
        Self {
            version: "2.4.1",
            basis: DateBasis::Utc,
            calendar,
            reason: "ORIGINAL".into(),
        }
    }

    /// Version 3.1.0, with local business dates, on the given calendar.
    pub fn v3_1_0(calendar: BusinessCalendar) -> Self {
        Self {
            version: "3.1.0",
            basis: DateBasis::Local,
            calendar,
            reason: "TIMEZONE_BUG_FIX".into(),
        }
    }

    /// Sets the reason stamped on every row (part of the configuration and the fingerprint).
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// The calendar this instance reads.
    pub fn calendar(&self) -> &BusinessCalendar {
        &self.calendar
    }
}

/// A case's SLA facts in business dates.
#[derive(Debug)]
struct Facts {
    opened_on: NaiveDate,
    pauses: Vec<(NaiveDate, Option<NaiveDate>)>,
    decided_on: Option<NaiveDate>,
    closed_on: Option<NaiveDate>,
}

impl Facts {
    fn paused_on(&self, day: NaiveDate) -> bool {
        self.pauses
            .iter()
            .any(|(from, to)| *from <= day && to.is_none_or(|t| day < t))
    }
}

fn month_end(month_start: NaiveDate) -> NaiveDate {
    month_start
        .checked_add_months(Months::new(1))
        .and_then(|d| d.pred_opt())
        .unwrap_or(month_start)
}

impl CaseSlaTransform {
    fn date(&self, at: DateTime<Utc>, tz: chrono_tz::Tz) -> NaiveDate {
        match self.basis {
            DateBasis::Utc => at.date_naive(),
            DateBasis::Local => at.with_timezone(&tz).date_naive(),
        }
    }

    fn facts(&self, case: &CaseHistory, tz: chrono_tz::Tz) -> Result<Facts, TransformError> {
        let bad = |m: &str| TransformError::new(m.to_owned()).for_input(case.case_id.clone());
        let mut opened_on = None;
        let mut pauses: Vec<(NaiveDate, Option<NaiveDate>)> = Vec::new();
        let (mut decided_on, mut closed_on) = (None, None);
        for e in &case.events {
            let d = self.date(e.at, tz);
            match e.kind {
                EventKind::Opened => opened_on = Some(d),
                EventKind::Paused => pauses.push((d, None)),
                EventKind::Resumed => match pauses.last_mut() {
                    Some((_, end @ None)) => *end = Some(d),
                    _ => return Err(bad("resumed without a pause")),
                },
                EventKind::Decided => decided_on = Some(d),
                EventKind::Closed => closed_on = Some(d),
            }
        }
        Ok(Facts {
            opened_on: opened_on.ok_or_else(|| bad("case has no opened event"))?,
            pauses,
            decided_on,
            closed_on,
        })
    }

    fn counts(&self, code: &str, f: &Facts, day: NaiveDate) -> bool {
        self.calendar.is_business_day(code, day) && !f.paused_on(day)
    }

    /// The day the SLA's business days run out, walking at most three years.
    fn due_on(&self, code: &str, sla: u32, f: &Facts) -> Option<NaiveDate> {
        let mut used = 0;
        let mut day = f.opened_on;
        for _ in 0..(3 * 366) {
            day = day.succ_opt()?;
            if self.counts(code, f, day) {
                used += 1;
                if used >= sla {
                    return Some(day);
                }
            }
        }
        None
    }

    /// Advances `used` to count the SLA days in `(opened_on, until]`. Cut-offs only grow from one
    /// month to the next, so each day of a case is looked at once.
    fn used_until(&self, code: &str, f: &Facts, used: &mut UsedDays, until: NaiveDate) -> i64 {
        while used.through < until {
            let Some(day) = used.through.succ_opt() else {
                break;
            };
            used.through = day;
            used.days += i64::from(self.counts(code, f, day));
        }
        used.days
    }
}

/// SLA days counted so far for a case, through a day.
#[derive(Debug)]
struct UsedDays {
    through: NaiveDate,
    days: i64,
}

impl DeterministicTransform for CaseSlaTransform {
    type Input = CaseHistory;
    type Output = CaseSlaMonth;

    fn name(&self) -> &str {
        TRANSFORM_NAME
    }

    fn version(&self) -> &str {
        self.version
    }

    fn canonical_config(&self) -> Vec<u8> {
        let basis = match self.basis {
            DateBasis::Utc => "utc",
            DateBasis::Local => "local",
        };
        format!(
            "{{\"calendar\":\"{}\",\"date_basis\":\"{basis}\",\"reason\":{}}}",
            self.calendar.version_name(),
            serde_json::Value::String(self.reason.clone())
        )
        .into_bytes()
    }

    fn apply(
        &self,
        case: &CaseHistory,
        ctx: &TransformContext,
        out: &mut Vec<CaseSlaMonth>,
    ) -> Result<(), TransformError> {
        let pinned = ctx.reference_version(CALENDAR_NAME);
        if pinned != Some(self.calendar.version_name()) {
            return Err(TransformError::new(format!(
                "the manifest pins {CALENDAR_NAME} {pinned:?}, this transform holds {}",
                self.calendar.version_name()
            )));
        }
        let Some(InputRange::Dates {
            to_exclusive: publish_end,
            ..
        }) = ctx.publish_range()
        else {
            return Err(TransformError::new(
                "the manifest needs a publish range of dates",
            ));
        };
        let j = jurisdiction(&case.jurisdiction).ok_or_else(|| {
            TransformError::new(format!("unknown jurisdiction {:?}", case.jurisdiction))
                .for_input(case.case_id.clone())
        })?;
        let f = self.facts(case, j.tz)?;
        let due_on = self.due_on(j.code, j.sla_business_days, &f);
        // The breach day: the day after the due date, unless decided by the due date.
        let breach_on = due_on
            .filter(|due| f.decided_on.is_none_or(|d| d > *due))
            .and_then(|due| due.succ_opt());
        let mut used = UsedDays {
            through: f.opened_on,
            days: 0,
        };
        let mut month = f.opened_on.with_day(1).unwrap_or(f.opened_on);
        while month < *publish_end && f.closed_on.is_none_or(|c| c >= month) {
            let end = month_end(month);
            if ctx.publishes_date(month) {
                let cutoff = f.decided_on.map_or(end, |d| d.min(end));
                let status = if f.closed_on.is_some_and(|c| c <= end) {
                    "closed"
                } else if f.decided_on.is_some_and(|d| d <= end) {
                    "decided"
                } else if f.paused_on(end) {
                    "paused"
                } else {
                    "open"
                };
                let key = month.format("%Y-%m").to_string();
                out.push(CaseSlaMonth {
                    id: ctx.output_id(&[&case.case_id, &key]),
                    case_id: case.case_id.clone(),
                    jurisdiction: case.jurisdiction.clone(),
                    month: key,
                    opened_on: f.opened_on,
                    due_on,
                    decided_on: f.decided_on.filter(|d| *d <= end),
                    status: status.to_owned(),
                    business_days_used: self.used_until(j.code, &f, &mut used, cutoff),
                    breached: breach_on.is_some_and(|b| b <= end),
                    breached_in_month: breach_on.is_some_and(|b| b >= month && b <= end),
                    restatement_reason: self.reason.clone(),
                });
            }
            month = month + Months::new(1);
        }
        Ok(())
    }
}

/// The month partitions of a date range, `YYYY-MM`.
pub fn months(from: NaiveDate, to_exclusive: NaiveDate) -> Vec<String> {
    let mut out = Vec::new();
    let mut m = from.with_day(1).unwrap_or(from);
    while m < to_exclusive {
        out.push(m.format("%Y-%m").to_string());
        m = m + Months::new(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::calendar::{CALENDAR_AS_RECORDED, CALENDAR_RESTATED};
    use crate::sla::events::CaseEvent;
    use crate::sla::job::{history_manifest, restatement_manifest};
    use chrono::TimeZone;

    fn case(id: &str, events: &[(i64, EventKind)]) -> CaseHistory {
        CaseHistory {
            case_id: id.into(),
            jurisdiction: "US-NY".into(),
            events: events
                .iter()
                .enumerate()
                .map(|(i, (at, kind))| CaseEvent {
                    seq: i as u32,
                    at: Utc.timestamp_opt(*at, 0).unwrap(),
                    kind: *kind,
                })
                .collect(),
        }
    }

    fn ny(y: i32, m: u32, d: u32, h: u32) -> i64 {
        chrono_tz::America::New_York
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp()
    }

    fn run(t: &CaseSlaTransform, c: &CaseHistory) -> Result<Vec<CaseSlaMonth>, TransformError> {
        let m = if t.version() == "2.4.1" {
            history_manifest(t, "snap")
        } else {
            restatement_manifest(t, "snap")
        };
        let ctx = TransformContext::for_manifest(&m, Utc.timestamp_opt(1_780_000_000, 0).unwrap());
        let mut out = Vec::new();
        t.apply(c, &ctx, &mut out)?;
        Ok(out)
    }

    fn v2() -> CaseSlaTransform {
        CaseSlaTransform::v2_4_1(BusinessCalendar::version(CALENDAR_AS_RECORDED).unwrap())
    }

    fn v3() -> CaseSlaTransform {
        CaseSlaTransform::v3_1_0(BusinessCalendar::version(CALENDAR_RESTATED).unwrap())
    }

    #[test]
    fn an_evening_opening_in_new_york_is_one_day_late_in_v2_4_1_only() {
        // Monday 2025-03-10, 20:00 in New York is Tuesday 00:00 UTC.
        let c = case(
            "US-NY-20250310-001",
            &[(ny(2025, 3, 10, 20), EventKind::Opened)],
        );
        let (old, new) = (run(&v2(), &c).unwrap(), run(&v3(), &c).unwrap());
        assert_eq!(
            new[0].opened_on,
            NaiveDate::from_ymd_opt(2025, 3, 10).unwrap()
        );
        assert_eq!(
            old[0].opened_on,
            NaiveDate::from_ymd_opt(2025, 3, 11).unwrap()
        );
        // 20 business days after Monday 10 March is Monday 7 April; v2.4.1 says the 8th.
        assert_eq!(new[0].due_on, NaiveDate::from_ymd_opt(2025, 4, 7));
        assert_eq!(old[0].due_on, NaiveDate::from_ymd_opt(2025, 4, 8));
        // Undecided: breached on 8 April (v3.1.0), in April's row.
        let april = new.iter().find(|r| r.month == "2025-04").unwrap();
        assert!(april.breached && april.breached_in_month);
        assert!(!new.iter().find(|r| r.month == "2025-03").unwrap().breached);
        // Open to the end of the publish range: one row per month from March to December.
        assert_eq!(new.len(), 10);
    }

    #[test]
    fn pauses_stop_the_clock_and_a_timely_decision_never_breaches() {
        let c = case(
            "US-NY-20250310-002",
            &[
                (ny(2025, 3, 10, 9), EventKind::Opened),
                (ny(2025, 3, 12, 9), EventKind::Paused),
                (ny(2025, 3, 19, 9), EventKind::Resumed),
                (ny(2025, 4, 11, 9), EventKind::Decided),
                (ny(2025, 4, 20, 9), EventKind::Closed),
            ],
        );
        let rows = run(&v3(), &c).unwrap();
        // 11 March counts, 12-18 March are paused (5 business days), so the due date moves from
        // 7 April to 14 April; decided on the 11th: no breach.
        assert_eq!(rows[0].due_on, NaiveDate::from_ymd_opt(2025, 4, 14));
        assert!(rows.iter().all(|r| !r.breached));
        let april = rows.iter().find(|r| r.month == "2025-04").unwrap();
        assert_eq!(april.status, "closed");
        assert_eq!(april.decided_on, NaiveDate::from_ymd_opt(2025, 4, 11));
        assert_eq!(rows.len(), 2, "closed in April: no May row");
        assert!(rows.iter().all(|r| r.business_days_used >= 0));
    }

    #[test]
    fn warm_up_cases_feed_2025_rows_but_december_2024_is_not_emitted() {
        let c = case(
            "US-NY-20241216-001",
            &[(ny(2024, 12, 16, 10), EventKind::Opened)],
        );
        let rows = run(&v3(), &c).unwrap();
        assert!(rows.iter().all(|r| r.month.starts_with("2025-")));
        assert_eq!(rows[0].month, "2025-01");
        assert_eq!(
            rows[0].opened_on,
            NaiveDate::from_ymd_opt(2024, 12, 16).unwrap()
        );
    }

    #[test]
    fn a_calendar_other_than_the_pinned_one_is_refused() {
        let c = case(
            "US-NY-20250310-003",
            &[(ny(2025, 3, 10, 9), EventKind::Opened)],
        );
        let wrong =
            CaseSlaTransform::v3_1_0(BusinessCalendar::version(CALENDAR_AS_RECORDED).unwrap());
        let m = restatement_manifest(&v3(), "snap");
        let ctx = TransformContext::for_manifest(&m, Utc.timestamp_opt(1_780_000_000, 0).unwrap());
        let err = wrong.apply(&c, &ctx, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("v2026-06-restated"), "{err}");
    }

    #[test]
    fn a_case_without_an_opened_event_is_refused() {
        assert!(case("x", &[]).opened_at().is_none());
        let no_open = CaseHistory {
            jurisdiction: "US-NY".into(),
            ..case("US-NY-x", &[])
        };
        assert!(run(&v3(), &no_open).is_err());
    }
}

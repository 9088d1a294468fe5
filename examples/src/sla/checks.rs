//! The restatement's own checks on staged rows: no missing active cases, due dates on business days.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use backfill_core::validate::{ValidationContext, ValidationOutcome, Validator, Verdict};
use chrono::{Datelike, Months, NaiveDate};
use serde_json::json;

use super::calendar::{jurisdiction, BusinessCalendar};
use super::events::{CaseHistory, EventKind};
use super::transform::CaseSlaMonth;

/// The cases active in each month, from the source alone: opened (local date) by the month's end and
/// not closed before it began. Independent of the SLA computation being validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivePopulation(pub BTreeMap<String, BTreeSet<String>>);

impl ActivePopulation {
    /// Computes the population of the months in `[from, to_exclusive)`.
    pub fn of(cases: &[CaseHistory], from: NaiveDate, to_exclusive: NaiveDate) -> Self {
        let mut months = BTreeMap::<String, BTreeSet<String>>::new();
        for c in cases {
            let Some(j) = jurisdiction(&c.jurisdiction) else {
                continue;
            };
            let local = |k: EventKind| {
                c.events
                    .iter()
                    .find(|e| e.kind == k)
                    .map(|e| e.at.with_timezone(&j.tz).date_naive())
            };
            let Some(opened) = local(EventKind::Opened) else {
                continue;
            };
            let closed = local(EventKind::Closed);
            let mut m = from.with_day(1).unwrap_or(from);
            while m < to_exclusive {
                let next = m + Months::new(1);
                let end = next.pred_opt().unwrap_or(m);
                if opened <= end && closed.is_none_or(|d| d >= m) {
                    months
                        .entry(m.format("%Y-%m").to_string())
                        .or_default()
                        .insert(c.case_id.clone());
                }
                m = next;
            }
        }
        Self(months)
    }

    /// Cases in the population.
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Fails when a case active in a month has no row for that month (or a row exists for a case that was
/// not active).
#[derive(Debug)]
pub struct NoMissingActiveCases {
    population: ActivePopulation,
}

impl NoMissingActiveCases {
    /// A check against the given population.
    pub fn new(population: ActivePopulation) -> Self {
        Self { population }
    }
}

#[async_trait]
impl Validator<CaseSlaMonth> for NoMissingActiveCases {
    fn name(&self) -> &str {
        "no_missing_active_cases"
    }

    async fn validate(
        &self,
        cx: &ValidationContext<'_, CaseSlaMonth>,
    ) -> backfill_core::Result<ValidationOutcome> {
        let mut staged = BTreeMap::<String, BTreeSet<String>>::new();
        cx.for_each_staged(|r| {
            staged
                .entry(r.month.clone())
                .or_default()
                .insert(r.case_id.clone());
        })
        .await?;
        let empty = BTreeSet::new();
        let (mut missing, mut unexpected) = (Vec::new(), Vec::new());
        for (month, cases) in &self.population.0 {
            let have = staged.get(month).unwrap_or(&empty);
            missing.extend(cases.difference(have).map(|c| format!("{month}/{c}")));
        }
        for (month, cases) in &staged {
            let want = self.population.0.get(month).unwrap_or(&empty);
            unexpected.extend(cases.difference(want).map(|c| format!("{month}/{c}")));
        }
        let verdict = if missing.is_empty() && unexpected.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        Ok(ValidationOutcome::new(
            self.name(),
            verdict,
            format!(
                "{} active case-months; {} missing, {} not active",
                self.population.len(),
                missing.len(),
                unexpected.len()
            ),
            json!({
                "active": self.population.len(),
                "missing": missing.len(),
                "unexpected": unexpected.len(),
                "missing_sample": missing.iter().take(10).collect::<Vec<_>>(),
                "unexpected_sample": unexpected.iter().take(10).collect::<Vec<_>>(),
            }),
        ))
    }
}

/// Fails when a due date is not a business day of the case's jurisdiction in the pinned calendar: a
/// due date lands where the SLA's last business day is counted, so anything else means dates were
/// taken in the wrong time zone or from another calendar version.
#[derive(Debug)]
pub struct DueOnBusinessDays {
    calendar: BusinessCalendar,
}

impl DueOnBusinessDays {
    /// A check against `calendar` (the version the manifest pins).
    pub fn new(calendar: BusinessCalendar) -> Self {
        Self { calendar }
    }
}

#[async_trait]
impl Validator<CaseSlaMonth> for DueOnBusinessDays {
    fn name(&self) -> &str {
        "due_on_business_days"
    }

    async fn validate(
        &self,
        cx: &ValidationContext<'_, CaseSlaMonth>,
    ) -> backfill_core::Result<ValidationOutcome> {
        let (mut checked, mut bad) = (0u64, Vec::new());
        cx.for_each_staged(|r| {
            if let Some(due) = r.due_on {
                checked += 1;
                if !self.calendar.is_business_day(&r.jurisdiction, due) {
                    bad.push(format!("{}/{}: {due}", r.month, r.case_id));
                }
            }
        })
        .await?;
        let verdict = if bad.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        Ok(ValidationOutcome::new(
            self.name(),
            verdict,
            format!(
                "{} of {checked} due dates off the {} business calendar",
                bad.len(),
                self.calendar.version_name()
            ),
            json!({"checked": checked, "failing": bad.len(), "sample": bad.iter().take(10).collect::<Vec<_>>()}),
        ))
    }
}

//! Warm-up range, side-effect guard and reconciliation checks: each passes a correct implementation
//! and fails a deliberately broken one.
#![allow(clippy::clone_on_ref_ptr)]

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::memory::{MemoryPublisher, MemorySink, MemorySource, MemoryStore};
use backfill_core::prelude::*;
use backfill_testkit::reconcile::{Golden, MismatchKind};
use backfill_testkit::side_effects::{check_side_effect_guard, GuardFailure, Position};
use backfill_testkit::strategy::{valid_manifest, Keyed};
use backfill_testkit::warm_up::{check_warm_up, WarmUpFailure};
use chrono::{Datelike, NaiveDate, TimeZone, Utc};

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap()
}

// ---- warm-up -------------------------------------------------------------------------------------

/// A case: its activity days, the first one being the day it opened.
#[derive(Debug, Clone)]
struct Case {
    id: String,
    events: Vec<NaiveDate>,
}

/// A month of a case: its age and activity at month end.
#[derive(Debug, Clone, serde::Serialize)]
struct CaseMonth {
    id: String,
    month: String,
    month_start: NaiveDate,
    age_days: i64,
    events_to_date: usize,
}

impl OutputRow for CaseMonth {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bug {
    None,
    EmitsWarmUpMonths,
    IgnoresWarmUpInput,
}

#[derive(Debug)]
struct CaseAge(Bug);

impl DeterministicTransform for CaseAge {
    type Input = Case;
    type Output = CaseMonth;
    fn name(&self) -> &str {
        "test"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        case: &Case,
        ctx: &TransformContext,
        out: &mut Vec<CaseMonth>,
    ) -> Result<(), TransformError> {
        let Some(InputRange::Dates {
            from: publish_from,
            to_exclusive: end,
        }) = ctx.publish_range().cloned()
        else {
            return Err(TransformError::new("needs a date publish range"));
        };
        let events: Vec<NaiveDate> = match self.0 {
            Bug::IgnoresWarmUpInput => case
                .events
                .iter()
                .copied()
                .filter(|e| *e >= publish_from)
                .collect(),
            _ => case.events.clone(),
        };
        let Some(opened) = events.first().copied() else {
            return Ok(());
        };
        let mut month = opened.with_day(1).unwrap();
        while month < end {
            let next = month.checked_add_months(chrono::Months::new(1)).unwrap();
            if self.0 == Bug::EmitsWarmUpMonths || ctx.publishes_date(month) {
                out.push(CaseMonth {
                    id: ctx.output_id(&[&case.id, &month.to_string()]),
                    month: month.format("%Y-%m").to_string(),
                    month_start: month,
                    age_days: (next - opened).num_days(),
                    events_to_date: events.iter().filter(|e| **e < next).count(),
                });
            }
            month = next;
        }
        Ok(())
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "c-warm".into(),
            events: vec![d(2024, 12, 16), d(2024, 12, 20), d(2025, 1, 9)],
        },
        Case {
            id: "c-jan".into(),
            events: vec![d(2025, 1, 5), d(2025, 2, 2)],
        },
    ]
}

fn without_warm_up(cases: &[Case]) -> Vec<Case> {
    cases
        .iter()
        .map(|c| Case {
            id: c.id.clone(),
            events: c
                .events
                .iter()
                .copied()
                .filter(|e| *e >= d(2025, 1, 1))
                .collect(),
        })
        .collect()
}

fn warm_manifest() -> RunManifest {
    valid_manifest(
        "bf-warm",
        ExecutionMode::Backfill,
        d(2024, 12, 1),
        d(2025, 4, 1),
        Some((d(2025, 1, 1), d(2025, 4, 1))),
    )
}

#[test]
fn warm_up_check_passes_a_transform_that_uses_warm_up_and_emits_only_published_months() {
    let report = check_warm_up(
        &CaseAge(Bug::None),
        &warm_manifest(),
        at(),
        &cases(),
        |r| r.month_start,
        without_warm_up,
    )
    .unwrap();
    assert_eq!(report.partitions, ["2025-01", "2025-02", "2025-03"]);
    assert_eq!(report.rows, 6);
}

#[test]
fn warm_up_check_fails_a_transform_that_emits_warm_up_months() {
    let f = check_warm_up(
        &CaseAge(Bug::EmitsWarmUpMonths),
        &warm_manifest(),
        at(),
        &cases(),
        |r| r.month_start,
        without_warm_up,
    )
    .unwrap_err();
    match &f {
        WarmUpFailure::OutsidePublishRange {
            date, partition, ..
        } => {
            assert_eq!(*date, d(2024, 12, 1));
            assert_eq!(partition, "2024-12");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn warm_up_check_fails_a_transform_that_ignores_warm_up_input() {
    let f = check_warm_up(
        &CaseAge(Bug::IgnoresWarmUpInput),
        &warm_manifest(),
        at(),
        &cases(),
        |r| r.month_start,
        without_warm_up,
    )
    .unwrap_err();
    assert!(matches!(f, WarmUpFailure::WarmUpIgnored { rows: 6 }), "{f}");
}

#[test]
fn warm_up_check_needs_a_date_publish_range() {
    let mut m = warm_manifest();
    m.publish_range = Some(InputRange::Keys {
        from: "a".into(),
        to_exclusive: "b".into(),
    });
    let f = check_warm_up(
        &CaseAge(Bug::None),
        &m,
        at(),
        &cases(),
        |r| r.month_start,
        without_warm_up,
    )
    .unwrap_err();
    assert!(matches!(f, WarmUpFailure::NoPublishRange { .. }), "{f}");
}

// ---- side effects --------------------------------------------------------------------------------

fn notifications() -> SinkDescriptor {
    SinkDescriptor::side_effecting("notifications", "kafka_topic")
}

#[tokio::test]
async fn the_default_policy_guards_side_effecting_sinks() {
    check_side_effect_guard(Arc::new(DefaultSinkPolicy), notifications())
        .await
        .unwrap();
}

#[derive(Debug)]
struct AllowAll;
impl SinkPolicy for AllowAll {
    fn check(&self, _: &SinkDescriptor, _: &RunManifest) -> backfill_core::Result<()> {
        Ok(())
    }
}

/// Guards Backfill only: forgets Replay and DryRun.
#[derive(Debug)]
struct BackfillOnly;
impl SinkPolicy for BackfillOnly {
    fn check(&self, s: &SinkDescriptor, m: &RunManifest) -> backfill_core::Result<()> {
        if m.mode == ExecutionMode::Backfill {
            DefaultSinkPolicy.check(s, m)
        } else {
            Ok(())
        }
    }
}

#[derive(Debug)]
struct RefuseAll;
impl SinkPolicy for RefuseAll {
    fn check(&self, s: &SinkDescriptor, m: &RunManifest) -> backfill_core::Result<()> {
        Err(Error::ForbiddenSink {
            run_id: m.run_id.clone(),
            sink: s.name.clone(),
            mode: m.mode,
            reason: "refuses everything".into(),
        })
    }
}

#[tokio::test]
async fn a_permissive_policy_lets_the_forbidden_sink_be_written() {
    let f = check_side_effect_guard(Arc::new(AllowAll), notifications())
        .await
        .unwrap_err();
    assert_eq!(
        f,
        GuardFailure::Written {
            mode: ExecutionMode::Backfill,
            sink: "notifications".into(),
            position: Position::StagingSink,
            writes: 2,
        },
        "{f}"
    );
}

#[tokio::test]
async fn a_policy_that_forgets_replay_is_caught() {
    let f = check_side_effect_guard(Arc::new(BackfillOnly), notifications())
        .await
        .unwrap_err();
    assert!(
        matches!(
            f,
            GuardFailure::Written {
                mode: ExecutionMode::Replay,
                ..
            }
        ),
        "{f}"
    );
}

#[tokio::test]
async fn a_policy_that_refuses_everything_and_a_harmless_descriptor_are_reported() {
    let f = check_side_effect_guard(Arc::new(RefuseAll), notifications())
        .await
        .unwrap_err();
    assert!(matches!(f, GuardFailure::ControlRefused { .. }), "{f}");
    let f = check_side_effect_guard(
        Arc::new(DefaultSinkPolicy),
        SinkDescriptor::internal("t", "memory"),
    )
    .await
    .unwrap_err();
    assert!(matches!(f, GuardFailure::NotSideEffecting { .. }), "{f}");
}

// ---- reconciliation ------------------------------------------------------------------------------

type Rec = Keyed<i64>;

/// Doubles values (correct), or adds one in March (broken).
#[derive(Debug)]
struct Double {
    march_bug: bool,
}

impl DeterministicTransform for Double {
    type Input = Rec;
    type Output = Rec;
    fn name(&self) -> &str {
        "test"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        r: &Rec,
        _: &TransformContext,
        out: &mut Vec<Rec>,
    ) -> Result<(), TransformError> {
        let bump = i64::from(self.march_bug && r.day.month() == 3);
        out.push(Keyed {
            value: r.value * 2 + bump,
            ..r.clone()
        });
        Ok(())
    }
}

/// Two accounts a day over Q1 2025; the value is the day's index.
fn records() -> Vec<Rec> {
    (0..90u64)
        .flat_map(|i| {
            ["a", "b"].map(|k| Keyed {
                key: k.to_owned(),
                day: d(2025, 1, 1) + chrono::Days::new(i),
                value: i as i64,
            })
        })
        .collect()
}

/// Worked out by hand: rows = 2 × days; sum = 2 accounts × 2 × (sum of day indexes).
fn golden() -> Golden {
    Golden::new()
        .partition("2025-01", 62, 4 * 465)
        .partition("2025-02", 56, 4 * 1_246)
        .partition("2025-03", 62, 4 * 2_294)
}

#[tokio::test]
async fn a_run_reconciles_with_the_golden_dataset() {
    let m = valid_manifest(
        "bf-gold",
        ExecutionMode::Backfill,
        d(2025, 1, 1),
        d(2025, 4, 1),
        None,
    );
    let sink = Arc::new(MemorySink::new("staging"));
    let publisher = Arc::new(MemoryPublisher::new("testkit_target", &sink));
    let control = Control::new(Arc::new(MemoryStore::new()))
        .with_clock(Arc::new(FixedClock(at())))
        .with_target(publisher.clone())
        .unwrap();
    let runner = Executor::builder(
        control,
        Arc::new(MemorySource::by_date(records(), |r: &Rec| r.day)),
        Arc::new(Double { march_bug: false }),
        sink,
        publisher.clone(),
    )
    .build();
    let approved = m.clone().approve("owner", at()).unwrap();
    runner.control().submit(&approved).await.unwrap();
    assert_eq!(
        runner.run(approved.run_id()).await.unwrap().state,
        RunState::Published
    );
    golden()
        .check_published(publisher.as_ref(), &m.target.partitions, |r| r.value)
        .await
        .unwrap();
}

#[test]
fn a_broken_transform_gets_a_typed_mismatch_per_partition() {
    let ctx = TransformContext::fixed("bf-gold", ExecutionMode::Backfill, at());
    let mut rows = Vec::new();
    for r in records() {
        Double { march_bug: true }
            .apply(&r, &ctx, &mut rows)
            .unwrap();
    }
    // Lose February's last day as well.
    rows.retain(|r| r.day != d(2025, 2, 28));
    let report = golden().check(&rows, |r| r.value).unwrap_err();
    let got: Vec<(&str, &MismatchKind)> = report
        .mismatches
        .iter()
        .map(|m| (m.partition.as_str(), &m.kind))
        .collect();
    assert_eq!(
        got,
        [
            (
                "2025-02",
                &MismatchKind::Rows {
                    expected: 56,
                    actual: 54
                }
            ),
            (
                "2025-02",
                &MismatchKind::Sum {
                    expected: 4_984,
                    actual: 4_984 - 4 * 58
                }
            ),
            (
                "2025-03",
                &MismatchKind::Sum {
                    expected: 9_176,
                    actual: 9_176 + 62
                }
            ),
        ]
    );
    assert!(
        report
            .to_string()
            .contains("2025-03: sum 9238, expected 9176"),
        "{report}"
    );
    // Rows in a partition nobody expected.
    let mut extra = rows.clone();
    extra.push(Keyed {
        key: "z".into(),
        day: d(2025, 4, 1),
        value: 1,
    });
    let report = golden().check(&extra, |r| r.value).unwrap_err();
    assert!(report
        .mismatches
        .iter()
        .any(|m| m.partition.as_str() == "2025-04"
            && matches!(m.kind, MismatchKind::Unexpected { .. })));
}

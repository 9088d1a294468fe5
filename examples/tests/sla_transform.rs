//! The SLA transforms through the testkit, as a pipeline team would test their own.

use backfill_core::prelude::*;
use backfill_examples::sla::calendar::{BusinessCalendar, CALENDAR_AS_RECORDED, CALENDAR_RESTATED};
use backfill_examples::sla::events::{generate, CaseHistory, GeneratorConfig};
use backfill_examples::sla::job::{history_manifest, restatement_manifest};
use backfill_examples::sla::transform::CaseSlaTransform;
use backfill_testkit::{determinism, warm_up};
use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

fn cases() -> Vec<CaseHistory> {
    generate(&GeneratorConfig::default())
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap()
}

#[test]
fn both_versions_are_deterministic_on_generated_cases() {
    let all = cases();
    let v3 = CaseSlaTransform::v3_1_0(BusinessCalendar::version(CALENDAR_RESTATED).unwrap());
    let ctx = TransformContext::for_manifest(&restatement_manifest(&v3, "snap"), at());
    let inputs = proptest::sample::subsequence(all.clone(), 0..40);
    determinism::check_transform(&v3, inputs.clone(), &ctx, ProptestConfig::with_cases(24))
        .unwrap_or_else(|f| panic!("{f}"));
    let make =
        || CaseSlaTransform::v2_4_1(BusinessCalendar::version(CALENDAR_AS_RECORDED).unwrap());
    let ctx = TransformContext::for_manifest(&history_manifest(&make(), "snap"), at());
    determinism::check_transform_fresh(make, inputs, &ctx, ProptestConfig::with_cases(24))
        .unwrap_or_else(|f| panic!("{f}"));
}

#[test]
fn december_2024_feeds_state_but_only_2025_is_published() {
    let all = cases();
    let v3 = CaseSlaTransform::v3_1_0(BusinessCalendar::version(CALENDAR_RESTATED).unwrap());
    let manifest = restatement_manifest(&v3, "snap");
    let y2025 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let report = warm_up::check_warm_up(
        &v3,
        &manifest,
        at(),
        &all,
        |r| NaiveDate::parse_from_str(&format!("{}-01", r.month), "%Y-%m-%d").unwrap(),
        |inputs| {
            inputs
                .iter()
                .filter(|c| c.opened_at().is_some_and(|t| t >= y2025))
                .cloned()
                .collect()
        },
    )
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(report.partitions.len(), 12);
    assert!(report.rows > report.rows_without_warm_up);
}

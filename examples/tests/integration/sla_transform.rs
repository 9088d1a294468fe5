//! The SLA transforms through the testkit, as a pipeline team would test their own.

use backfill_core::prelude::*;
use backfill_core::validate::{ValidationContext, ValidationOutcome, Validator};
use backfill_examples::sla::calendar::{BusinessCalendar, CALENDAR_AS_RECORDED, CALENDAR_RESTATED};
use backfill_examples::sla::checks::DueOnBusinessDays;
use backfill_examples::sla::events::{generate, CaseHistory, GeneratorConfig};
use backfill_examples::sla::job::{history_manifest, restatement_manifest};
use backfill_examples::sla::transform::CaseSlaTransform;
use backfill_testkit::{determinism, warm_up};
use chrono::{NaiveDate, TimeZone, Utc};
use futures::StreamExt;
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

/// Stages `t`'s rows for every generated case in memory and runs the due-date check over them.
async fn due_date_check(t: &CaseSlaTransform, manifest: &RunManifest) -> ValidationOutcome {
    use backfill_core::memory::{MemoryPublisher, MemorySink};
    use backfill_core::sink::{StageRequest, StagingSink};
    let ctx = TransformContext::for_manifest(manifest, at());
    let mut rows = Vec::new();
    for c in cases() {
        t.apply(&c, &ctx, &mut rows).unwrap();
    }
    let sink = MemorySink::new("staging");
    let chunk = ChunkId::from("00000-all");
    let req = StageRequest {
        run_id: &manifest.run_id,
        chunk_id: &chunk,
        attempt: 1,
        lineage: ctx.lineage(),
    };
    sink.stage(req, futures::stream::iter([Ok(rows)]).boxed())
        .await
        .unwrap();
    let publisher = MemoryPublisher::new("silver.case_sla_monthly", &sink);
    let cx = ValidationContext {
        run_id: &manifest.run_id,
        manifest,
        chunks: &[],
        ledger: &PartitionDigests::default(),
        staged: &sink,
        current: &publisher,
        accepted: None,
    };
    let restated = BusinessCalendar::version(CALENDAR_RESTATED).unwrap();
    DueOnBusinessDays::new(restated)
        .validate(&cx)
        .await
        .unwrap()
}

#[tokio::test]
async fn due_dates_of_2_4_1_fall_on_a_restated_holiday_and_those_of_3_1_0_do_not() {
    let v2 = CaseSlaTransform::v2_4_1(BusinessCalendar::version(CALENDAR_AS_RECORDED).unwrap());
    let bad = due_date_check(&v2, &history_manifest(&v2, "snap")).await;
    assert_eq!(bad.verdict, Verdict::Fail, "{}", bad.summary);
    assert!(bad.details["sample"][0].as_str().unwrap().contains("BR-SP"));
    assert!(bad.details["sample"][0]
        .as_str()
        .unwrap()
        .ends_with("2025-11-20"));
    let v3 = CaseSlaTransform::v3_1_0(BusinessCalendar::version(CALENDAR_RESTATED).unwrap());
    let good = due_date_check(&v3, &restatement_manifest(&v3, "snap")).await;
    assert_eq!(good.verdict, Verdict::Pass, "{}", good.summary);
}

//! The two manifests of the job: v2.4.1's accepted history and the v3.1.0 restatement, with the
//! names, ranges and checks they share.

use backfill_core::prelude::*;
use chrono::NaiveDate;

use super::calendar::CALENDAR_NAME;
use super::source::TABLE;
use super::transform::{months, CaseSlaTransform, TRANSFORM_NAME};

/// The accepted-history run of v2.4.1.
pub const HISTORY_RUN: &str = "bf-2025-case-sla-v2-4-1";
/// The restatement run of v3.1.0.
pub const RESTATEMENT_RUN: &str = "bf-2026-07-04-case-sla-v3-001";
/// The data product: the manifests' target name and the table readers query (on SQLite the table
/// `silver__case_sla_monthly`, see [`backfill_sql::QualifiedName`]).
pub const TARGET: &str = "silver.case_sla_monthly";
/// Who asks, who approves and who owns the data.
pub const REQUESTER: &str = "sla-platform-team";
/// The regulatory reporting owner: approves the manifest and reviews the business delta.
pub const OWNER: &str = "regulatory-reporting-owner";
/// The quality gate both manifests name: the regulator's reconciliation of the table.
pub const QUALITY_GATE: &str = "regulatory-sla";
/// The checks of the history manifest: the names of the validators its executor attaches.
pub const HISTORY_CHECKS: [&str; 1] = ["unique(id)"];
/// The checks of the restatement manifest: the names of the validators its executor attaches
/// ([`restatement_validators`](super::job::restatement_validators)), in the order they run.
pub const RESTATEMENT_CHECKS: [&str; 7] = [
    "unique(id)",
    "business_delta(breaches)",
    "sql_range(business_days_used in 0..=10000)",
    "sql_not_null(opened_on)",
    "no_missing_active_cases",
    "due_on_business_days",
    "diff_against_accepted",
];

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

/// The input range, in UTC event dates: December 2024 is warm-up for cases that cross into 2025, and
/// the first day of 2026 is read because the evening of 2025-12-31 in the Americas is already
/// 2026-01-01 in UTC.
pub fn input_range() -> InputRange {
    InputRange::Dates {
        from: day(2024, 12, 1),
        to_exclusive: day(2026, 1, 2),
    }
}

/// The publish range: business year 2025.
pub fn publish_range() -> InputRange {
    InputRange::Dates {
        from: day(2025, 1, 1),
        to_exclusive: day(2026, 1, 1),
    }
}

pub(crate) fn dates(r: &InputRange) -> (NaiveDate, NaiveDate) {
    match r {
        InputRange::Dates { from, to_exclusive } => (*from, *to_exclusive),
        _ => (NaiveDate::MIN, NaiveDate::MIN),
    }
}

fn base_manifest(run_id: &str, kind: RunKind, t: &CaseSlaTransform, snapshot: &str) -> RunManifest {
    let mut m = RunManifest::new(run_id, kind, ExecutionMode::Backfill);
    m.requested_by = REQUESTER.into();
    m.source = SourceSpec {
        kind: "sql_table".into(),
        name: TABLE.into(),
        snapshot: Some(snapshot.into()),
        range: Some(input_range()),
        ..SourceSpec::default()
    };
    m.publish_range = Some(publish_range());
    m.transform = TransformSpec {
        name: TRANSFORM_NAME.into(),
        version: t.version().into(),
        config_hash: Some(t.fingerprint().config_hash),
        reference_data: vec![ReferenceData {
            name: CALENDAR_NAME.into(),
            version: t.calendar().version_name().into(),
            semantics: ReferenceSemantics::CorrectedTruth,
        }],
        ..TransformSpec::default()
    };
    let (from, to) = dates(&publish_range());
    m.target = TargetSpec {
        kind: "sql_table".into(),
        name: TARGET.into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: months(from, to).into_iter().map(Into::into).collect(),
        consumers: vec![
            "regulatory-sla-report".into(),
            "enforcement-dashboard".into(),
        ],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(200_000);
    m.safety.max_cost_usd = Some(5);
    m.privacy = Some(PrivacySpec {
        purpose: "regulatory SLA reporting".into(),
        retention_checked: true,
        erasure_checked: true,
        ..PrivacySpec::default()
    });
    m
}

/// The manifest that published v2.4.1's 2025 output (the accepted history being corrected).
pub fn history_manifest(t: &CaseSlaTransform, snapshot: &str) -> RunManifest {
    let mut m = base_manifest(HISTORY_RUN, RunKind::Backfill, t, snapshot);
    m.reason = "Initial 2025 SLA facts for the regulatory report".into();
    m.transform.git_commit = Some("5e0c2a1".into());
    m.transform.reference_data[0].semantics = ReferenceSemantics::AsRecorded;
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        quality_gate: Some(QUALITY_GATE.into()),
        checks: HISTORY_CHECKS.iter().map(|c| (*c).to_owned()).collect(),
        ..ValidationPlan::default()
    });
    m
}

/// The restatement manifest of §29: reason, pinned input with warm-up, v3.1.0, restated calendar,
/// replace the 2025 monthly partitions, no side effects, validation plan (the checks are the attached
/// validators' names, the quality gate the regulator's reconciliation).
pub fn restatement_manifest(t: &CaseSlaTransform, snapshot: &str) -> RunManifest {
    let mut m = base_manifest(RESTATEMENT_RUN, RunKind::Restatement, t, snapshot);
    m.reason = "Fix SLA breach calculation after timezone bug in case-sla-transform 2.4.1: due dates were one day late for cases with evening events".into();
    m.transform.git_commit = Some("a41f9c3".into());
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        business_delta_max_pct: Some(2),
        quality_gate: Some(QUALITY_GATE.into()),
        checks: RESTATEMENT_CHECKS.iter().map(|c| (*c).to_owned()).collect(),
        ..ValidationPlan::default()
    });
    m.labels.insert("ticket".into(), "REG-2291".into());
    m.labels
        .insert("restatement_reason".into(), "TIMEZONE_BUG_FIX".into());
    m
}

/// The dry run of the restatement on a subset: January 2025 only.
pub const DRY_RUN: &str = "bf-2026-07-04-case-sla-v3-dry";

/// The dry run's input range: the cases opened in December 2024 (warm-up) and January 2025, and on
/// the first day of February in UTC (the evening of January 31 in the Americas), as
/// [`input_range`] reads the first day of 2026.
pub fn dry_run_input_range() -> InputRange {
    InputRange::Dates {
        from: day(2024, 12, 1),
        to_exclusive: day(2025, 2, 2),
    }
}

/// The dry run's publish range: January 2025.
pub fn dry_run_publish_range() -> InputRange {
    InputRange::Dates {
        from: day(2025, 1, 1),
        to_exclusive: day(2025, 2, 1),
    }
}

/// The restatement rehearsed on one month before the whole year runs: v3.1.0 on the cases opened in
/// December 2024 and January 2025, staging and validating the January partition only, in
/// [`ExecutionMode::DryRun`] (never published). `snapshot` is the pin of
/// [`dry_run_input_range`]. Every case is read with its whole history, so its January row equals
/// the full run's.
pub fn dry_run_manifest(t: &CaseSlaTransform, snapshot: &str) -> RunManifest {
    let mut m = restatement_manifest(t, snapshot);
    m.run_id = DRY_RUN.into();
    m.mode = ExecutionMode::DryRun;
    m.reason = "Dry run of the REG-2291 restatement on January 2025 before the whole year: \
                same transform, calendar and checks, never published"
        .into();
    m.source.range = Some(dry_run_input_range());
    m.publish_range = Some(dry_run_publish_range());
    let (from, to) = dates(&dry_run_publish_range());
    m.target.partitions = months(from, to).into_iter().map(Into::into).collect();
    m.safety.max_rows_expected = Some(20_000);
    m.safety.max_cost_usd = Some(1);
    m
}

/// The reconciliation of the restatement against the accepted history.
pub const RECONCILIATION_RUN: &str = "bf-2026-07-04-case-sla-v3-recon";

/// The restatement computed in [`ExecutionMode::Reconciliation`]: v3.1.0 over the whole year, staged,
/// validated and compared with what readers see now (the accepted run), month by month; never
/// published, so target and pointer stay as they are. What an owner runs to see what the
/// restatement would change before deciding to request it.
pub fn reconciliation_manifest(t: &CaseSlaTransform, snapshot: &str) -> RunManifest {
    let mut m = restatement_manifest(t, snapshot);
    m.run_id = RECONCILIATION_RUN.into();
    m.mode = ExecutionMode::Reconciliation;
    m.reason = "Reconcile v3.1.0 (timezone fix, restated calendar) against the accepted 2025 SLA                 history: what would change, month by month; never published"
        .into();
    m
}

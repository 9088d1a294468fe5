//! A restatement in memory, from manifest to rollback.
//!
//! `cargo run -p backfill-examples --example quickstart`
//!
//! 1. Publishes v1 of a daily-amount transform as accepted history.
//! 2. Writes, checks and approves a restatement manifest for v2.
//! 3. Runs it: chunks are staged and validated; the business delta exceeds the manifest's threshold,
//!    so the run waits for the data owner.
//! 4. The owner accepts and publishes through the control plane; v1 is superseded.
//! 5. Rolls back to v1 through the control plane, then prints the typed evidence trail and verifies
//!    the exported bundle.
//!
//! Operator actions go through [`Control`]; the [`Executor`] only executes.

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::evidence::bundle::verify_rows;
use backfill_core::evidence::EvidenceRecord;
use backfill_core::memory::{MemoryPublisher, MemorySink, MemorySource, MemoryStore};
use backfill_core::prelude::*;
use backfill_core::validate::{BusinessDelta, UniqueKey};
use chrono::{Days, NaiveDate, TimeZone, Utc};

#[derive(Debug, Clone)]
struct Payment {
    day: NaiveDate,
    account: String,
    cents: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct DailyAmount {
    id: String,
    account: String,
    day: NaiveDate,
    month: String,
    cents: i64,
    produced_by_run_id: String,
}

impl OutputRow for DailyAmount {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

/// v1 forgot the fee; v2 adds it.
#[derive(Debug)]
struct Amounts {
    version: &'static str,
    fee_cents: i64,
}

impl DeterministicTransform for Amounts {
    type Input = Payment;
    type Output = DailyAmount;

    fn name(&self) -> &str {
        "daily-amounts"
    }

    fn version(&self) -> &str {
        self.version
    }

    fn apply(
        &self,
        p: &Payment,
        ctx: &TransformContext,
        out: &mut Vec<DailyAmount>,
    ) -> Result<(), TransformError> {
        out.push(DailyAmount {
            id: ctx.output_id(&[&p.account, &p.day.to_string()]),
            account: p.account.clone(),
            day: p.day,
            month: p.day.format("%Y-%m").to_string(),
            cents: p.cents + self.fee_cents,
            produced_by_run_id: ctx.run_id().to_string(),
        });
        Ok(())
    }
}

fn payments() -> Vec<Payment> {
    let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default();
    (0..90u64)
        .flat_map(|i| {
            ["acct-1", "acct-2"].into_iter().map(move |a| Payment {
                day: start + Days::new(i),
                account: a.into(),
                cents: 1_000 + i as i64,
            })
        })
        .collect()
}

fn manifest(run_id: &str, version: &str) -> RunManifest {
    let d = |m| NaiveDate::from_ymd_opt(2025, m, 1).unwrap_or_default();
    let mut m = RunManifest::new(run_id, RunKind::Restatement, ExecutionMode::Backfill);
    m.reason = "daily amounts missed the processing fee".into();
    m.requested_by = "data-platform".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "bronze.payments".into(),
        snapshot: Some(SNAPSHOT.into()),
        range: Some(InputRange::Dates {
            from: d(1),
            to_exclusive: d(4),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "daily-amounts".into();
    m.transform.version = version.into();
    m.transform.git_commit = Some("8d91ab7".into());
    m.target = TargetSpec {
        kind: "memory".into(),
        name: TARGET.into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: vec!["2025-01".into(), "2025-02".into(), "2025-03".into()],
        consumers: vec!["finance-dashboard".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(1_000);
    // The checks are the names of the validators the executor attaches.
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        business_delta_max_pct: Some(5),
        checks: vec!["unique(id)".into(), "business_delta(cents)".into()],
        ..Default::default()
    });
    m
}

const TARGET: &str = "silver.daily_amounts";
type Staging = MemorySink<DailyAmount>;
type Target = MemoryPublisher<DailyAmount>;
const SNAPSHOT: &str = "snap-42";
const OWNER: &str = "finance-owner";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let now = Utc
        .with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default();
    let store = Arc::new(MemoryStore::new());
    let staging = Arc::new(MemorySink::new("staging"));
    let target = Arc::new(MemoryPublisher::new(TARGET, &staging));
    // The control plane: every operator action (submit, approve, review, publish, rollback).
    let control = Control::new(Arc::<MemoryStore>::clone(&store))
        .with_clock(Arc::new(FixedClock(now)))
        .with_target(Arc::<Target>::clone(&target))?;
    // An executor per transform version: it plans, stages and validates (and publishes through the
    // control plane when no review is needed).
    let executor = |t: Amounts| {
        let source = MemorySource::by_date(payments(), |p: &Payment| p.day).snapshot(SNAPSHOT);
        Executor::builder(
            control.clone(),
            Arc::new(source),
            Arc::new(t),
            Arc::<Staging>::clone(&staging),
            Arc::<Target>::clone(&target),
        )
        .options(RunnerOptions::worker("quickstart"))
        .validator(Arc::new(UniqueKey::new("id", |r: &DailyAmount| {
            r.id.clone()
        })))
        .validator(Arc::new(BusinessDelta::new("cents", |r: &DailyAmount| {
            r.cents
        })))
        .build()
    };

    // 1. Accepted history.
    let v1 = executor(Amounts {
        version: "1.0.0",
        fee_cents: 0,
    });
    let approved = manifest("bf-amounts-v1", "1.0.0").approve(OWNER, now)?;
    control.submit(&approved).await?;
    let r = v1.run(approved.run_id()).await?;
    println!(
        "v1: {} rows in {} partitions -> {}",
        r.output_rows,
        r.digests.0.len(),
        r.state
    );

    // 2. The restatement manifest: checked, submitted as a draft, approved by someone other than the
    //    requester.
    let draft = manifest("bf-amounts-v2", "2.0.0");
    for f in draft
        .check()
        .0
        .iter()
        .filter(|f| f.severity != backfill_core::manifest::Severity::Info)
    {
        println!("check: {f}");
    }
    let v2_id = draft.run_id.clone();
    control.submit_draft(&draft).await?;
    let record = control.approve(&v2_id, OWNER).await?;
    println!("approved {v2_id} as {}", record.manifest_digest);

    // 3. Run: staged and validated, but the business delta needs the owner.
    let v2 = executor(Amounts {
        version: "2.0.0",
        fee_cents: 150,
    });
    let r = v2.run(&v2_id).await?;
    for v in &r.validations {
        println!(
            "validation {:<28} {:?}: {}",
            v.validator, v.verdict, v.summary
        );
    }
    println!("v2 -> {}", r.state);

    // 4. Owner review and publication, through the control plane.
    control
        .review(&v2_id, true, OWNER, "fee restated as agreed in FIN-1234")
        .await?;
    let receipt = control.publish(&v2_id, OWNER).await?;
    println!("v2 -> published ({} rows)", receipt.rows);
    println!(
        "v1 -> {}",
        control.run(&"bf-amounts-v1".into()).await?.state
    );

    // 5. Roll back to the run v2 replaced, through the control plane.
    control
        .rollback_run(&v2_id, OWNER, "dashboard owners not ready")
        .await?;
    let runs: std::collections::BTreeSet<_> = target
        .snapshot()
        .values()
        .flatten()
        .map(|r| r.produced_by_run_id.clone())
        .collect();
    println!("after rollback readers see runs {runs:?}");

    // 6. The evidence, typed, and the exported bundle verified against the ledger and the target.
    println!("\nevidence of {v2_id}:");
    for e in store.evidence(&v2_id).await? {
        println!(
            "  #{:<3} {:<16} by {:<16} {}",
            e.seq,
            e.kind().as_str(),
            e.by,
            describe(&e.record)
        );
    }
    let bundle = control.export(&v2_id).await?;
    let v = verify_rows(&bundle, Some(staging.as_ref()), None).await?;
    println!(
        "bundle of {v2_id}: {} checks, {}",
        v.checks.len(),
        if v.passed() { "verified" } else { "FAILED" }
    );
    Ok(())
}

/// One line per evidence record, read from its typed fields.
fn describe(r: &EvidenceRecord) -> String {
    match r {
        EvidenceRecord::ManifestStored {
            digest, version, ..
        } => {
            format!("manifest v{version} {digest}")
        }
        EvidenceRecord::Approved(a) => format!("approved {}", a.digest),
        EvidenceRecord::PlanResolved {
            snapshot, chunks, ..
        } => format!(
            "{} chunks at snapshot {}",
            chunks.len(),
            snapshot.as_deref().unwrap_or("-")
        ),
        EvidenceRecord::Transition(t) => format!("{} -> {}: {}", t.from, t.to, t.reason),
        EvidenceRecord::ChunkStaged {
            chunk_id, output, ..
        } => format!("chunk {chunk_id}: {output} rows"),
        EvidenceRecord::Validation(o) => format!("{}: {:?}", o.validator, o.verdict),
        EvidenceRecord::Review { accept, reason } => format!("accept={accept}: {reason}"),
        EvidenceRecord::Published { receipt, previous } => format!(
            "{} rows, replacing {}",
            receipt.rows,
            previous.as_ref().map_or("nothing", RunId::as_str)
        ),
        EvidenceRecord::PointerMoved { target, to, .. } => format!("{target} -> {to}"),
        EvidenceRecord::RolledBack { to, reason, .. } => format!("back to {to}: {reason}"),
        other => other.kind().as_str().to_owned(),
    }
}

//! A restatement in memory, from manifest to rollback.
//!
//! `cargo run -p backfill-examples --example quickstart`
//!
//! 1. Publishes v1 of a daily-amount transform as accepted history.
//! 2. Writes, checks and approves a restatement manifest for v2.
//! 3. Runs it: chunks are staged and validated; the business delta exceeds the manifest's threshold,
//!    so the run waits for the data owner.
//! 4. The owner accepts; the run publishes and supersedes v1.
//! 5. Rolls back to v1 by moving the accepted pointer, then prints the evidence trail.

use std::borrow::Cow;
use std::sync::Arc;

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
        snapshot: Some("snap-42".into()),
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
        name: "silver.daily_amounts".into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: vec!["2025-01".into(), "2025-02".into(), "2025-03".into()],
        consumers: vec!["finance-dashboard".into()],
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(1_000);
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        business_delta_max_pct: Some(5),
        ..Default::default()
    });
    m
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let now = Utc
        .with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default();
    let store = Arc::new(MemoryStore::new());
    let staging = Arc::new(MemorySink::new("staging"));
    let target = Arc::new(MemoryPublisher::new("silver.daily_amounts"));
    let runner = |t: Amounts| {
        Runner::builder(
            Arc::<MemoryStore>::clone(&store),
            Arc::new(MemorySource::by_date(payments(), |p: &Payment| p.day)),
            Arc::new(t),
            Arc::<MemorySink<DailyAmount>>::clone(&staging),
            Arc::<MemoryPublisher<DailyAmount>>::clone(&target),
        )
        .clock(Arc::new(FixedClock(now)))
        .validator(Arc::new(UniqueKey::new("id", |r: &DailyAmount| {
            r.id.clone()
        })))
        .validator(Arc::new(BusinessDelta::new("cents", |r: &DailyAmount| {
            r.cents
        })))
        .build()
    };

    // 1. Accepted history.
    let v1 = runner(Amounts {
        version: "1.0.0",
        fee_cents: 0,
    });
    let approved = manifest("bf-amounts-v1", "1.0.0").approve("finance-owner", now)?;
    v1.submit(&approved).await?;
    let r = v1.run(approved.run_id()).await?;
    println!(
        "v1: {} rows in {} partitions -> {}",
        r.output_rows,
        r.digests.0.len(),
        r.state
    );

    // 2. The restatement manifest: checked, then approved by someone other than the requester.
    let draft = manifest("bf-amounts-v2", "2.0.0");
    for f in draft
        .check()
        .0
        .iter()
        .filter(|f| f.severity != backfill_core::manifest::Severity::Info)
    {
        println!("check: {f}");
    }
    let approved = draft.approve("finance-owner", now)?;
    println!("approved {} as {}", approved.run_id(), approved.digest());

    // 3. Run: staged and validated, but the business delta needs the owner.
    let v2 = runner(Amounts {
        version: "2.0.0",
        fee_cents: 150,
    });
    v2.submit(&approved).await?;
    let r = v2.run(approved.run_id()).await?;
    for v in &r.validations {
        println!(
            "validation {:<28} {:?}: {}",
            v.validator, v.verdict, v.summary
        );
    }
    println!("v2 -> {}", r.state);

    // 4. Owner review, then publication (running again continues where it stopped).
    v2.review(
        approved.run_id(),
        true,
        "finance-owner",
        "fee restated as agreed in FIN-1234",
    )
    .await?;
    let r = v2.run(approved.run_id()).await?;
    println!(
        "v2 -> {} ({} rows)",
        r.state,
        r.receipt.map(|x| x.rows).unwrap_or(0)
    );
    println!("v1 -> {}", v2.status(&"bf-amounts-v1".into()).await?.state);

    // 5. Roll back by moving the pointer.
    v2.rollback(
        "silver.daily_amounts",
        &"bf-amounts-v1".into(),
        "finance-owner",
        "dashboard owners not ready",
    )
    .await?;
    let visible = target.snapshot();
    let runs: std::collections::BTreeSet<_> = visible
        .values()
        .flatten()
        .map(|r| r.produced_by_run_id.clone())
        .collect();
    println!("after rollback readers see runs {runs:?}");

    println!("\nevidence of bf-amounts-v2:");
    for e in store.evidence(&"bf-amounts-v2".into()).await? {
        println!(
            "  #{:<3} {:<16} by {:<16} {}",
            e.seq,
            format!("{:?}", e.kind),
            e.by,
            brief(&e.detail)
        );
    }
    Ok(())
}

fn brief(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 90 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(90).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

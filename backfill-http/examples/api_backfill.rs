//! A backfill from an HTTP API, end to end, against a scripted API on loopback.
//!
//! `cargo run -p backfill-http --example api_backfill`
//!
//! 1. Starts a scripted API (backfill-testkit's `http` module) holding 250 items behind tokens that
//!    live five requests, with a burst of `429`s and rows inserted at the head mid-paging.
//! 2. Plans the manifest's id range into chunks, runs them through a transform into staging,
//!    validates and publishes into the in-memory target: the source waits out the `429`s,
//!    refreshes tokens, and recaptures the chunk whose listing drifted.
//! 3. Prints each chunk's capture and the evidence trail, finds the items the vendor deleted
//!    without a trace by id-listing reconciliation, and purges the raw pages the manifest's
//!    privacy section does not let it keep.
//!
//! The last line is `published <N> records from <P> pages`; any failure exits non-zero.

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::memory::{MemoryPublisher, MemorySink, MemoryStore};
use backfill_core::prelude::*;
use backfill_core::validate::UniqueKey;
use backfill_http::{
    hidden_deletes, ClientCredentials, DirCaptureStore, HttpSource, IdListing, RetryPolicy, Scan,
    Vendor,
};
use backfill_testkit::http::{ApiRow, ApiScript, ScriptedApi};
use chrono::{DateTime, TimeZone, Utc};

/// An item as the API serves it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Item {
    id: u64,
    updated_at: DateTime<Utc>,
    amount: i64,
}

/// The published row: amounts in whole units, by month of change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Balance {
    id: String,
    item: u64,
    month: String,
    units: i64,
}

impl OutputRow for Balance {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

#[derive(Debug)]
struct ToBalance;

impl DeterministicTransform for ToBalance {
    type Input = Item;
    type Output = Balance;

    fn name(&self) -> &str {
        "items-to-balances"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    fn apply(
        &self,
        i: &Item,
        ctx: &TransformContext,
        out: &mut Vec<Balance>,
    ) -> Result<(), TransformError> {
        out.push(Balance {
            id: ctx.output_id(&[&i.id.to_string()]),
            item: i.id,
            month: i.updated_at.format("%Y-%m").to_string(),
            units: i.amount / 100,
        });
        Ok(())
    }
}

fn manifest(now: DateTime<Utc>) -> Result<ApprovedManifest, Error> {
    let mut m = RunManifest::new(
        "bf-api-items",
        RunKind::Restatement,
        ExecutionMode::Backfill,
    );
    m.reason = "reload balances from the vendor API".into();
    m.requested_by = "data-platform".into();
    m.source = SourceSpec {
        kind: "http".into(),
        name: "vendor.items".into(),
        range: Some(InputRange::Keys {
            from: "0001".into(),
            to_exclusive: "0301".into(),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "items-to-balances".into();
    m.transform.version = "1.0.0".into();
    m.transform.git_commit = Some("8d91ab7".into());
    m.target = TargetSpec {
        kind: "memory".into(),
        name: "silver.balances".into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: vec!["2025-01".into()],
        consumers: vec!["finance".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(10_000);
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        checks: vec!["unique(id)".into()],
        ..Default::default()
    });
    m.approve("finance-owner", now)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Utc
        .with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .ok_or("bad clock")?;

    // 1. The vendor: 250 items, five-request tokens, two 429s, three inserts at the head.
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=250)).token_lifetime(5)).await;
    api.storm(2, 1);
    api.insert_after_pages(9, ApiRow::series(251..=253));
    println!("scripted API at {}", api.uri());

    // 2. The source: id ranges of 100, pages of 25, ten requests a second, captures on disk.
    let dir = std::env::temp_dir().join(format!("backfill-http-example-{}", std::process::id()));
    let store = Arc::new(DirCaptureStore::open(&dir).await?);
    let source =
        HttpSource::<Item>::builder("vendor-items", api.uri(), "/items", Scan::id_range(100))
            .vendor(Vendor::new("vendor", 10))
            .retry(RetryPolicy::default())
            .auth(Arc::new(ClientCredentials::new(
                format!("{}/oauth/token", api.uri()),
                "backfill",
                "not-a-secret",
            )))
            .page_size(25)
            .capture_store(store)
            .build()?;

    let run_store = Arc::new(MemoryStore::new());
    let staging = Arc::new(MemorySink::<Balance>::new("staging"));
    let target = Arc::new(MemoryPublisher::new("silver.balances", &staging));
    let control = Control::new(Arc::<MemoryStore>::clone(&run_store))
        .with_clock(Arc::new(FixedClock(now)))
        .with_target(Arc::<MemoryPublisher<Balance>>::clone(&target))?;
    let approved = manifest(now)?;
    let run_id = approved.run_id().clone();
    control.submit(&approved).await?;
    let executor = Executor::builder(
        control.clone(),
        Arc::new(source.clone()),
        Arc::new(ToBalance),
        Arc::<MemorySink<Balance>>::clone(&staging),
        Arc::<MemoryPublisher<Balance>>::clone(&target),
    )
    .validator(Arc::new(UniqueKey::new("id", |b: &Balance| b.id.clone())))
    .options(RunnerOptions::worker("api-example"))
    .build();
    let report = executor.run(&run_id).await?;
    println!(
        "run {run_id}: {} -> {} input records, {} rows",
        report.state, report.input_records, report.output_rows
    );

    // 3. Captures, evidence, reconciliation, purge.
    let plan = run_store
        .plan(&run_id)
        .await?
        .ok_or("the run has no stored plan")?;
    let mut pages = 0;
    for chunk in &plan.chunks {
        let c = source
            .capture_of(chunk)
            .await?
            .ok_or("a chunk was not captured")?;
        pages += c.pages.len();
        println!(
            "chunk {} ({}): {} pages, {} records, {} capture(s), capture {}",
            chunk.id,
            chunk.label,
            c.pages.len(),
            c.records,
            c.attempts,
            &c.digest[..16]
        );
    }
    println!(
        "capture digest {}",
        source.captures_digest(&plan.chunks).await?
    );
    for e in run_store.evidence(&run_id).await? {
        println!("  evidence #{:<3} {}", e.seq, e.kind().as_str());
    }
    println!(
        "{} requests: {} pages answered, {} 429s waited out, {} expired tokens refreshed",
        api.data_requests(),
        api.count("/items", Some(200)),
        api.count("/items", Some(429)),
        api.count("/items", Some(401)),
    );

    let published: Vec<u64> = target
        .snapshot()
        .values()
        .flatten()
        .map(|b| b.item)
        .collect();
    api.delete_hidden(&[42, 199]);
    let gone = hidden_deletes(
        &source,
        &IdListing::new("/ids"),
        1,
        301,
        published.iter().copied(),
    )
    .await?;
    println!("deleted at the vendor without a trace: {gone:?}");
    let mut purged = 0;
    for chunk in &plan.chunks {
        purged += usize::from(source.purge_raw(chunk).await?);
    }
    println!("raw pages purged for {purged} chunk(s) (no privacy section allows keeping them)");
    // The example's directory is its own; remove it.
    let _ = tokio::fs::remove_dir_all(&dir).await;

    if report.state != RunState::Published || published.len() != 253 || gone != [42, 199] {
        return Err(format!(
            "unexpected outcome: {} with {} records, deletes {gone:?}",
            report.state,
            published.len()
        )
        .into());
    }
    println!("published {} records from {pages} pages", published.len());
    Ok(())
}

//! Shared pieces of the loopback tests: the record type, a transform, a source over the scripted
//! API and an end-to-end run through `Control` and `Executor` into the in-memory target.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use backfill_core::memory::{MemoryPublisher, MemorySink, MemoryStore};
use backfill_core::plan::{PlannedChunk, ResolvedPlan};
use backfill_core::prelude::*;
use backfill_core::runner::RetryPolicy as RunnerRetry;
use backfill_core::validate::UniqueKey;
use backfill_http::{CaptureStore, ClientCredentials, HttpSource, RetryPolicy, Scan, Vendor};
use backfill_testkit::http::ScriptedApi;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub const OWNER: &str = "api-owner";

/// A record of the scripted API, as the source reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: u64,
    pub updated_at: DateTime<Utc>,
    pub name: String,
    pub amount: i64,
}

/// An output row: one per item, partitioned by month of change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub id: String,
    pub item: u64,
    pub month: String,
    pub amount: i64,
}

impl OutputRow for Row {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

#[derive(Debug)]
pub struct ToRow;

impl DeterministicTransform for ToRow {
    type Input = Item;
    type Output = Row;

    fn name(&self) -> &str {
        "items-to-rows"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    fn apply(
        &self,
        i: &Item,
        ctx: &TransformContext,
        out: &mut Vec<Row>,
    ) -> Result<(), TransformError> {
        out.push(Row {
            id: ctx.output_id(&[&i.id.to_string()]),
            item: i.id,
            month: i.updated_at.format("%Y-%m").to_string(),
            amount: i.amount,
        });
        Ok(())
    }
}

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A source over `/items` by id range, pages of `page_size`, fast retries, a generous vendor limit.
pub fn id_source(
    api: &ScriptedApi,
    page_size: u32,
    store: Option<Arc<dyn CaptureStore>>,
) -> backfill_http::HttpSourceBuilder<Item> {
    let mut b = HttpSource::<Item>::builder("items", api.uri(), "/items", Scan::id_range(1_000))
        .vendor(Vendor::new("scripted", 200))
        .retry(RetryPolicy::fast())
        .page_size(page_size)
        .clock(now);
    if let Some(s) = store {
        b = b.capture_store(s);
    }
    b
}

pub fn with_token(
    b: backfill_http::HttpSourceBuilder<Item>,
    api: &ScriptedApi,
) -> backfill_http::HttpSourceBuilder<Item> {
    b.auth(Arc::new(ClientCredentials::new(
        format!("{}/oauth/token", api.uri()),
        "client",
        "secret",
    )))
}

/// A manifest over ids `from..to` (four digits wide).
pub fn manifest(run_id: &str, from: u64, to: u64) -> RunManifest {
    let mut m = RunManifest::new(run_id, RunKind::Restatement, ExecutionMode::Backfill);
    m.reason = "reload items from the vendor API".into();
    m.requested_by = "data-platform".into();
    m.source = SourceSpec {
        kind: "http".into(),
        name: "scripted.items".into(),
        range: Some(InputRange::Keys {
            from: format!("{from:04}"),
            to_exclusive: format!("{to:04}"),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "items-to-rows".into();
    m.transform.version = "1.0.0".into();
    m.transform.git_commit = Some("0000000".into());
    m.target = TargetSpec {
        kind: "memory".into(),
        name: "silver.items".into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: vec!["2025-01".into()],
        consumers: vec!["tests".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(100_000);
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        checks: vec!["unique(id)".into()],
        ..Default::default()
    });
    m
}

/// The plan the executor will make for `manifest` (chunk ids depend on the run id and ranges only).
pub async fn planned(source: &HttpSource<Item>, manifest: &RunManifest) -> Vec<PlannedChunk> {
    let plan = BackfillSource::<Item>::plan(source, manifest)
        .await
        .expect("plan");
    ResolvedPlan::new(&manifest.run_id, manifest.digest(), plan, now()).chunks
}

/// A control plane, staging and target in memory.
pub struct World {
    pub store: Arc<MemoryStore>,
    pub staging: Arc<MemorySink<Row>>,
    pub target: Arc<MemoryPublisher<Row>>,
    pub control: Control,
}

impl World {
    pub fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let staging = Arc::new(MemorySink::new("staging"));
        let target = Arc::new(MemoryPublisher::new("silver.items", &staging));
        let control = Control::new(Arc::<MemoryStore>::clone(&store))
            .with_clock(Arc::new(FixedClock(now())))
            .with_target(Arc::<MemoryPublisher<Row>>::clone(&target))
            .expect("target");
        Self {
            store,
            staging,
            target,
            control,
        }
    }

    pub async fn submit(&self, manifest: RunManifest) -> RunId {
        let approved = manifest.approve(OWNER, now()).expect("approve");
        self.control.submit(&approved).await.expect("submit");
        approved.run_id().clone()
    }

    pub fn executor(&self, source: HttpSource<Item>) -> Executor<ToRow> {
        Executor::builder(
            self.control.clone(),
            Arc::new(source),
            Arc::new(ToRow),
            Arc::<MemorySink<Row>>::clone(&self.staging),
            Arc::<MemoryPublisher<Row>>::clone(&self.target),
        )
        .validator(Arc::new(UniqueKey::new("id", |r: &Row| r.id.clone())))
        .options(
            RunnerOptions::worker("http-tests")
                .with_retry(RunnerRetry::new(3, Duration::from_millis(10))),
        )
        .build()
    }

    /// Item ids in the target, sorted, with duplicates kept.
    pub fn published_items(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .target
            .snapshot()
            .values()
            .flatten()
            .map(|r| r.item)
            .collect();
        ids.sort_unstable();
        ids
    }
}

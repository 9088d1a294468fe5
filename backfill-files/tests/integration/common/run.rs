//! A real run over a files source: executor, in-memory store, staging and target.
#![allow(dead_code, unreachable_pub)]

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::memory::{MemoryPublisher, MemorySink, MemoryStore};
use backfill_core::prelude::*;
use backfill_files::FileRow;
use chrono::{TimeZone, Utc};

use super::Order;

/// One output row: the order with the file it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OrderOut {
    pub id: String,
    pub month: String,
    pub cents: i64,
    pub file: String,
    pub file_sha256: String,
    pub produced_by_run_id: String,
}

impl OutputRow for OrderOut {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

#[derive(Debug)]
pub struct Copy;

impl DeterministicTransform for Copy {
    type Input = FileRow<Order>;
    type Output = OrderOut;
    fn name(&self) -> &str {
        "test"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        r: &FileRow<Order>,
        ctx: &TransformContext,
        out: &mut Vec<OrderOut>,
    ) -> Result<(), TransformError> {
        out.push(OrderOut {
            id: r.record.id.clone(),
            month: r.record.day.format("%Y-%m").to_string(),
            cents: r.record.cents,
            file: r.lineage.path.clone(),
            file_sha256: r.lineage.sha256.clone(),
            produced_by_run_id: ctx.run_id().to_string(),
        });
        Ok(())
    }
}

pub fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A control plane with an in-memory store, staging and target.
pub struct World {
    pub store: Arc<MemoryStore>,
    pub staging: Arc<MemorySink<OrderOut>>,
    pub target: Arc<MemoryPublisher<OrderOut>>,
    pub control: Control,
}

impl World {
    pub fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let staging = Arc::new(MemorySink::new("staging"));
        let target = Arc::new(MemoryPublisher::new("testkit_target", &staging));
        let control = Control::new(Arc::<MemoryStore>::clone(&store))
            .with_clock(Arc::new(FixedClock(now())))
            .with_target(Arc::<MemoryPublisher<OrderOut>>::clone(&target))
            .expect("a control plane");
        Self {
            store,
            staging,
            target,
            control,
        }
    }

    /// Approves, submits and runs `manifest` over `source`.
    pub async fn run(
        &self,
        manifest: RunManifest,
        source: Arc<dyn BackfillSource<FileRow<Order>>>,
    ) -> Result<RunReport, Error> {
        let approved = manifest.approve("owner", now())?;
        self.control.submit(&approved).await?;
        let executor = Executor::builder(
            self.control.clone(),
            source,
            Arc::new(Copy),
            Arc::<MemorySink<OrderOut>>::clone(&self.staging),
            Arc::<MemoryPublisher<OrderOut>>::clone(&self.target),
        )
        .options(RunnerOptions::worker("files-test"))
        .build();
        executor.run(approved.run_id()).await
    }

    /// What readers of the target see, sorted by id.
    pub fn visible(&self) -> Vec<OrderOut> {
        let mut rows: Vec<OrderOut> = self.target.snapshot().into_values().flatten().collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows
    }
}

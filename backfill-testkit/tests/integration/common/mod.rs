//! Broken implementations shared by the testkit's own tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::manifest::{InputRange, RunManifest};
use backfill_core::memory::{MemorySink, MemorySource};
use backfill_core::plan::{PlannedChunk, SourcePlan, SourceState};
use backfill_core::sink::{SinkDescriptor, StageReceipt, StageRequest, StagingSink};
use backfill_core::source::BackfillSource;
use backfill_testkit::strategy::Keyed;
use chrono::NaiveDate;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

/// A day of 2025.
pub fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).unwrap()
}

/// Two records a day (keys `a` and `b`) over Q1 2025, the value the day's index.
pub fn records() -> Vec<Keyed<i64>> {
    (0..90u64)
        .flat_map(|i| {
            ["a", "b"].map(|k| Keyed {
                key: k.to_owned(),
                day: day(1, 1) + chrono::Days::new(i),
                value: i as i64,
            })
        })
        .collect()
}

/// A sink that adds to a chunk on re-stage instead of replacing it (it stages the earlier attempt's
/// rows again with the new ones). It keeps its rows in a [`MemorySink`], so a
/// [`MemoryPublisher`](backfill_core::memory::MemoryPublisher) over [`inner`](Self::inner) publishes
/// them.
#[derive(Debug)]
pub struct AppendingSink<R>(pub Arc<MemorySink<R>>);

impl<R: OutputRow> AppendingSink<R> {
    pub fn new() -> Self {
        Self(Arc::new(MemorySink::new("appending")))
    }

    pub fn inner(&self) -> &Arc<MemorySink<R>> {
        &self.0
    }
}

#[async_trait]
impl<R: OutputRow> StagingSink<R> for AppendingSink<R> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal("appending", "broken")
    }
    async fn stage(
        &self,
        req: StageRequest<'_>,
        rows: BoxStream<'_, backfill_core::Result<Vec<R>>>,
    ) -> backfill_core::Result<StageReceipt> {
        let mut all = self.0.chunk_rows(req.run_id, req.chunk_id);
        let new: Vec<R> = rows.try_concat().await?;
        all.extend(new);
        self.0.stage(req, stream::iter([Ok(all)]).boxed()).await
    }
    fn read_staged<'a>(
        &'a self,
        run_id: &'a RunId,
    ) -> BoxStream<'a, backfill_core::Result<Vec<R>>> {
        self.0.read_staged(run_id)
    }
    async fn discard(&self, run_id: &RunId) -> backfill_core::Result<()> {
        self.0.discard(run_id).await
    }
}

/// A sink without fencing: the last writer wins, whatever its attempt.
#[derive(Debug)]
pub struct UnfencedSink<R>(Mutex<BTreeMap<(RunId, ChunkId), Vec<R>>>);

impl<R> Default for UnfencedSink<R> {
    fn default() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }
}

#[async_trait]
impl<R: OutputRow> StagingSink<R> for UnfencedSink<R> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal("unfenced", "broken")
    }
    async fn stage(
        &self,
        req: StageRequest<'_>,
        rows: BoxStream<'_, backfill_core::Result<Vec<R>>>,
    ) -> backfill_core::Result<StageReceipt> {
        let rows: Vec<R> = rows.try_concat().await?;
        let n = rows.len() as u64;
        self.0
            .lock()
            .unwrap()
            .insert((req.run_id.clone(), req.chunk_id.clone()), rows);
        Ok(StageReceipt {
            rows: n,
            batches: 1,
            ..StageReceipt::default()
        })
    }
    fn read_staged<'a>(
        &'a self,
        run_id: &'a RunId,
    ) -> BoxStream<'a, backfill_core::Result<Vec<R>>> {
        let chunks: Vec<backfill_core::Result<Vec<R>>> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|((r, _), _)| r == run_id)
            .map(|(_, v)| Ok(v.clone()))
            .collect();
        stream::iter(chunks).boxed()
    }
    async fn discard(&self, run_id: &RunId) -> backfill_core::Result<()> {
        self.0.lock().unwrap().retain(|(r, _), _| r != run_id);
        Ok(())
    }
}

/// What a [`BrokenSource`] gets wrong, one contract clause each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Clause 1: every plan labels its chunks with a new counter.
    PlanChanges,
    /// Clause 1: always resolves "current", whatever the manifest pins.
    IgnoresPin,
    /// Clause 2: the last chunk is left out of the plan.
    DropsLastChunk,
    /// Clause 2: chunk ranges tile the input, but each read also returns the next chunk's first
    /// record (an inclusive end).
    ReadsPastTheEnd,
    /// Clause 3: every second read of a chunk returns its records in reverse order.
    ReordersRereads,
    /// Clause 3: yields an empty batch before the records.
    EmptyBatch,
    /// Clause 4: reading consumes records (a queue, a consumer-group commit).
    Consumes,
}

/// A [`MemorySource`] over dates with one [`Bug`].
pub struct BrokenSource<I> {
    inner: MemorySource<I>,
    records: Arc<Mutex<Vec<I>>>,
    bug: Bug,
    plans: AtomicU32,
    reads: Mutex<BTreeMap<String, u32>>,
}

impl<I: Clone + Send + Sync + 'static> BrokenSource<I> {
    pub fn new(inner: MemorySource<I>, records: Vec<I>, bug: Bug) -> Self {
        Self {
            inner,
            records: Arc::new(Mutex::new(records)),
            bug,
            plans: AtomicU32::new(0),
            reads: Mutex::new(BTreeMap::new()),
        }
    }

    /// The records it still holds (for the side-effect observer).
    pub fn records(&self) -> Arc<Mutex<Vec<I>>> {
        Arc::clone(&self.records)
    }
}

impl<I> std::fmt::Debug for BrokenSource<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokenSource")
            .field("bug", &self.bug)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<I: Clone + Send + Sync + 'static> BackfillSource<I> for BrokenSource<I> {
    fn name(&self) -> &str {
        "broken"
    }

    async fn plan(&self, manifest: &RunManifest) -> backfill_core::Result<SourcePlan> {
        let mut plan = self.inner.plan(manifest).await?;
        for c in &mut plan.chunks {
            c.state = SourceState(serde_json::json!({"range": c.range.to_string()}));
        }
        match self.bug {
            Bug::PlanChanges => {
                let n = self.plans.fetch_add(1, Ordering::SeqCst);
                for c in &mut plan.chunks {
                    c.label = format!("{} (plan {n})", c.label);
                }
            }
            Bug::IgnoresPin => plan.snapshot = Some("current".into()),
            Bug::DropsLastChunk => {
                plan.chunks.pop();
            }
            _ => {}
        }
        Ok(plan)
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, backfill_core::Result<Vec<I>>> {
        let times = {
            let mut reads = self.reads.lock().unwrap();
            let n = reads.entry(chunk.id.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let mut wide = chunk.clone();
        if let (Bug::ReadsPastTheEnd, InputRange::Dates { to_exclusive, .. }) =
            (self.bug, &mut wide.range)
        {
            *to_exclusive = *to_exclusive + chrono::Days::new(1);
        }
        let inner = self.inner.read(&wide);
        match self.bug {
            Bug::ReordersRereads if times % 2 == 0 => stream::once(async move {
                let mut all: Vec<I> = inner.try_concat().await?;
                all.reverse();
                Ok(all)
            })
            .boxed(),
            Bug::EmptyBatch => stream::iter([Ok(Vec::new())]).chain(inner).boxed(),
            Bug::Consumes => {
                if let Ok(mut r) = self.records.lock() {
                    r.pop();
                }
                inner
            }
            _ => inner,
        }
    }
}

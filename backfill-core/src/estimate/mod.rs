//! Plan and estimate before approval (the seed's runbook: "estimate cost and duration", "dry run
//! on subset").
//!
//! [`Estimate::resolve`] plans a manifest's input with its source without persisting a plan or
//! reading a record, asks the source how big each chunk is
//! ([`BackfillSource::estimate`]: row counts, offset spans, file sizes), and derives duration and
//! cost from the rates the manifest declares in `safety.cost_model` ([`CostModel`]) and the
//! throughput limits in `safety.limits`. It also reports the plan's coverage of the input range
//! (a gap or an overlap is reported, not raised) and the chunks the source could not size.
//!
//! For a submitted run, [`Control::record_estimate`](crate::control::Control::record_estimate)
//! keeps the estimate as evidence ([`EvidenceRecord::Estimated`](crate::evidence::EvidenceRecord::Estimated))
//! and sets the `backfill_cost_estimate` gauge; the executor does the same when it starts a run
//! and refuses, before any chunk, a run whose estimate is over `safety.max_cost_usd`. While the
//! run reads, what it has read so far is held against the same ceiling: records as they are read,
//! each chunk's estimated bytes once, when its read starts (a chunk whose bytes would take the run
//! over is not read). Workers in other processes keep their own count: the ceiling holds per
//! process from what the ledger says was done.
//!
//! A dry run on a subset: a manifest in [`ExecutionMode::DryRun`](crate::context::ExecutionMode)
//! naming chunk labels in `safety.dry_run_chunks` plans the whole input (and checks its
//! coverage), then runs only those chunks through transform, staging and validation; a dry run is
//! never published.
//!
//! ```
//! use backfill_core::estimate::{CostModel, Estimate, Rate};
//! use backfill_core::memory::MemorySource;
//! use backfill_core::prelude::*;
//! use chrono::{NaiveDate, TimeZone, Utc};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let d = |m, d| NaiveDate::from_ymd_opt(2025, m, d).unwrap();
//! // 59 records over January and February: one chunk per month.
//! let records: Vec<NaiveDate> = (0..59).map(|i| d(1, 1) + chrono::Days::new(i)).collect();
//! let source = MemorySource::by_date(records, |r| *r).snapshot("s1");
//!
//! let mut m = RunManifest::new("bf-estimate-doc", RunKind::Backfill, ExecutionMode::Backfill);
//! m.source.snapshot = Some("s1".into());
//! m.source.range = Some(InputRange::Dates { from: d(1, 1), to_exclusive: d(3, 1) });
//! m.safety.max_cost_usd = Some(1);
//! m.safety.cost_model = Some(CostModel {
//!     rows_per_second: Rate::new(10.0),
//!     usd_per_million_rows: Rate::new(2_000.0),
//!     ..CostModel::default()
//! });
//!
//! let now = Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap();
//! let estimate = Estimate::resolve(&m, &source, now).await?;
//! assert_eq!(estimate.chunks.len(), 2);
//! assert_eq!(estimate.records, 59);
//! assert!(estimate.coverage.is_exact());
//! assert_eq!(estimate.seconds, Some(5.9));
//! // 59 records at $2,000 per million: $0.118, under the $1 ceiling.
//! assert!(estimate.check_budget().is_ok());
//! println!("{estimate}");
//! # Ok::<(), backfill_core::Error>(())
//! # }).unwrap();
//! ```

mod rates;
mod subset;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use rates::{CostModel, Rate};
pub(crate) use subset::dry_run_subset;

use crate::error::{Error, Result};
use crate::ids::{ChunkId, RunId};
use crate::manifest::{ManifestDigest, RunManifest};
use crate::plan::{PlannedChunk, ResolvedPlan};
use crate::source::BackfillSource;

/// What a source can tell about one chunk's size without reading its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SizeEstimate {
    /// Input records, if the source can count them (a table's row count, an offset span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Input bytes, if the source can size them (file sizes, table statistics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl SizeEstimate {
    /// Nothing known.
    pub fn unknown() -> Self {
        Self::default()
    }

    /// What the plan recorded for the chunk ([`PlannedChunk::estimate`]), if anything.
    pub fn from_plan(chunk: &PlannedChunk) -> Self {
        chunk.estimate.map_or_else(Self::unknown, |e| Self {
            records: Some(e.records),
            bytes: e.bytes,
        })
    }

    /// A record count.
    pub fn records(records: u64) -> Self {
        Self {
            records: Some(records),
            bytes: None,
        }
    }

    /// A byte size.
    pub fn bytes(bytes: u64) -> Self {
        Self {
            records: None,
            bytes: Some(bytes),
        }
    }

    /// Adds a byte size.
    pub fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes = Some(bytes);
        self
    }
}

/// One chunk of an [`Estimate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLine {
    /// Chunk id (the one the run's plan will have: ids derive from run id and range).
    pub id: ChunkId,
    /// Label.
    pub label: String,
    /// Exact input range, as text.
    pub range: String,
    /// What the source said about its size.
    #[serde(flatten)]
    pub size: SizeEstimate,
}

/// How the plan's chunks cover the manifest's input range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Coverage {
    /// Every input record in exactly one chunk.
    Exact,
    /// The first gap, overlap or overreach found; a run of this plan is refused before any chunk.
    Problem {
        /// What is wrong, such as `gap [2025-02-01, 2025-03-01)`.
        detail: String,
    },
    /// The manifest names no input range (a run of it is refused by `check`).
    NoRange,
}

impl Coverage {
    /// Whether the chunks tile the input range exactly.
    pub fn is_exact(&self) -> bool {
        matches!(self, Self::Exact)
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact => f.write_str("exact, no gaps or overlaps"),
            Self::Problem { detail } => write!(f, "PROBLEM: {detail}"),
            Self::NoRange => f.write_str("no input range"),
        }
    }
}

/// What planning tells before a run: chunks, input size, duration and cost, coverage.
///
/// `records` and `bytes` sum what the source could size; the chunks it could not are named in
/// `unsized_records` (records unknown) and `unsized_bytes`, and where any are, duration and cost are
/// lower bounds. All numbers are finite (rates are, and sums of counts are), so equality is total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The run.
    pub run_id: RunId,
    /// The manifest estimated.
    pub manifest_digest: ManifestDigest,
    /// The source's name.
    pub source: String,
    /// The snapshot the source resolved.
    pub snapshot: Option<String>,
    /// The chunks that would run (the named subset for a dry run on a subset).
    pub chunks: Vec<ChunkLine>,
    /// The whole plan's coverage of the input range.
    pub coverage: Coverage,
    /// For a dry run on a subset: the labels run, of `planned` chunks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subset: Vec<String>,
    /// Chunks in the whole plan.
    pub planned: usize,
    /// Input records over the chunks the source could count.
    pub records: u64,
    /// Input bytes over the chunks the source could size.
    pub bytes: u64,
    /// Labels of chunks whose records the source could not count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsized_records: Vec<String>,
    /// Labels of chunks whose bytes the source could not size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsized_bytes: Vec<String>,
    /// Seconds the run takes at least: the slowest of the declared rates (per chunk worker, times
    /// `max_chunks_in_parallel`) and the throughput limits, plus the pauses between windows.
    /// `None` when neither rates nor limits say anything about time.
    pub seconds: Option<f64>,
    /// US dollars, from the declared prices; `None` when the manifest declares none.
    pub cost_usd: Option<f64>,
    /// The manifest's ceiling, `safety.max_cost_usd`.
    pub max_cost_usd: Option<u64>,
}

// Every float in an estimate is finite or a sum/product of finite non-negative numbers (never NaN).
impl Eq for Estimate {}

impl Estimate {
    /// Plans `manifest`'s input with `source` (nothing is persisted, nothing is read) and
    /// estimates it. A plan whose snapshot is not the manifest's pin is refused
    /// ([`Error::SnapshotMismatch`]); a coverage problem is reported in [`coverage`](Self::coverage).
    pub async fn resolve<I: 'static>(
        manifest: &RunManifest,
        source: &dyn BackfillSource<I>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let planned = source.plan(manifest).await?;
        let digest = manifest.digest();
        let whole = ResolvedPlan::new(&manifest.run_id, digest.clone(), planned.clone(), now);
        whole.check_pin(manifest.source.snapshot.as_deref())?;
        let coverage = coverage_of(manifest, &whole);
        let total = whole.chunks.len();
        // A subset is planned as the run will plan it: its chunks numbered from 0.
        let plan = if manifest.safety.dry_run_chunks.is_empty() {
            whole
        } else {
            let part = subset::select(manifest, planned)?;
            ResolvedPlan::new(&manifest.run_id, digest, part, now)
        };
        Self::build(manifest, &plan, total, coverage, source).await
    }

    /// Estimates an already resolved (and persisted) plan, as the executor does when it starts.
    pub async fn of_plan<I: 'static>(
        manifest: &RunManifest,
        plan: &ResolvedPlan,
        source: &dyn BackfillSource<I>,
    ) -> Result<Self> {
        let subset = !manifest.safety.dry_run_chunks.is_empty();
        // A stored subset plan was checked for coverage before it was cut down.
        let coverage = if subset {
            Coverage::Exact
        } else {
            coverage_of(manifest, plan)
        };
        Self::build(manifest, plan, plan.chunks.len(), coverage, source).await
    }

    async fn build<I: 'static>(
        m: &RunManifest,
        plan: &ResolvedPlan,
        planned: usize,
        coverage: Coverage,
        source: &dyn BackfillSource<I>,
    ) -> Result<Self> {
        let mut chunks = Vec::with_capacity(plan.chunks.len());
        let (mut records, mut bytes) = (0u64, 0u64);
        let (mut unsized_records, mut unsized_bytes) = (Vec::new(), Vec::new());
        for c in &plan.chunks {
            let size = source.estimate(c).await?;
            match size.records {
                Some(n) => records = records.saturating_add(n),
                None => unsized_records.push(c.label.clone()),
            }
            match size.bytes {
                Some(n) => bytes = bytes.saturating_add(n),
                None => unsized_bytes.push(c.label.clone()),
            }
            chunks.push(ChunkLine {
                id: c.id.clone(),
                label: c.label.clone(),
                range: c.range.to_string(),
                size,
            });
        }
        let model = m.safety.cost_model.clone().unwrap_or_default();
        let seconds = duration(m, &model, chunks.len(), records, bytes);
        let cost_usd = model.prices().then(|| model.cost(records, bytes));
        Ok(Self {
            run_id: m.run_id.clone(),
            manifest_digest: plan.manifest_digest.clone(),
            source: source.name().to_owned(),
            snapshot: plan.snapshot.clone(),
            subset: if m.safety.dry_run_chunks.is_empty() {
                Vec::new()
            } else {
                chunks.iter().map(|c| c.label.clone()).collect()
            },
            chunks,
            coverage,
            planned,
            records,
            bytes,
            unsized_records,
            unsized_bytes,
            seconds,
            cost_usd,
            max_cost_usd: m.safety.max_cost_usd,
        })
    }

    /// Whether every chunk was sized (records, and bytes where bytes are priced or rated), so
    /// that duration and cost are estimates rather than lower bounds.
    pub fn complete(&self) -> bool {
        self.unsized_records.is_empty()
    }

    /// Refuses an estimate over `safety.max_cost_usd`: [`Error::LimitExceeded`] naming the run,
    /// the limit, the estimate rounded up to whole dollars and the ceiling.
    pub fn check_budget(&self) -> Result<()> {
        let (Some(cost), Some(max)) = (self.cost_usd, self.max_cost_usd) else {
            return Ok(());
        };
        match rates::over(cost, max) {
            Some(value) => Err(Error::LimitExceeded {
                run_id: self.run_id.clone(),
                limit: "safety.max_cost_usd",
                value,
                max,
            }),
            None => Ok(()),
        }
    }
}

fn coverage_of(m: &RunManifest, plan: &ResolvedPlan) -> Coverage {
    match &m.source.range {
        None => Coverage::NoRange,
        Some(range) => match crate::plan::coverage(
            range,
            &plan.chunks.iter().map(|c| &c.range).collect::<Vec<_>>(),
        ) {
            Ok(()) => Coverage::Exact,
            Err(detail) => Coverage::Problem { detail },
        },
    }
}

/// The slowest of what the rates and limits allow, plus the pauses between windows.
fn duration(
    m: &RunManifest,
    model: &CostModel,
    chunks: usize,
    records: u64,
    bytes: u64,
) -> Option<f64> {
    let limits = &m.safety.limits;
    let workers = (limits.max_chunks_in_parallel.max(1) as usize).min(chunks.max(1)) as f64;
    let per_second = |rate: Option<Rate>| rate.map(Rate::get).filter(|r| *r > 0.0);
    let per_minute = |limit: Option<u64>| limit.filter(|n| *n > 0).map(|n| n as f64 / 60.0);
    let spans = [
        per_second(model.rows_per_second).map(|r| records as f64 / (r * workers)),
        per_second(model.bytes_per_second).map(|r| bytes as f64 / (r * workers)),
        per_minute(limits.max_rows_per_minute).map(|r| records as f64 / r),
        per_minute(limits.max_bytes_per_minute).map(|r| bytes as f64 / r),
        limits
            .max_sink_commits_per_hour
            .filter(|n| *n > 0)
            .map(|n| chunks as f64 / n as f64 * 3600.0),
    ];
    let work = spans.into_iter().flatten().reduce(f64::max);
    let pauses = (chunks as f64 / workers).ceil() * limits.pause_between_windows_ms as f64 / 1000.0;
    match work {
        Some(w) => Some(w + pauses),
        None if pauses > 0.0 => Some(pauses),
        None => None,
    }
}

/// The cost of what the run has read so far, held against `safety.max_cost_usd` while it reads:
/// records as they are read, and each chunk's estimated bytes once, when its read starts (the
/// runner counts records; only the source knows bytes, so a chunk is charged what the estimate
/// says it holds before any of it is read).
#[derive(Debug)]
pub(crate) struct CostMeter {
    fixed: f64,
    per_record: f64,
    per_byte: f64,
    max: u64,
    records: AtomicU64,
    /// Estimated bytes per chunk, and the chunks charged so far with their bytes' total.
    sizes: BTreeMap<ChunkId, u64>,
    charged: Mutex<(BTreeSet<ChunkId>, u64)>,
}

impl CostMeter {
    /// A meter when the manifest has both a ceiling and prices, starting from the chunks finished
    /// before (`done`: their ids and input records).
    pub(crate) fn new<'a>(
        m: &RunManifest,
        estimate: &Estimate,
        done: impl IntoIterator<Item = (&'a ChunkId, u64)>,
    ) -> Option<Self> {
        let max = m.safety.max_cost_usd?;
        let model = m.safety.cost_model.as_ref().filter(|c| c.prices())?;
        let sizes: BTreeMap<ChunkId, u64> = estimate
            .chunks
            .iter()
            .filter_map(|c| Some((c.id.clone(), c.size.bytes?)))
            .collect();
        let (mut ids, mut bytes, mut records) = (BTreeSet::new(), 0u64, 0u64);
        for (id, input) in done {
            records = records.saturating_add(input);
            bytes = bytes.saturating_add(sizes.get(id).copied().unwrap_or(0));
            ids.insert(id.clone());
        }
        Some(Self {
            fixed: model.usd_fixed.map_or(0.0, Rate::get),
            per_record: model.usd_per_million_rows.map_or(0.0, Rate::get) / 1e6,
            per_byte: model.usd_per_gb.map_or(0.0, Rate::get) / 1e9,
            max,
            records: AtomicU64::new(records),
            sizes,
            charged: Mutex::new((ids, bytes)),
        })
    }

    fn bytes(&self) -> u64 {
        self.charged.lock().map_or(0, |c| c.1)
    }

    /// The estimated bytes of `chunk` (0 when the estimate did not size it).
    pub(crate) fn chunk_bytes(&self, chunk: &ChunkId) -> u64 {
        self.sizes.get(chunk).copied().unwrap_or(0)
    }

    /// Refuses when `records` read and `bytes` charged, over the whole run, cost more than the
    /// ceiling.
    pub(crate) fn check_totals(&self, run_id: &RunId, records: u64, bytes: u64) -> Result<()> {
        self.check(run_id, records, bytes)
    }

    fn check(&self, run_id: &RunId, records: u64, bytes: u64) -> Result<()> {
        let cost = self.fixed + records as f64 * self.per_record + bytes as f64 * self.per_byte;
        match rates::over(cost, self.max) {
            Some(value) => Err(Error::LimitExceeded {
                run_id: run_id.clone(),
                limit: "safety.max_cost_usd",
                value,
                max: self.max,
            }),
            None => Ok(()),
        }
    }

    /// Charges a chunk's estimated bytes as its read starts (once per chunk, however many
    /// attempts); refuses a chunk that would take the run over the ceiling.
    pub(crate) fn start_chunk(&self, run_id: &RunId, chunk: &ChunkId) -> Result<()> {
        let size = self.sizes.get(chunk).copied().unwrap_or(0);
        let bytes = match self.charged.lock() {
            Ok(mut c) => {
                if c.0.insert(chunk.clone()) {
                    c.1 = c.1.saturating_add(size);
                }
                c.1
            }
            Err(_) => return Err(Error::adapter("runner", "cost meter poisoned")),
        };
        self.check(run_id, self.records.load(Ordering::SeqCst), bytes)
    }

    /// Counts `records` more input records read; refuses when what was read so far costs more
    /// than the ceiling ([`Error::LimitExceeded`] on `safety.max_cost_usd`, whole dollars rounded
    /// up).
    pub(crate) fn add(&self, run_id: &RunId, records: u64) -> Result<()> {
        let read = self.records.fetch_add(records, Ordering::SeqCst) + records;
        self.check(run_id, read, self.bytes())
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} chunks at snapshot {} from {}",
            self.run_id,
            self.chunks.len(),
            self.snapshot.as_deref().unwrap_or("-"),
            self.source
        )?;
        if !self.subset.is_empty() {
            writeln!(
                f,
                "dry run on {} of {} chunks: {}",
                self.subset.len(),
                self.planned,
                self.subset.join(", ")
            )?;
        }
        for c in &self.chunks {
            let opt = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
            writeln!(
                f,
                "  {} {:<12} {} {} records {} bytes",
                c.id,
                c.label,
                c.range,
                opt(c.size.records),
                opt(c.size.bytes)
            )?;
        }
        writeln!(f, "coverage: {}", self.coverage)?;
        write!(
            f,
            "estimate: {} input records, {} bytes",
            self.records, self.bytes
        )?;
        match self.seconds {
            Some(s) => write!(f, ", ~{s:.0} s")?,
            None => write!(
                f,
                ", duration unknown (declare safety.cost_model.rows_per_second)"
            )?,
        }
        match self.cost_usd {
            Some(c) => write!(f, ", ~${c:.2}")?,
            None => write!(f, ", cost unknown (declare safety.cost_model prices)")?,
        }
        match self.max_cost_usd {
            Some(max) => write!(
                f,
                " (ceiling ${max}{})",
                if self.check_budget().is_err() {
                    ": OVER"
                } else {
                    ""
                }
            )?,
            None => write!(f, " (no ceiling)")?,
        }
        if !self.unsized_records.is_empty() {
            write!(
                f,
                "\nlower bounds: the source could not count the records of {}",
                self.unsized_records.join(", ")
            )?;
        }
        Ok(())
    }
}

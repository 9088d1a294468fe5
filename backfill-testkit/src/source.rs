//! Checks of the [`BackfillSource`] contract (backfill-core `source.rs`, clauses 1–4).
//!
//! A [`SourceHarness`] builds a [`SourceFixture`] per check: the source, a manifest whose input range
//! holds records, how to compare records, and optionally how to observe the underlying data (a row
//! count or digest of the table, the committed offsets of a consumer group) so that reading can be
//! shown to change nothing.
//!
//! | check | clause |
//! |---|---|
//! | [`plan_is_deterministic`] | 1: the same manifest gives the same plan, source states included |
//! | [`pinned_snapshot_is_honoured`] | 1: a plan for a manifest pinning a snapshot passes [`ResolvedPlan::check_pin`] |
//! | [`chunks_cover_the_input_exactly`] | 2: chunk ranges tile the input range ([`coverage`]); reads add up to the expected count |
//! | [`rereads_are_identical`] | 3: a chunk read twice (the second time from its persisted, JSON round-tripped form) gives the same records in the same order |
//! | [`batches_are_not_empty`] | 3: `read` yields non-empty batches |
//! | [`reads_have_no_side_effects`] | 4: the observed source is the same before and after reading every chunk |
//!
//! Clause 5 (transient errors are [`ErrorKind::Transient`](backfill_core::ErrorKind)) needs a failing
//! service and is left to adapters' own tests.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::manifest::{InputRange, RunManifest};
use backfill_core::plan::{coverage, PlannedChunk, ResolvedPlan, SourcePlan};
use backfill_core::source::BackfillSource;
use chrono::{TimeZone, Utc};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::TryStreamExt;

use crate::conformance::{ensure, fail, finish, note, op, unknown, CheckResult};
use crate::ConformanceFailure;

type Same<I> = Arc<dyn Fn(&I, &I) -> bool + Send + Sync>;
type Show<I> = Arc<dyn Fn(&I) -> String + Send + Sync>;
type Observe = Arc<dyn Fn() -> BoxFuture<'static, backfill_core::Result<String>> + Send + Sync>;

/// What the source checks run against: a source, a manifest over records it holds, and how to
/// compare records and observe the source.
pub struct SourceFixture<I> {
    source: Arc<dyn BackfillSource<I>>,
    manifest: RunManifest,
    same: Same<I>,
    show: Show<I>,
    observe: Option<Observe>,
    expected_records: Option<u64>,
    pin: Option<String>,
}

impl<I> fmt::Debug for SourceFixture<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFixture")
            .field("source", &self.source)
            .field("run_id", &self.manifest.run_id)
            .field("range", &self.manifest.source.range)
            .field("expected_records", &self.expected_records)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl<I: PartialEq + fmt::Debug + 'static> SourceFixture<I> {
    /// Checks `source` with `manifest` (its `source.range` must hold records), comparing records
    /// with `==` and showing them with `Debug`.
    pub fn new(source: Arc<dyn BackfillSource<I>>, manifest: RunManifest) -> Self {
        Self::compared_by(
            source,
            manifest,
            |a: &I, b: &I| a == b,
            |r: &I| format!("{r:?}"),
        )
    }
}

impl<I: 'static> SourceFixture<I> {
    /// For records without `PartialEq` or `Debug`: two records are the same when their
    /// `fingerprint`s are (a stable encoding, a hash of the payload and headers).
    pub fn with_fingerprint(
        source: Arc<dyn BackfillSource<I>>,
        manifest: RunManifest,
        fingerprint: impl Fn(&I) -> String + Send + Sync + 'static,
    ) -> Self {
        let fingerprint = Arc::new(fingerprint);
        let show = Arc::clone(&fingerprint);
        Self::compared_by(
            source,
            manifest,
            move |a: &I, b: &I| fingerprint(a) == fingerprint(b),
            move |r: &I| show(r),
        )
    }

    fn compared_by(
        source: Arc<dyn BackfillSource<I>>,
        manifest: RunManifest,
        same: impl Fn(&I, &I) -> bool + Send + Sync + 'static,
        show: impl Fn(&I) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            source,
            manifest,
            same: Arc::new(same),
            show: Arc::new(show),
            observe: None,
            expected_records: None,
            pin: None,
        }
    }

    /// How to observe the data behind the source (a row count and digest of the table, a consumer
    /// group's committed offsets, the file listing): [`reads_have_no_side_effects`] calls it before
    /// and after reading every chunk and wants the same answer. Without it that check is skipped
    /// with a note.
    pub fn observe<F, Fut>(mut self, observe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = backfill_core::Result<String>> + Send + 'static,
    {
        self.observe = Some(Arc::new(move || observe().boxed()));
        self
    }

    /// How many records the manifest's input range holds: [`chunks_cover_the_input_exactly`]
    /// wants the chunks' reads to add up to it (each record in exactly one chunk).
    pub fn expect_records(mut self, n: u64) -> Self {
        self.expected_records = Some(n);
        self
    }

    /// The snapshot (an id, or a ref such as a tag) [`pinned_snapshot_is_honoured`] pins; without
    /// it, the check pins what an unpinned plan resolved. Give an older snapshot than the current
    /// one to prove the pin is read, not ignored.
    pub fn pin(mut self, snapshot: impl Into<String>) -> Self {
        self.pin = Some(snapshot.into());
        self
    }

    /// The source.
    pub fn source(&self) -> &Arc<dyn BackfillSource<I>> {
        &self.source
    }

    /// The manifest.
    pub fn manifest(&self) -> &RunManifest {
        &self.manifest
    }
}

/// Builds a fresh source over known data per check.
#[async_trait]
pub trait SourceHarness: Send + Sync + 'static {
    /// The source's record type.
    type Record: Send + Sync + 'static;
    /// A fresh source isolated under `namespace`, with its fixture.
    async fn build(&self, namespace: &str) -> backfill_core::Result<SourceFixture<Self::Record>>;
    /// Drops the namespace. Called only when the check passed.
    async fn teardown(&self, namespace: &str) -> backfill_core::Result<()>;
}

/// The checks of this suite, by name.
pub const CHECKS: &[&str] = &[
    "plan_is_deterministic",
    "pinned_snapshot_is_honoured",
    "chunks_cover_the_input_exactly",
    "rereads_are_identical",
    "batches_are_not_empty",
    "reads_have_no_side_effects",
];

/// Runs one check with a fresh namespace from `harness`; the namespace is torn down only when the
/// check passes.
pub async fn run_check<H: SourceHarness + ?Sized>(harness: &H, check: &str) -> CheckResult {
    let name = CHECKS
        .iter()
        .find(|c| **c == check)
        .copied()
        .ok_or_else(|| unknown(check))?;
    let ns = crate::namespace_for(name);
    let fixture = op(name, "building the harness", harness.build(&ns).await)?;
    let result = match name {
        "plan_is_deterministic" => plan_is_deterministic(&fixture).await,
        "pinned_snapshot_is_honoured" => pinned_snapshot_is_honoured(&fixture).await,
        "chunks_cover_the_input_exactly" => chunks_cover_the_input_exactly(&fixture).await,
        "rereads_are_identical" => rereads_are_identical(&fixture).await,
        "batches_are_not_empty" => batches_are_not_empty(&fixture).await,
        "reads_have_no_side_effects" => reads_have_no_side_effects(&fixture).await,
        other => Err(unknown(other)),
    };
    finish(name, &ns, result, harness.teardown(&ns)).await
}

/// Runs every check of the suite.
pub async fn run_all<H: SourceHarness + ?Sized>(harness: &H) -> Vec<(&'static str, CheckResult)> {
    let mut out = Vec::new();
    for c in CHECKS {
        out.push((*c, run_check(harness, c).await));
    }
    out
}

async fn plan_of<I: 'static>(
    check: &'static str,
    f: &SourceFixture<I>,
    m: &RunManifest,
) -> Result<ResolvedPlan, ConformanceFailure> {
    let source = op(check, "plan", f.source.plan(m).await)?;
    Ok(resolve(m, source))
}

/// The plan as the runner persists it (deterministic chunk ids, a fixed planning instant).
fn resolve(m: &RunManifest, source: SourcePlan) -> ResolvedPlan {
    let at = Utc
        .with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default();
    ResolvedPlan::new(&m.run_id, m.digest(), source, at)
}

/// Reads a chunk to the end: its batches.
async fn read<I: Send + 'static>(
    check: &'static str,
    f: &SourceFixture<I>,
    chunk: &PlannedChunk,
) -> Result<Vec<Vec<I>>, ConformanceFailure> {
    op(
        check,
        &format!("read chunk {} ({})", chunk.id, chunk.label),
        f.source.read(chunk).try_collect().await,
    )
}

/// Clause 1: planning the same manifest twice gives the same plan: snapshot, chunks, ranges,
/// labels and source states.
pub async fn plan_is_deterministic<I: 'static>(f: &SourceFixture<I>) -> CheckResult {
    const C: &str = "plan_is_deterministic";
    let first = op(C, "plan", f.source.plan(&f.manifest).await)?;
    let second = op(C, "plan again", f.source.plan(&f.manifest).await)?;
    ensure(
        first == second,
        C,
        "plan is deterministic: the same manifest gives the same chunks and source states",
        || {
            let at = first
                .chunks
                .iter()
                .zip(&second.chunks)
                .position(|(a, b)| a != b);
            format!(
                "snapshots {:?} and {:?}; {} and {} chunks; first differing chunk {at:?}: {:?} vs {:?}",
                first.snapshot,
                second.snapshot,
                first.chunks.len(),
                second.chunks.len(),
                at.and_then(|i| first.chunks.get(i)),
                at.and_then(|i| second.chunks.get(i)),
            )
        },
    )
}

/// Clause 1: a manifest pinning a snapshot (the fixture's [`pin`](SourceFixture::pin), or else
/// what an unpinned plan resolved) is planned at that snapshot: the plan passes
/// [`ResolvedPlan::check_pin`].
pub async fn pinned_snapshot_is_honoured<I: 'static>(f: &SourceFixture<I>) -> CheckResult {
    const C: &str = "pinned_snapshot_is_honoured";
    let pin = match (&f.pin, &f.manifest.source.snapshot) {
        (Some(p), _) | (None, Some(p)) => p.clone(),
        (None, None) => {
            let mut unpinned = f.manifest.clone();
            unpinned.source.snapshot = None;
            match op(C, "plan", f.source.plan(&unpinned).await)?.snapshot {
                Some(s) => s,
                None => {
                    note(C, "everything: the source resolves no snapshot");
                    return Ok(());
                }
            }
        }
    };
    let mut pinned = f.manifest.clone();
    pinned.source.snapshot = Some(pin.clone());
    let plan = plan_of(C, f, &pinned).await?;
    plan.check_pin(Some(&pin)).map_err(|e| {
        fail(
            C,
            "when the manifest pins source.snapshot, the plan's snapshot is that pin (or resolved_from names it)",
            e.to_string(),
        )
    })
}

/// Clause 2: the chunks' ranges cover the manifest's input range exactly once (checked with
/// [`coverage`] for ranges that can be compared), and, when the fixture knows how many records the
/// range holds, the chunks' reads add up to that.
pub async fn chunks_cover_the_input_exactly<I: Send + 'static>(
    f: &SourceFixture<I>,
) -> CheckResult {
    const C: &str = "chunks_cover_the_input_exactly";
    const CLAUSE: &str =
        "the chunks' ranges cover the input range, each input record in exactly one chunk";
    let input = f.manifest.source.range.clone().ok_or_else(|| {
        fail(
            C,
            "(setup) the manifest has an input range",
            "no source.range",
        )
    })?;
    let plan = plan_of(C, f, &f.manifest).await?;
    let ranges: Vec<&InputRange> = plan.chunks.iter().map(|c| &c.range).collect();
    coverage(&input, &ranges).map_err(|detail| fail(C, CLAUSE, format!("{input}: {detail}")))?;
    let Some(expected) = f.expected_records else {
        note(
            C,
            "the record count: the fixture does not say how many records the range holds",
        );
        return Ok(());
    };
    let mut read_total = 0u64;
    for chunk in &plan.chunks {
        read_total += read(C, f, chunk)
            .await?
            .iter()
            .map(|b| b.len() as u64)
            .sum::<u64>();
    }
    ensure(read_total == expected, C, CLAUSE, || {
        format!(
            "the {} chunks read {read_total} records, the range holds {expected}",
            plan.chunks.len()
        )
    })
}

/// Clause 3: reading every chunk twice gives the same records in the same order; the second read is
/// of the chunk as persisted (JSON round trip), as a worker on another machine reads it.
pub async fn rereads_are_identical<I: Send + 'static>(f: &SourceFixture<I>) -> CheckResult {
    const C: &str = "rereads_are_identical";
    const CLAUSE: &str =
        "reading a chunk twice gives the same records in the same order, from its persisted state";
    let plan = plan_of(C, f, &f.manifest).await?;
    let mut records = 0usize;
    for chunk in &plan.chunks {
        let first: Vec<I> = read(C, f, chunk).await?.into_iter().flatten().collect();
        let persisted: PlannedChunk = serde_json::to_string(chunk)
            .and_then(|json| serde_json::from_str(&json))
            .map_err(|e| {
                fail(
                    C,
                    "(setup) a planned chunk round-trips through JSON",
                    e.to_string(),
                )
            })?;
        let second: Vec<I> = read(C, f, &persisted)
            .await?
            .into_iter()
            .flatten()
            .collect();
        records += first.len();
        let differ = first.iter().zip(&second).position(|(a, b)| !(f.same)(a, b));
        ensure(
            first.len() == second.len() && differ.is_none(),
            C,
            CLAUSE,
            || {
                format!(
                    "chunk {} ({}): {} then {} records; first difference at {differ:?}: {} vs {}",
                    chunk.id,
                    chunk.label,
                    first.len(),
                    second.len(),
                    differ
                        .and_then(|i| first.get(i))
                        .map_or_else(String::new, |r| (f.show)(r)),
                    differ
                        .and_then(|i| second.get(i))
                        .map_or_else(String::new, |r| (f.show)(r)),
                )
            },
        )?;
    }
    ensure(
        records > 0,
        C,
        "(setup) the manifest's input range holds records",
        || format!("{} chunks read no record", plan.chunks.len()),
    )
}

/// Clause 3: `read` yields a stream of non-empty batches.
pub async fn batches_are_not_empty<I: Send + 'static>(f: &SourceFixture<I>) -> CheckResult {
    const C: &str = "batches_are_not_empty";
    let plan = plan_of(C, f, &f.manifest).await?;
    for chunk in &plan.chunks {
        let batches = read(C, f, chunk).await?;
        let empty = batches.iter().position(Vec::is_empty);
        ensure(
            empty.is_none(),
            C,
            "read yields a stream of non-empty batches",
            || {
                format!(
                    "chunk {} ({}): batch {empty:?} of {} is empty",
                    chunk.id,
                    chunk.label,
                    batches.len()
                )
            },
        )?;
    }
    Ok(())
}

/// Clause 4: reading every chunk leaves the observed source as it was (no deletes, no commits).
pub async fn reads_have_no_side_effects<I: Send + 'static>(f: &SourceFixture<I>) -> CheckResult {
    const C: &str = "reads_have_no_side_effects";
    let Some(observe) = &f.observe else {
        note(
            C,
            "everything: the fixture gives no way to observe the source",
        );
        return Ok(());
    };
    let before = op(C, "observe the source", observe().await)?;
    let plan = plan_of(C, f, &f.manifest).await?;
    for chunk in &plan.chunks {
        read(C, f, chunk).await?;
    }
    let after = op(C, "observe the source", observe().await)?;
    ensure(
        before == after,
        C,
        "read has no side effects on the source",
        || format!("before reading: {before}; after reading every chunk: {after}"),
    )
}

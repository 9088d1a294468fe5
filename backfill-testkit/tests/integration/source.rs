//! The source suite: backfill-core's memory source passes it; a source with one broken clause fails
//! the check of that clause.

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::context::ExecutionMode;
use backfill_core::memory::{ChunkBy, MemorySource};
use backfill_testkit::strategy::{valid_manifest, Keyed};
use backfill_testkit::{SourceFixture, SourceHarness};
use common::{day, records, BrokenSource, Bug};

type Rec = Keyed<i64>;

/// Ten-day chunks in batches of seven, at the snapshot `valid_manifest` pins (`memory`).
fn memory_source() -> MemorySource<Rec> {
    MemorySource::by_date(records(), |r: &Rec| r.day)
        .chunk_by(ChunkBy::Days(10))
        .batch_size(7)
}

fn manifest() -> backfill_core::manifest::RunManifest {
    valid_manifest(
        "bf-source",
        ExecutionMode::Backfill,
        day(1, 1),
        day(4, 1),
        None,
    )
}

/// The user-side harness: a memory source over known records, observed through its record count.
struct Memory;

#[async_trait]
impl SourceHarness for Memory {
    type Record = Rec;
    async fn build(&self, _: &str) -> backfill_core::Result<SourceFixture<Rec>> {
        let data = Arc::new(records());
        Ok(SourceFixture::new(Arc::new(memory_source()), manifest())
            .expect_records(180)
            .observe(move || {
                let data = Arc::clone(&data);
                async move { Ok(format!("{} records", data.len())) }
            }))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

backfill_testkit::source_conformance!(memory_source, || Memory);

/// The same source, compared through a fingerprint (for records without `PartialEq`).
struct Fingerprinted;

#[async_trait]
impl SourceHarness for Fingerprinted {
    type Record = Rec;
    async fn build(&self, _: &str) -> backfill_core::Result<SourceFixture<Rec>> {
        Ok(SourceFixture::with_fingerprint(
            Arc::new(memory_source()),
            manifest(),
            |r: &Rec| format!("{}|{}|{}", r.key, r.day, r.value),
        ))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_fingerprinted_fixture_passes_and_skips_what_it_cannot_check() {
    for (check, result) in backfill_testkit::source::run_all(&Fingerprinted).await {
        result.unwrap_or_else(|f| panic!("{check}: {f}"));
    }
}

struct Broken(Bug);

#[async_trait]
impl SourceHarness for Broken {
    type Record = Rec;
    async fn build(&self, _: &str) -> backfill_core::Result<SourceFixture<Rec>> {
        let source = BrokenSource::new(memory_source(), records(), self.0);
        let held = source.records();
        Ok(SourceFixture::new(Arc::new(source), manifest())
            .expect_records(180)
            .pin("memory")
            .observe(move || {
                let n = held.lock().map(|r| r.len()).unwrap_or_default();
                async move { Ok(format!("{n} records")) }
            }))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_broken_clause_fails_its_check() {
    for (bug, check, clause) in [
        (Bug::PlanChanges, "plan_is_deterministic", "deterministic"),
        (Bug::IgnoresPin, "pinned_snapshot_is_honoured", "pins"),
        (
            Bug::DropsLastChunk,
            "chunks_cover_the_input_exactly",
            "cover",
        ),
        (
            Bug::ReadsPastTheEnd,
            "chunks_cover_the_input_exactly",
            "exactly one chunk",
        ),
        (Bug::ReordersRereads, "rereads_are_identical", "same order"),
        (Bug::EmptyBatch, "batches_are_not_empty", "non-empty"),
        (
            Bug::Consumes,
            "reads_have_no_side_effects",
            "no side effects",
        ),
    ] {
        let f = backfill_testkit::source::run_check(&Broken(bug), check)
            .await
            .expect_err(&format!("{bug:?} passes {check}"));
        assert_eq!(f.check, check, "{bug:?}: {f}");
        assert!(f.clause.contains(clause), "{bug:?}: {f}");
    }
}

#[tokio::test]
async fn a_source_read_past_its_chunk_is_caught_by_the_record_count_not_the_ranges() {
    let f = backfill_testkit::source::run_check(
        &Broken(Bug::ReadsPastTheEnd),
        "chunks_cover_the_input_exactly",
    )
    .await
    .unwrap_err();
    assert!(
        f.details.contains("read 196 records, the range holds 180"),
        "{f}"
    );
}

//! Built-in validators, each shown failing on bad staged data and passing on good data.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use backfill_core::memory::{MemoryPublisher, MemorySink};
use backfill_core::prelude::*;
use backfill_core::sink::StageRequest;
use backfill_core::store::ChunkRecord;
use backfill_core::validate::*;
use common::*;
use futures::stream::{self, StreamExt};

fn row(account: &str, d: u32, cents: i64) -> Row {
    let day = day(2025, 1, d);
    Row {
        id: format!("{account}/{day}"),
        account: account.into(),
        day,
        month: "2025-01".into(),
        cents,
        run_id: "bf-v".into(),
    }
}

struct Fixture {
    sink: MemorySink<Row>,
    publisher: MemoryPublisher<Row>,
    manifest: RunManifest,
    ledger: PartitionDigests,
    chunks: Vec<ChunkRecord>,
    artifact: backfill_core::publish::ChunkArtifact,
    accepted: Option<RunId>,
}

impl Fixture {
    async fn new(rows: Vec<Row>) -> Self {
        let sink = MemorySink::new("staging");
        let m = manifest("bf-v");
        let ctx = TransformContext::for_manifest(&m, at());
        let ledger = PartitionDigests::of_rows(&rows);
        let receipt = sink
            .stage(
                StageRequest {
                    run_id: &m.run_id,
                    chunk_id: &"c0".into(),
                    attempt: 1,
                    lineage: ctx.lineage(),
                },
                stream::iter([Ok(rows)]).boxed(),
            )
            .await
            .unwrap();
        let publisher = MemoryPublisher::new("amounts_daily", &sink);
        Self {
            sink,
            publisher,
            manifest: m,
            ledger,
            chunks: Vec::new(),
            artifact: backfill_core::publish::ChunkArtifact {
                chunk_id: "c0".into(),
                attempt: 1,
                rows: receipt.rows,
                artifact: receipt.artifact,
            },
            accepted: None,
        }
    }

    async fn check(&self, v: &dyn Validator<Row>) -> ValidationOutcome {
        let cx = ValidationContext {
            run_id: &self.manifest.run_id,
            manifest: &self.manifest,
            chunks: &self.chunks,
            ledger: &self.ledger,
            staged: &self.sink,
            current: &self.publisher,
            accepted: self.accepted.as_ref(),
        };
        v.validate(&cx).await.unwrap()
    }
}

fn good() -> Vec<Row> {
    vec![row("A", 1, 10), row("B", 1, 20), row("A", 2, 30)]
}

#[tokio::test]
async fn unique_key() {
    let v = UniqueKey::new("account+day", |r: &Row| (r.account.clone(), r.day));
    assert_eq!(
        Fixture::new(good()).await.check(&v).await.verdict,
        Verdict::Pass
    );
    let mut bad = good();
    bad.push(row("B", 1, 99));
    let out = Fixture::new(bad).await.check(&v).await;
    assert_eq!(out.verdict, Verdict::Fail);
    assert_eq!(out.details["failing"], 1);
    assert!(out.details["samples"][0].as_str().unwrap().contains('B'));
}

#[tokio::test]
async fn not_null() {
    let v = NotNull::new("account", |r: &Row| !r.account.is_empty());
    assert_eq!(
        Fixture::new(good()).await.check(&v).await.verdict,
        Verdict::Pass
    );
    let mut bad = good();
    bad[1].account.clear();
    assert_eq!(
        Fixture::new(bad).await.check(&v).await.verdict,
        Verdict::Fail
    );
}

#[tokio::test]
async fn in_range() {
    let v = InRange::new("cents", |r: &Row| Some(r.cents), 0..=1_000);
    assert_eq!(
        Fixture::new(good()).await.check(&v).await.verdict,
        Verdict::Pass
    );
    let mut bad = good();
    bad[0].cents = -5;
    let out = Fixture::new(bad).await.check(&v).await;
    assert_eq!(out.verdict, Verdict::Fail);
    assert_eq!(out.details["samples"][0], "-5");
}

#[tokio::test]
async fn accepted_values() {
    let v = AcceptedValues::new("account", |r: &Row| r.account.as_str(), ["A", "B"]);
    assert_eq!(
        Fixture::new(good()).await.check(&v).await.verdict,
        Verdict::Pass
    );
    let mut bad = good();
    bad[2].account = "Z".into();
    let out = Fixture::new(bad).await.check(&v).await;
    assert_eq!(out.verdict, Verdict::Fail);
    assert_eq!(out.details["samples"][0], "Z");
}

#[tokio::test]
async fn count_tolerance() {
    let f = Fixture::new(good()).await;
    assert_eq!(
        f.check(&CountTolerance::new(Expected::Rows(3)))
            .await
            .verdict,
        Verdict::Pass
    );
    assert_eq!(
        f.check(&CountTolerance::new(Expected::Rows(4)))
            .await
            .verdict,
        Verdict::Fail
    );
    assert_eq!(
        f.check(&CountTolerance::new(Expected::Rows(4)).with_tolerance(1))
            .await
            .verdict,
        Verdict::Pass
    );
    // Nothing accepted yet: nothing to compare with.
    assert_eq!(
        f.check(&CountTolerance::new(Expected::CurrentOutput))
            .await
            .verdict,
        Verdict::Pass
    );
    // An accepted run whose partitions are empty: 3 staged rows against 0.
    let f = Fixture {
        accepted: Some("bf-old".into()),
        ..f
    };
    assert_eq!(
        f.check(&CountTolerance::new(Expected::CurrentOutput))
            .await
            .verdict,
        Verdict::Fail
    );
}

#[tokio::test]
async fn digest_is_recomputed_from_staging_not_trusted_from_the_ledger() {
    let mut f = Fixture::new(good()).await;
    assert_eq!(f.check(&DigestMatchesLedger).await.verdict, Verdict::Pass);
    // The ledger says one thing, staging holds another (a row lost on the way to storage).
    f.ledger = PartitionDigests::of_rows(&[good(), vec![row("C", 3, 1)]].concat());
    let out = f.check(&DigestMatchesLedger).await;
    assert_eq!(out.verdict, Verdict::Fail);
    assert_eq!(out.details["mismatched"][0]["partition"], "2025-01");
}

#[tokio::test]
async fn business_delta_against_accepted_output() {
    // With nothing accepted yet, every partition is new output, not a change.
    let f = Fixture::new(good()).await;
    let first = f
        .check(&BusinessDelta::new("cents", |r: &Row| r.cents).with_max_pct(1))
        .await;
    assert_eq!(first.verdict, Verdict::Pass);
    assert_eq!(first.details["partitions"][0]["new_partition"], true);
    // The accepted output: the same rows with half the amounts.
    let old: Vec<Row> = good()
        .into_iter()
        .map(|mut r| {
            r.cents /= 2;
            r
        })
        .collect();
    let prev = Fixture::new(old).await;
    let mut m = manifest("bf-v");
    m.run_id = "bf-v".into();
    let receipt = prev
        .publisher
        .publish(backfill_core::publish::PublishRequest {
            run_id: &m.run_id,
            manifest: &m,
            digests: &prev.ledger,
            artifacts: std::slice::from_ref(&prev.artifact),
            previous: None,
            at: at(),
        })
        .await
        .unwrap();
    assert_eq!(receipt.rows, 3);
    let f = Fixture {
        publisher: prev.publisher,
        accepted: Some(m.run_id.clone()),
        ..f
    };
    let v = BusinessDelta::new("cents", |r: &Row| r.cents);
    let out = f.check(&v.with_max_pct(50)).await;
    assert_eq!(out.verdict, Verdict::NeedsReview, "{}", out.summary);
    assert_eq!(out.details["partitions"][0]["accepted"], 30);
    assert_eq!(out.details["partitions"][0]["staged"], 60);
    let v = BusinessDelta::new("cents", |r: &Row| r.cents).with_max_pct(100);
    assert_eq!(f.check(&v).await.verdict, Verdict::Pass);
}

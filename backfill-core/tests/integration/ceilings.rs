//! Run-wide ceilings: `safety.max_rows_expected` counts every worker's rows through the store's
//! tallies, finished chunks and chunks under way, and a retried attempt counts once.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use backfill_core::ids::ChunkId;
use backfill_core::prelude::*;
use common::*;

#[tokio::test]
async fn a_chunk_counts_once_on_a_tally_however_often_it_is_attempted() {
    let parts = Parts::new();
    let run = RunId::from("bf-tally");
    let (a, b) = (ChunkId::from("c-1"), ChunkId::from("c-2"));
    let store = &parts.store;
    assert_eq!(store.tally(&run, "output_rows", &a, 10).await.unwrap(), 10);
    assert_eq!(store.tally(&run, "output_rows", &b, 5).await.unwrap(), 15);
    // A second attempt of `a` starts over: its count replaces the first attempt's.
    assert_eq!(store.tally(&run, "output_rows", &a, 3).await.unwrap(), 8);
    // Tallies are per run and per name.
    assert_eq!(store.tally(&run, "input_records", &a, 7).await.unwrap(), 7);
    let other = RunId::from("bf-other");
    assert_eq!(store.tally(&other, "output_rows", &a, 1).await.unwrap(), 1);
}

#[tokio::test]
async fn the_row_ceiling_counts_rows_other_workers_are_staging() {
    // Alone, this worker's 270 rows fit under the ceiling of 300; another worker is staging 150
    // rows of the run at the same time, so the run as a whole passes the ceiling about half-way.
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-ceiling");
    m.safety.max_rows_expected = Some(300);
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let elsewhere = ChunkId::from("chunk-of-another-worker");
    parts
        .store
        .tally(approved.run_id(), "output_rows", &elsewhere, 150)
        .await
        .unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    match err.root() {
        Error::LimitExceeded {
            run_id,
            limit,
            value,
            max,
        } => {
            assert_eq!(run_id, approved.run_id());
            assert_eq!((*limit, *max), ("safety.max_rows_expected", 300));
            // Stopped within one batch (16 records, one row each) of the ceiling.
            assert!(*value > 300 && *value <= 300 + 16, "{value}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        runner.control().run(approved.run_id()).await.unwrap().state,
        RunState::Failed
    );

    // Without the other worker's rows the same run fits.
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-ceiling-alone");
    m.safety.max_rows_expected = Some(300);
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    assert_eq!(
        runner.run(approved.run_id()).await.unwrap().output_rows,
        270
    );
}

#[tokio::test]
async fn the_cost_ceiling_counts_records_other_workers_read() {
    use backfill_core::estimate::{CostModel, Rate};
    // $5,000 per million records: this worker's 270 cost $1.35, under the $2 ceiling; with 200
    // records another worker has read, the run's $2.35 is over it.
    let priced = |run_id: &str| {
        let mut m = manifest(run_id);
        m.safety.cost_model = Some(CostModel {
            usd_per_million_rows: Some(Rate::new(5_000.0).unwrap()),
            ..CostModel::default()
        });
        m.safety.max_cost_usd = Some(2);
        approve(m)
    };
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let approved = priced("bf-cost-shared");
    runner.control().submit(&approved).await.unwrap();
    parts
        .store
        .tally(
            approved.run_id(),
            "input_records",
            &ChunkId::from("elsewhere"),
            200,
        )
        .await
        .unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(
        matches!(
            err.root(),
            Error::LimitExceeded {
                limit: "safety.max_cost_usd",
                ..
            }
        ),
        "{err}"
    );

    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let approved = priced("bf-cost-alone");
    runner.control().submit(&approved).await.unwrap();
    assert_eq!(
        runner.run(approved.run_id()).await.unwrap().output_rows,
        270
    );
}

#[tokio::test]
async fn a_retried_chunk_counts_once_against_the_row_ceiling() {
    // The run's 270 rows under a ceiling of exactly 270: a chunk whose first attempt read all its
    // rows and failed is retried, and its rows count once, in the store's tallies and in the
    // process's own count (the check that stands alone where a store keeps no tallies).
    let parts = Parts::new();
    // The second chunk's first attempt reads all its rows, then fails transiently.
    let sink = Arc::new(FailingSink::new(parts.sink.clone(), 1, 1, true).after_reading());
    let runner = parts
        .runner_with_sink(Arc::new(source()), Scale::default(), sink)
        .build();
    let mut m = manifest("bf-ceiling-retry");
    m.safety.max_rows_expected = Some(270);
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.output_rows, 270);
    let chunks = parts.store.chunks(approved.run_id()).await.unwrap();
    assert!(chunks.iter().any(|c| c.attempts == 2), "{chunks:?}");
}

//! The testkit's partial-failure scenarios on every engine: a staging failure, a crash between staging
//! and the ledger, and a publish whose outcome is unknown all end where an uninterrupted run ends, and
//! the SQL publisher is inspected before it could publish twice; a publication and a rollback
//! interrupted in every window of the control plane converge when retried.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use backfill_core::memory::{ChunkBy, MemorySource};
use backfill_core::prelude::*;
use backfill_sql::{SqlPublisher, SqlSink};
use backfill_testkit::faults::{FaultKind, SinkFault};
use backfill_testkit::partial_failure::{Adapters, Crash, Scenario};
use backfill_testkit::strategy::{valid_manifest, Keyed};
use backfill_testkit::TestRow;
use chrono::{Days, NaiveDate, TimeZone, Utc};

/// Scales values into the testkit's row type; named as `valid_manifest` expects.
#[derive(Debug)]
struct Scale;

impl DeterministicTransform for Scale {
    type Input = Keyed<i64>;
    type Output = TestRow;
    fn name(&self) -> &str {
        "test"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        r: &Keyed<i64>,
        ctx: &TransformContext,
        out: &mut Vec<TestRow>,
    ) -> Result<(), TransformError> {
        out.push(TestRow {
            id: ctx.output_id(&[&r.key, &r.day.to_string()]),
            partition: r.month(),
            key: r.key.clone(),
            value: r.value * 3,
            note: (r.value % 5 == 0).then(|| format!("day {}", r.day)),
        });
        Ok(())
    }
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).unwrap()
}

fn scenario(engine: common::Engine) -> Scenario<Scale> {
    let at = Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap();
    let records: Vec<Keyed<i64>> = (0..90u64)
        .flat_map(|i| {
            ["a", "b", "c"].map(|k| Keyed {
                key: k.to_owned(),
                day: day(1, 1) + Days::new(i),
                value: i as i64,
            })
        })
        .collect();
    let m = valid_manifest(
        "bf-sql-faults",
        ExecutionMode::Backfill,
        day(1, 1),
        day(4, 1),
        None,
    );
    let source = MemorySource::by_date(records, |r: &Keyed<i64>| r.day)
        .chunk_by(ChunkBy::Days(15))
        .batch_size(11);
    Scenario::new(
        m.approve("owner", at).unwrap(),
        Arc::new(Scale),
        Arc::new(source),
        at,
    )
    .with_adapters(move || {
        // A fresh schema, database or file per run, with a sink and a publisher on it.
        let ns = engine.namespace("pf");
        async move {
            let pool = ns.pool().await;
            let schema = common::test_row_schema();
            // The publisher is registered under the manifest's target name.
            let sink = SqlSink::<TestRow>::with_schema(pool.clone(), "testkit_target", schema)
                .await
                .unwrap();
            let publisher = SqlPublisher::<TestRow>::with_schema(pool, "testkit_target", schema)
                .await
                .unwrap();
            let pair: Adapters<TestRow> = (Arc::new(sink), Arc::new(publisher));
            pair
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_faults_converge_on_every_engine() {
    for engine in common::engines() {
        let s = scenario(engine.clone());
        for (fault, kind) in [
            (SinkFault::AtStageCall(2), FaultKind::Transient),
            (SinkFault::AtBatch(3), FaultKind::Transient),
            (SinkFault::AfterStage(1), FaultKind::Transient),
            (SinkFault::AtStageCall(4), FaultKind::Fatal),
        ] {
            let out = s
                .check_sink_fault(fault, kind)
                .await
                .unwrap_or_else(|f| panic!("{} {fault:?} {kind:?}: {f}", engine.name));
            assert_eq!(out.report.state, RunState::Published, "{}", engine.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_publish_outcome_is_inspected_and_commits_once_on_every_engine() {
    for engine in common::engines() {
        let out = scenario(engine.clone())
            .check_unknown_publish_outcome()
            .await
            .unwrap_or_else(|f| panic!("{}: {f}", engine.name));
        assert_eq!(out.report.state, RunState::Published, "{}", engine.name);
        assert!(out.invocations >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_crashed_in_any_window_converges_on_every_engine() {
    for engine in common::engines() {
        let s = scenario(engine.clone());
        for crash in Crash::ALL {
            let out = s
                .check_publish_crash(crash)
                .await
                .unwrap_or_else(|f| panic!("{} {crash:?}: {f}", engine.name));
            assert_eq!(out.report.state, RunState::Published, "{}", engine.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_crashed_in_any_window_converges_on_every_engine() {
    for engine in common::engines() {
        let s = scenario(engine.clone());
        for crash in Crash::ALL {
            s.check_rollback_crash(crash)
                .await
                .unwrap_or_else(|f| panic!("{} {crash:?}: {f}", engine.name));
        }
    }
}

//! The testkit's partial-failure scenarios on Iceberg tables (SQLite and PostgreSQL catalogs): a
//! failed stage call, a failed batch mid-chunk, a crash between writing data files and the ledger;
//! an unknown commit outcome; crashes in every window of publish and rollback. Each converges to
//! the uninterrupted run with one snapshot per run.

use crate::common;

use std::sync::Arc;

use backfill_core::manifest::ValidationPlan;
use backfill_core::memory::{ChunkBy, MemorySource};
use backfill_core::prelude::*;
use backfill_iceberg::{IcebergPublisher, IcebergStagingSink, PublishFlow};
use backfill_testkit::faults::{FaultKind, SinkFault};
use backfill_testkit::partial_failure::{Adapters, Crash, Scenario};
use chrono::{NaiveDate, TimeZone, Utc};
use common::{Engine, Sale};

/// Doubles amounts (the "corrected" transform).
#[derive(Debug)]
struct Double;

impl DeterministicTransform for Double {
    type Input = Sale;
    type Output = Sale;
    fn name(&self) -> &str {
        "double"
    }
    fn version(&self) -> &str {
        "2.0.0"
    }
    fn apply(
        &self,
        r: &Sale,
        _: &TransformContext,
        out: &mut Vec<Sale>,
    ) -> Result<(), TransformError> {
        out.push(Sale {
            amount: r.amount * 2,
            ..r.clone()
        });
        Ok(())
    }
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).expect("date")
}

fn manifest(run: &str, target: &str, mutation: Mutation) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
    m.reason = "amounts were halved by a bug".into();
    m.requested_by = "finance-data".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "sales".into(),
        snapshot: Some("mem:sales".into()),
        range: Some(InputRange::Dates {
            from: day(1, 1),
            to_exclusive: day(5, 1),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "double".into();
    m.transform.version = "2.0.0".into();
    m.transform.git_commit = Some("abc1234".into());
    m.target = TargetSpec {
        kind: "iceberg_table".into(),
        name: target.into(),
        mutation: Some(mutation),
        partitions: vec![
            "2025-01".into(),
            "2025-02".into(),
            "2025-03".into(),
            "2025-04".into(),
        ],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..ValidationPlan::default()
    });
    m
}

fn scenario(engine: Engine, name: &str, mutation: Mutation, flow: PublishFlow) -> Scenario<Double> {
    // One table name for every run of the scenario (the manifest names it); each run gets a fresh
    // catalog and warehouse.
    let ident = common::ident(name, "sales");
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).unwrap();
    let approved = manifest(&format!("bf-{name}"), &ident.to_string(), mutation)
        .approve("owner", at)
        .expect("approve");
    let source = MemorySource::by_date(common::sales(300), |s: &Sale| s.day)
        .chunk_by(ChunkBy::Month)
        .batch_size(40)
        .snapshot("mem:sales");
    let tag = name.to_owned();
    Scenario::new(approved, Arc::new(Double), Arc::new(source), at).with_adapters(move || {
        let (ident, tag) = (ident.clone(), tag.clone());
        async move {
            let catalog = common::catalog(engine, &tag).await.expect("catalog");
            let (schema, spec) = common::sale_schema();
            catalog
                .ensure_table(&ident, schema, spec)
                .await
                .expect("table");
            let sink = IcebergStagingSink::<Sale>::new(catalog.clone(), ident.clone());
            let publisher = IcebergPublisher::<Sale>::new(catalog, ident).flow(flow);
            let pair: Adapters<Sale> = (Arc::new(sink), Arc::new(publisher));
            pair
        }
    })
}

async fn sink_faults(engine: Engine) {
    let s = scenario(
        engine,
        "pf-sink",
        Mutation::ReplacePartitions,
        PublishFlow::Direct,
    );
    for (fault, kind) in [
        (SinkFault::AtStageCall(1), FaultKind::Transient),
        (SinkFault::AtBatch(3), FaultKind::Fatal),
        // Data files written, the ledger never heard of them.
        (SinkFault::AfterStage(2), FaultKind::Fatal),
        (SinkFault::AfterStage(0), FaultKind::Transient),
    ] {
        let out = s
            .check_sink_fault(fault, kind)
            .await
            .unwrap_or_else(|f| panic!("{engine:?} {fault:?} {kind:?}: {f}"));
        assert_eq!(out.report.state, RunState::Published);
        assert_eq!(out.report.output_rows, 300);
    }
}

async fn unknown_outcome(engine: Engine, flow: PublishFlow) {
    let out = scenario(engine, "pf-unknown", Mutation::AppendWithRunId, flow)
        .check_unknown_publish_outcome()
        .await
        .unwrap_or_else(|f| panic!("{engine:?} {flow:?}: {f}"));
    assert_eq!(out.report.state, RunState::Published);
}

async fn crash_windows(engine: Engine, flow: PublishFlow) {
    let s = scenario(engine, "pf-crash", Mutation::ReplacePartitions, flow);
    for crash in Crash::ALL {
        s.check_publish_crash(crash)
            .await
            .unwrap_or_else(|f| panic!("{engine:?} {flow:?} publish {crash:?}: {f}"));
        s.check_rollback_crash(crash)
            .await
            .unwrap_or_else(|f| panic!("{engine:?} {flow:?} rollback {crash:?}: {f}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sink_faults_converge() {
    sink_faults(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_unknown_commit_outcome_is_inspected_and_commits_once() {
    unknown_outcome(Engine::Sqlite, PublishFlow::Direct).await;
    unknown_outcome(Engine::Sqlite, PublishFlow::WriteAuditPublish).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_publish_and_rollback_crash_windows_converge() {
    crash_windows(Engine::Sqlite, PublishFlow::Direct).await;
    crash_windows(Engine::Sqlite, PublishFlow::WriteAuditPublish).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sink_faults_converge() {
    if common::pg_url().is_none() {
        return;
    }
    sink_faults(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unknown_commit_outcome_is_inspected_and_commits_once() {
    if common::pg_url().is_none() {
        return;
    }
    unknown_outcome(Engine::Postgres, PublishFlow::Direct).await;
    unknown_outcome(Engine::Postgres, PublishFlow::WriteAuditPublish).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_publish_and_rollback_crash_windows_converge() {
    if common::pg_url().is_none() {
        return;
    }
    crash_windows(Engine::Postgres, PublishFlow::Direct).await;
    crash_windows(Engine::Postgres, PublishFlow::WriteAuditPublish).await;
}

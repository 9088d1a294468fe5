//! What the live-writer tests share: the restated row, its transform and manifest, an executor
//! over a SQL store with its window registry, and the lineage a live writer fills in.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::clone_on_ref_ptr)]

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::digest::OutputRow;
use backfill_core::live::LiveWrites;
use backfill_core::manifest::{OffsetRange, SideEffectPolicy};
use backfill_core::memory::MemorySource;
use backfill_core::prelude::*;
use backfill_sql::{Column, SqlPool, SqlPublisher, SqlRow, SqlSink, SqlStore, SqlType};

use crate::common::Namespace;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Out {
    pub id: String,
    pub part: String,
    pub n: i64,
    pub src_version: i64,
}

impl OutputRow for Out {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.part)
    }
}

impl SqlRow for Out {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::Text),
        Column::new("part", SqlType::Text),
        Column::new("n", SqlType::BigInt),
        Column::new("src_version", SqlType::BigInt),
    ];
    const PARTITION_COLUMN: &'static str = "part";
}

pub const KEYS: i64 = 200;
/// The backfill's partitions; the live writer also writes `p4` and `p5`.
pub const WINDOW: [&str; 4] = ["p0", "p1", "p2", "p3"];

/// The restatement: key `k<i>` in partition `p<i % 4>`, value `i * mult` (10 unless told), at an
/// even source version.
#[derive(Debug)]
pub struct Restate {
    pub mult: i64,
}
impl DeterministicTransform for Restate {
    type Input = i64;
    type Output = Out;
    fn name(&self) -> &str {
        "restate"
    }
    fn version(&self) -> &str {
        "2.0.0"
    }
    fn apply(
        &self,
        i: &i64,
        _: &TransformContext,
        out: &mut Vec<Out>,
    ) -> Result<(), TransformError> {
        out.push(Out {
            id: format!("k{i}"),
            part: format!("p{}", i % 4),
            n: i * self.mult,
            src_version: backfill_version(*i),
        });
        Ok(())
    }
}

pub fn backfill_version(i: i64) -> i64 {
    2 * (3 + i % 5)
}

/// The live writer's source version of key `i`: odd, so never equal to the backfill's.
pub fn live_version(i: i64) -> i64 {
    1 + 2 * (i % 11)
}

pub fn manifest(run_id: &str, live: LiveWrites, mutation: Mutation) -> ApprovedManifest {
    let mut m = RunManifest::new(run_id, RunKind::Restatement, ExecutionMode::Backfill);
    m.reason = "restate beside the live pipeline".into();
    m.requested_by = "alice".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "ints".into(),
        snapshot: Some("s".into()),
        range: Some(InputRange::Offsets {
            partitions: vec![OffsetRange {
                partition: 0,
                from: 0,
                to_exclusive: KEYS,
            }],
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "restate".into();
    m.transform.version = "2.0.0".into();
    m.target.name = "live_out".into();
    m.target.mutation = Some(mutation);
    m.target.partitions = WINDOW.iter().map(|p| PartitionKey::from(*p)).collect();
    m.target.live_writes = live;
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.manual_publish = true;
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..Default::default()
    });
    m.approve("bob", chrono::Utc::now()).unwrap()
}

pub async fn executor(pool: &SqlPool, store: Arc<SqlStore>) -> Executor<Restate> {
    executor_with(pool, store, 10).await
}

pub async fn executor_with(pool: &SqlPool, store: Arc<SqlStore>, mult: i64) -> Executor<Restate> {
    let sink = Arc::new(SqlSink::<Out>::new(pool.clone(), "live_out").await.unwrap());
    let publisher = Arc::new(
        SqlPublisher::<Out>::new(pool.clone(), "live_out")
            .await
            .unwrap(),
    );
    let control = Control::new(store.clone())
        .with_target(publisher.clone())
        .unwrap()
        .with_windows(Arc::new(store.windows()));
    // Small chunks, so the run takes long enough for the live writer to meet the freeze.
    let source = MemorySource::by_offset((0..KEYS).collect(), 10)
        .batch_size(5)
        .snapshot("s");
    Executor::builder(
        control,
        Arc::new(source),
        Arc::new(Restate { mult }),
        sink,
        publisher,
    )
    .options(RunnerOptions::worker("bf"))
    .build()
}

pub fn pg(pool: &SqlPool) -> sqlx::PgPool {
    match pool {
        SqlPool::Postgres(p) => p.clone(),
        _ => unreachable!("PostgreSQL only"),
    }
}

pub async fn create_target(pool: &SqlPool, unique_id: bool) {
    let key = if unique_id { " PRIMARY KEY" } else { "" };
    sqlx::query(&format!(
        "CREATE TABLE live_out (id TEXT NOT NULL{key}, part TEXT NOT NULL, n BIGINT NOT NULL, src_version BIGINT NOT NULL, {LINEAGE_DDL})"
    ))
    .execute(&pg(pool))
    .await
    .unwrap();
}

/// The lineage columns the SQL publisher keeps on every row; the live writer fills them too.
pub const LINEAGE_DDL: &str =
    "produced_by_run_id TEXT NOT NULL, produced_by_transform TEXT NOT NULL, \
    transform_version TEXT NOT NULL, processing_mode TEXT NOT NULL, input_range TEXT NOT NULL, \
    input_snapshot_id TEXT, reference_data_version TEXT NOT NULL, produced_at TIMESTAMPTZ NOT NULL";
pub const LIVE_LINEAGE: &str =
    "'live-current', 'live-orders', '1.0.0', 'live', 'stream', NULL, 'none', now()";
pub const LINEAGE_COLUMNS: &str = "produced_by_run_id, produced_by_transform, transform_version, \
    processing_mode, input_range, input_snapshot_id, reference_data_version, produced_at";

/// One query through the engine's own client (psql, mariadb, sqlite3).
pub fn cli(ns: &Namespace, sql: &str) -> String {
    crate::common::cli(ns, sql)
        .expect("the engine's client is installed")
        .trim()
        .to_owned()
}

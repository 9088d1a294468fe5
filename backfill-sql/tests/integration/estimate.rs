//! The estimate before approval over `SqlSource` on every engine: the records it estimates per
//! chunk are the records a later real run reads, and the estimate kept as evidence in the SQL run
//! store reads back typed.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::estimate::{CostModel, Rate};
use backfill_core::evidence::{EvidenceKind, EvidenceRecord};
use backfill_core::memory::{MemoryPublisher, MemorySink};
use backfill_core::prelude::*;
use backfill_sql::{Column, SqlPool, SqlSource, SqlSourceBuilder, SqlStore, SqlType};
use chrono::NaiveDate;

#[derive(Debug, Clone, serde::Deserialize)]
struct Event {
    case_id: String,
    seq: i64,
    event_date: NaiveDate,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Out {
    id: String,
    month: String,
}

impl OutputRow for Out {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

#[derive(Debug)]
struct Months;

impl DeterministicTransform for Months {
    type Input = Event;
    type Output = Out;

    fn name(&self) -> &str {
        "months"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    fn apply(
        &self,
        e: &Event,
        ctx: &TransformContext,
        out: &mut Vec<Out>,
    ) -> Result<(), TransformError> {
        out.push(Out {
            id: ctx.output_id(&[&e.case_id, &e.seq.to_string()]),
            month: e.event_date.format("%Y-%m").to_string(),
        });
        Ok(())
    }
}

static COLUMNS: &[Column] = &[
    Column::new("case_id", SqlType::Text),
    Column::new("seq", SqlType::BigInt),
    Column::new("event_date", SqlType::Date),
];

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn exec(pool: &SqlPool, sql: &str) {
    let sql = pool.dialect().sql(sql).into_owned();
    match pool {
        SqlPool::Postgres(p) => drop(sqlx::query(&sql).execute(p).await.unwrap()),
        SqlPool::MySql(p) => drop(sqlx::query(&sql).execute(p).await.unwrap()),
        SqlPool::Sqlite(p) => drop(sqlx::query(&sql).execute(p).await.unwrap()),
    }
}

/// 300 events over January to April 2025, unevenly spread (more at the start of each month).
async fn load(pool: &SqlPool) {
    let date = if pool.dialect() == backfill_sql::Dialect::Sqlite {
        "TEXT"
    } else {
        "DATE"
    };
    exec(pool, &format!("CREATE TABLE est_events (case_id VARCHAR(64) NOT NULL, seq BIGINT NOT NULL, event_date {date} NOT NULL, PRIMARY KEY (case_id, seq))")).await;
    let rows: Vec<String> = (0..300i64)
        .map(|i| {
            let d = day(2025, 1, 1) + chrono::Days::new(((i * i) % 120) as u64);
            format!("('case-{:03}', {}, '{d}')", i / 5, i % 5)
        })
        .collect();
    for part in rows.chunks(100) {
        exec(
            pool,
            &format!(
                "INSERT INTO est_events (case_id, seq, event_date) VALUES {}",
                part.join(", ")
            ),
        )
        .await;
    }
}

fn months() -> InputRange {
    InputRange::Dates {
        from: day(2025, 1, 1),
        to_exclusive: day(2025, 5, 1),
    }
}

fn manifest(run_id: &str, snapshot: String) -> RunManifest {
    let mut m = RunManifest::new(run_id, RunKind::Backfill, ExecutionMode::Backfill);
    m.reason = "estimate against a real run".into();
    m.requested_by = "alice".into();
    m.source = SourceSpec {
        kind: "sql".into(),
        name: "est_events".into(),
        snapshot: Some(snapshot),
        range: Some(months()),
        ..SourceSpec::default()
    };
    m.transform.name = "months".into();
    m.transform.version = "1.0.0".into();
    m.target.name = "est_out".into();
    m.target.mutation = Some(Mutation::ReplacePartitions);
    m.target.partitions = ["2025-01", "2025-02", "2025-03", "2025-04"]
        .into_iter()
        .map(PartitionKey::from)
        .collect();
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_cost_usd = Some(1);
    m.safety.cost_model = Some(CostModel {
        rows_per_second: Rate::new(100.0),
        usd_per_million_rows: Rate::new(500.0),
        ..CostModel::default()
    });
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..Default::default()
    });
    m
}

#[tokio::test]
async fn estimated_records_are_the_records_a_real_run_reads() {
    for engine in common::engines() {
        let ns = engine.namespace("estimate_rows");
        let pool = ns.pool().await;
        load(&pool).await;
        let source: Arc<SqlSource<Event>> = Arc::new(
            SqlSourceBuilder::table(pool.clone(), "est_events")
                .columns(COLUMNS)
                .key(&["case_id", "seq"])
                .date_column("event_date")
                .chunk_by_month()
                .batch_size(17)
                .build()
                .unwrap(),
        );
        let snapshot = source.snapshot(&months()).await.unwrap();
        let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
        let sink = Arc::new(MemorySink::<Out>::new("est_staging"));
        let publisher = Arc::new(MemoryPublisher::new("est_out", &sink));
        let control = Control::new(store.clone())
            .with_target(publisher.clone())
            .unwrap();
        let run_id = format!("bf-est-{}", engine.name);
        let m = manifest(&run_id, snapshot);

        // Before approval: nothing persisted, sizes from the plan's recorded counts.
        let e = control.estimate(&m, source.as_ref()).await.unwrap();
        assert!(e.coverage.is_exact(), "{}: {}", engine.name, e.coverage);
        assert_eq!(e.chunks.len(), 4, "{}", engine.name);
        assert_eq!(e.records, 300, "{}", engine.name);
        assert!(e.complete());
        assert_eq!(
            e.seconds,
            Some(3.0),
            "{}: 300 records at 100/s",
            engine.name
        );
        assert!((e.cost_usd.unwrap() - 0.15).abs() < 1e-9, "{}", engine.name);
        assert_eq!(
            e.unsized_bytes.len(),
            4,
            "{}: SQL sizes no bytes",
            engine.name
        );

        // Submitted: the estimate is evidence in the SQL store and reads back typed.
        let approved = m.approve("owner-bob", chrono::Utc::now()).unwrap();
        control.submit(&approved).await.unwrap();
        let kept = control
            .estimate_run(approved.run_id(), source.as_ref(), "alice")
            .await
            .unwrap();
        let evidence = store.evidence(approved.run_id()).await.unwrap();
        let stored: Vec<&EvidenceRecord> = evidence
            .iter()
            .filter(|r| r.kind() == EvidenceKind::Estimated)
            .map(|r| &r.record)
            .collect();
        assert_eq!(
            stored,
            [&EvidenceRecord::Estimated(Box::new(kept.clone()))],
            "{}",
            engine.name
        );

        // The real run reads, per chunk, what was estimated.
        let executor = Executor::builder(
            control.clone(),
            source.clone(),
            Arc::new(Months),
            sink.clone(),
            publisher.clone(),
        )
        .build();
        let report = executor.run(approved.run_id()).await.unwrap();
        assert_eq!(report.state, RunState::Published, "{}", engine.name);
        assert_eq!(report.input_records, e.records, "{}", engine.name);
        let ledger = store.chunks(approved.run_id()).await.unwrap();
        let read: Vec<(String, u64)> = ledger
            .iter()
            .map(|c| (c.chunk_id.to_string(), c.input_count))
            .collect();
        let estimated: Vec<(String, u64)> = e
            .chunks
            .iter()
            .map(|c| (c.id.to_string(), c.size.records.unwrap()))
            .collect();
        assert_eq!(read, estimated, "{}", engine.name);
        ns.drop().await;
    }
}

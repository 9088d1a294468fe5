//! Privacy before replay on every engine: a replay from a SQL table through a `Withheld` source,
//! with the deletion registry in a SQL table, stages none of the forgotten subjects' rows, and its
//! evidence counts exactly their input rows. The engine's command-line client (`sqlite3`, `psql`,
//! `mariadb`) is the independent reader of the staged and published tables.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::prelude::*;
use backfill_core::privacy::{DataClass, ForgottenSubjects, PrivacyPolicy, Withheld};
use backfill_sql::{
    Column, Dialect, SqlForgottenSubjects, SqlPool, SqlPublisher, SqlRow, SqlSink,
    SqlSourceBuilder, SqlStore, SqlType,
};
use chrono::{NaiveDate, TimeZone, Utc};

const REGISTRY: &str = "erasure-requests";
const TARGET: &str = "visit_facts";
const RANGE: (&str, &str) = ("2025-01-01", "2025-04-01");

#[derive(Debug, Clone, serde::Deserialize)]
struct Visit {
    subject: String,
    seq: i64,
    visit_date: NaiveDate,
    amount: i64,
}

static VISIT: &[Column] = &[
    Column::new("subject", SqlType::Text),
    Column::new("seq", SqlType::BigInt),
    Column::new("visit_date", SqlType::Date),
    Column::new("amount", SqlType::BigInt),
];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Fact {
    id: String,
    subject: String,
    month: String,
    amount: i64,
}

impl OutputRow for Fact {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

impl SqlRow for Fact {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::Text),
        Column::new("subject", SqlType::Text),
        Column::new("month", SqlType::Text),
        Column::new("amount", SqlType::BigInt),
    ];
    const PARTITION_COLUMN: &'static str = "month";
}

#[derive(Debug)]
struct Facts;

impl DeterministicTransform for Facts {
    type Input = Visit;
    type Output = Fact;
    fn name(&self) -> &str {
        "visit-facts"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        v: &Visit,
        ctx: &TransformContext,
        out: &mut Vec<Fact>,
    ) -> Result<(), TransformError> {
        out.push(Fact {
            id: ctx.output_id(&[&v.subject, &v.seq.to_string()]),
            subject: v.subject.clone(),
            month: v.visit_date.format("%Y-%m").to_string(),
            amount: v.amount * 100,
        });
        Ok(())
    }
}

async fn exec(pool: &SqlPool, sql: &str) {
    match pool {
        SqlPool::Postgres(p) => drop(sqlx::query(sql).execute(p).await.unwrap()),
        SqlPool::MySql(p) => drop(sqlx::query(sql).execute(p).await.unwrap()),
        SqlPool::Sqlite(p) => drop(sqlx::query(sql).execute(p).await.unwrap()),
    }
}

/// 8 subjects with 25 visits each, from mid-December 2024 to April 2025.
async fn load(pool: &SqlPool) {
    let date = if pool.dialect() == Dialect::Sqlite {
        "TEXT"
    } else {
        "DATE"
    };
    exec(pool, &format!("CREATE TABLE visits (subject VARCHAR(32) NOT NULL, seq BIGINT NOT NULL, visit_date {date} NOT NULL, amount BIGINT NOT NULL, PRIMARY KEY (subject, seq))")).await;
    let start = NaiveDate::from_ymd_opt(2024, 12, 15).unwrap();
    let values: Vec<String> = (0..200i64)
        .map(|i| {
            let d = start + chrono::Days::new(((i * 13) % 130) as u64);
            format!("('s-{}', {}, '{d}', {})", i % 8 + 1, i / 8, i)
        })
        .collect();
    exec(
        pool,
        &format!(
            "INSERT INTO visits (subject, seq, visit_date, amount) VALUES {}",
            values.join(", ")
        ),
    )
    .await;
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap()
}

fn manifest() -> ApprovedManifest {
    let day = |s: &str| s.parse::<NaiveDate>().unwrap();
    let mut m = RunManifest::new("bf-privacy-sql", RunKind::Replay, ExecutionMode::Backfill);
    m.reason = "restate visit facts".into();
    m.requested_by = "clinic-data".into();
    m.source = SourceSpec {
        kind: "sql_table".into(),
        name: "visits".into(),
        range: Some(InputRange::Dates {
            from: day(RANGE.0),
            to_exclusive: day(RANGE.1),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "visit-facts".into();
    m.transform.version = "1.0.0".into();
    m.target.name = TARGET.into();
    m.target.mutation = Some(Mutation::ReplacePartitions);
    m.target.partitions = ["2025-01", "2025-02", "2025-03"]
        .into_iter()
        .map(PartitionKey::from)
        .collect();
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.manual_publish = true;
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..Default::default()
    });
    m.privacy = Some(PrivacySpec {
        purpose: "clinical reporting".into(),
        personal_data: Some(true),
        retained_from: Some(day("2024-07-01")),
        target_classification: Some(DataClass::Restricted),
        masked_fields: Some(vec![]),
        access_role: Some("reporting-etl".into()),
        forgotten_registry: Some(REGISTRY.into()),
        ..PrivacySpec::default()
    });
    m.approve("clinic-owner", at()).unwrap()
}

/// One number from the engine's command-line client, or `None` when it is not installed.
fn count(ns: &common::Namespace, sql: &str) -> Option<u64> {
    common::cli(ns, sql).map(|s| s.trim().parse().unwrap_or_else(|e| panic!("{s}: {e}")))
}

#[tokio::test]
async fn a_replay_stages_and_publishes_none_of_the_forgotten_subjects_rows() {
    for engine in common::engines() {
        let e = engine.name;
        let ns = engine.namespace("privacy_replay");
        let pool = ns.pool().await;
        load(&pool).await;
        let registry = SqlForgottenSubjects::new(pool.clone(), REGISTRY)
            .await
            .unwrap();
        for s in ["s-2", "s-5", "s-99"] {
            assert!(registry.forget(s, "erasure request", at()).await.unwrap());
        }
        assert!(!registry.forget("s-2", "again", at()).await.unwrap());
        // Another registry in the same table does not count.
        let other = SqlForgottenSubjects::new(pool.clone(), "other")
            .await
            .unwrap();
        other.forget("s-3", "elsewhere", at()).await.unwrap();
        assert_eq!(registry.version().await.unwrap(), 3, "{e}");
        assert_eq!(
            registry.forgotten(&["s-1", "s-2", "s-3"]).await.unwrap(),
            [false, true, false],
            "{e}"
        );

        let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
        let sink = Arc::new(SqlSink::<Fact>::new(pool.clone(), TARGET).await.unwrap());
        let publisher = Arc::new(
            SqlPublisher::<Fact>::new(pool.clone(), TARGET)
                .await
                .unwrap(),
        );
        let control = Control::new(store.clone())
            .with_clock(Arc::new(FixedClock(at())))
            .with_target(publisher.clone())
            .unwrap();
        let rows = SqlSourceBuilder::<Visit>::table(pool.clone(), "visits")
            .columns(VISIT)
            .key(&["subject", "seq"])
            .date_column("visit_date")
            .chunk_by_month()
            .batch_size(7)
            .build()
            .unwrap();
        let policy = PrivacyPolicy::personal_data()
            .retention_days(3 * 365)
            .purposes(["clinical reporting"])
            .readers(["reporting-etl"]);
        let source = Withheld::new(rows, policy, registry.clone(), |v: &Visit| {
            Some(v.subject.clone())
        })
        .with_clock(Arc::new(FixedClock(at())));
        let runner = Executor::builder(
            control.clone(),
            Arc::new(source),
            Arc::new(Facts),
            sink.clone(),
            publisher,
        )
        .build();
        let approved = manifest();
        let run = approved.run_id().clone();
        control.submit(&approved).await.unwrap();
        let report = runner.run(&run).await.unwrap();
        assert_eq!(report.state, RunState::Validated, "{e}: {report:?}");

        let withheld: u64 = store
            .evidence(&run)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|r| match r.record {
                EvidenceRecord::ChunkStaged { source, .. } => {
                    let v = source.expect("privacy evidence");
                    assert_eq!(v["registry"], REGISTRY, "{e}");
                    assert_eq!(v["registry_version"], 3, "{e}");
                    v["withheld"].as_u64()
                }
                _ => None,
            })
            .sum();

        // The independent reader: SQL over the source, the registry and the staged table.
        let forgotten =
            format!("SELECT subject FROM bf_forgotten_subjects WHERE registry = '{REGISTRY}'");
        let in_range = format!("visit_date >= '{}' AND visit_date < '{}'", RANGE.0, RANGE.1);
        let staging = sink.staging_table(&run).quoted(pool.dialect());
        let their_input = count(
            &ns,
            &format!("SELECT COUNT(*) FROM visits WHERE {in_range} AND subject IN ({forgotten})"),
        );
        eprintln!("{e}: withheld {withheld}, their input rows {their_input:?}");
        if let Some(n) = their_input {
            assert!(n > 0, "{e}: the range holds forgotten subjects' rows");
            assert_eq!(withheld, n, "{e}: evidence withheld = their input rows");
            assert_eq!(
                count(
                    &ns,
                    &format!("SELECT COUNT(*) FROM {staging} WHERE subject IN ({forgotten})")
                ),
                Some(0),
                "{e}: staged rows of forgotten subjects"
            );
            let others = count(
                &ns,
                &format!(
                    "SELECT COUNT(*) FROM visits WHERE {in_range} AND subject NOT IN ({forgotten})"
                ),
            );
            assert_eq!(
                count(&ns, &format!("SELECT COUNT(*) FROM {staging}")),
                others,
                "{e}: everyone else's rows are staged"
            );
        }

        control.publish(&run, "clinic-owner").await.unwrap();
        if let Some(n) = count(
            &ns,
            &format!("SELECT COUNT(*) FROM {TARGET} WHERE subject IN ({forgotten})"),
        ) {
            assert_eq!(n, 0, "{e}: published rows of forgotten subjects");
            assert!(count(&ns, &format!("SELECT COUNT(*) FROM {TARGET}")).unwrap() > 0);
        }
        pool.close().await;
        ns.drop().await;
    }
}

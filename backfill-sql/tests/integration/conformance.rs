//! The testkit's store, sink, publisher and source conformance suites on SQLite, PostgreSQL and
//! MariaDB.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::context::ExecutionMode;
use backfill_core::manifest::{InputRange, RunKind, RunManifest};
use backfill_core::sink::StagingSink;
use backfill_core::store::RunStore;
use backfill_sql::{
    Column, ConnectOptions, Ident, SqlPool, SqlPublisher, SqlSink, SqlSource, SqlSourceBuilder,
    SqlStore, SqlType,
};
use backfill_testkit::{
    PublishTarget, PublisherHarness, SinkHarness, SourceFixture, SourceHarness, StoreHarness,
    TestRow,
};

use common::test_row_schema as schema;

/// Builds everything on one engine, in a schema, database or file per check.
struct Harness(&'static str);

impl Harness {
    async fn pool(&self, ns: &str) -> backfill_core::Result<SqlPool> {
        let engine = common::engine(self.0).ok_or_else(|| {
            backfill_core::Error::adapter(
                "test",
                format!("{} is not provisioned: run scripts/test.sh", self.0),
            )
        })?;
        let ident = Ident::new(ns)?;
        let url = engine_url(&engine, ns);
        match self.0 {
            "sqlite" => SqlPool::connect(&url).await,
            _ => SqlPool::connect_with(&url, &ConnectOptions::namespaced(ident)).await,
        }
    }

    async fn drop(&self, ns: &str) -> backfill_core::Result<()> {
        if let Some(engine) = common::engine(self.0) {
            if self.0 == "sqlite" {
                let _ = std::fs::remove_file(sqlite_path(ns));
            } else {
                SqlPool::drop_namespace(&engine_url(&engine, ns), &Ident::new(ns)?).await?;
            }
        }
        Ok(())
    }
}

fn sqlite_path(ns: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{ns}.db"))
}

fn engine_url(engine: &common::Engine, ns: &str) -> String {
    match engine.name {
        "sqlite" => format!("sqlite:{}", sqlite_path(ns).display()),
        _ => engine.namespace(ns).engine_base().to_owned(),
    }
}

#[async_trait]
impl StoreHarness for Harness {
    async fn build(&self, ns: &str) -> backfill_core::Result<Arc<dyn RunStore>> {
        Ok(Arc::new(SqlStore::new(self.pool(ns).await?).await?))
    }
    async fn teardown(&self, ns: &str) -> backfill_core::Result<()> {
        self.drop(ns).await
    }
}

#[async_trait]
impl SinkHarness for Harness {
    async fn build(&self, ns: &str) -> backfill_core::Result<Arc<dyn StagingSink<TestRow>>> {
        Ok(Arc::new(
            SqlSink::with_schema(self.pool(ns).await?, "testkit_target", schema()).await?,
        ))
    }
    async fn teardown(&self, ns: &str) -> backfill_core::Result<()> {
        self.drop(ns).await
    }
}

#[async_trait]
impl PublisherHarness for Harness {
    async fn build(
        &self,
        ns: &str,
    ) -> backfill_core::Result<(
        Arc<dyn StagingSink<TestRow>>,
        Arc<dyn PublishTarget<TestRow>>,
    )> {
        let pool = self.pool(ns).await?;
        let sink = SqlSink::with_schema(pool.clone(), "testkit_target", schema()).await?;
        let publisher = SqlPublisher::with_schema(pool, "testkit_target", schema()).await?;
        Ok((Arc::new(sink), Arc::new(publisher)))
    }
    async fn teardown(&self, ns: &str) -> backfill_core::Result<()> {
        self.drop(ns).await
    }
}

/// An input row of the source suite.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Reading {
    id: i64,
    day: chrono::NaiveDate,
    value: String,
}

static READING: &[Column] = &[
    Column::new("id", SqlType::BigInt),
    Column::new("day", SqlType::Date),
    Column::new("value", SqlType::Text),
];

/// 90 readings, one a day from 2025-01-01, in a table `readings`.
async fn readings(pool: &SqlPool) -> backfill_core::Result<()> {
    let date = match pool.dialect() {
        backfill_sql::Dialect::Sqlite => "TEXT",
        _ => "DATE",
    };
    let values: Vec<String> = (0..90)
        .map(|i| {
            let day = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + chrono::Days::new(i);
            format!("({i}, '{day}', 'v{}')", i * 7 % 13)
        })
        .collect();
    let create = format!(
        "CREATE TABLE readings (id BIGINT NOT NULL PRIMARY KEY, day {date} NOT NULL, value VARCHAR(32) NOT NULL)"
    );
    let insert = format!(
        "INSERT INTO readings (id, day, value) VALUES {}",
        values.join(", ")
    );
    for sql in [create, insert] {
        match pool {
            SqlPool::Postgres(p) => sqlx::query(&sql).execute(p).await.map(drop),
            SqlPool::MySql(p) => sqlx::query(&sql).execute(p).await.map(drop),
            SqlPool::Sqlite(p) => sqlx::query(&sql).execute(p).await.map(drop),
        }
        .map_err(|e| backfill_core::Error::adapter("test", e))?;
    }
    Ok(())
}

/// Row count and content of `readings`, as text.
async fn observe(pool: SqlPool) -> backfill_core::Result<String> {
    let sql = "SELECT id, value FROM readings ORDER BY id";
    let rows: Vec<(i64, String)> = match &pool {
        SqlPool::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await,
        SqlPool::MySql(p) => sqlx::query_as(sql).fetch_all(p).await,
        SqlPool::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await,
    }
    .map_err(|e| backfill_core::Error::adapter("test", e))?;
    Ok(format!("{rows:?}"))
}

#[async_trait]
impl SourceHarness for Harness {
    type Record = Reading;

    async fn build(&self, ns: &str) -> backfill_core::Result<SourceFixture<Reading>> {
        let pool = self.pool(ns).await?;
        readings(&pool).await?;
        let source: SqlSource<Reading> = SqlSourceBuilder::table(pool.clone(), "readings")
            .columns(READING)
            .key(&["id"])
            .date_column("day")
            .chunk_by_days(20)
            .batch_size(8)
            .build()?;
        let mut m = RunManifest::new("bf-sql-source", RunKind::Backfill, ExecutionMode::Backfill);
        m.source.range = Some(InputRange::Dates {
            from: chrono::NaiveDate::from_ymd_opt(2025, 1, 10).unwrap(),
            to_exclusive: chrono::NaiveDate::from_ymd_opt(2025, 3, 20).unwrap(),
        });
        Ok(SourceFixture::new(Arc::new(source), m)
            .expect_records(69)
            .observe(move || observe(pool.clone())))
    }
    async fn teardown(&self, ns: &str) -> backfill_core::Result<()> {
        self.drop(ns).await
    }
}

backfill_testkit::store_conformance!(sqlite_store, || Harness("sqlite"));
backfill_testkit::sink_conformance!(sqlite_sink, || Harness("sqlite"));
backfill_testkit::publisher_conformance!(sqlite_publisher, || Harness("sqlite"));
backfill_testkit::store_conformance!(postgres_store, || Harness("postgres"));
backfill_testkit::sink_conformance!(postgres_sink, || Harness("postgres"));
backfill_testkit::publisher_conformance!(postgres_publisher, || Harness("postgres"));
backfill_testkit::store_conformance!(mariadb_store, || Harness("mysql"));
backfill_testkit::sink_conformance!(mariadb_sink, || Harness("mysql"));
backfill_testkit::publisher_conformance!(mariadb_publisher, || Harness("mysql"));
backfill_testkit::source_conformance!(sqlite_source, || Harness("sqlite"));
backfill_testkit::source_conformance!(postgres_source, || Harness("postgres"));
backfill_testkit::source_conformance!(mariadb_source, || Harness("mysql"));

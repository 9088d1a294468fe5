//! The testkit's store, sink and publisher conformance suites on SQLite, PostgreSQL and MariaDB.
#![allow(clippy::clone_on_ref_ptr)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::publish::Publisher;
use backfill_core::sink::StagingSink;
use backfill_core::store::RunStore;
use backfill_sql::{ConnectOptions, Ident, SqlPool, SqlPublisher, SqlSink, SqlStore};
use backfill_testkit::{PublisherHarness, SinkHarness, StoreHarness, TestRow};

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
    ) -> backfill_core::Result<(Arc<dyn StagingSink<TestRow>>, Arc<dyn Publisher<TestRow>>)> {
        let pool = self.pool(ns).await?;
        let sink = SqlSink::with_schema(pool.clone(), "testkit_target", schema()).await?;
        let publisher = SqlPublisher::with_schema(pool, "testkit_target", schema()).await?;
        Ok((Arc::new(sink), Arc::new(publisher)))
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

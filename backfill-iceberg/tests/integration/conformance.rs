//! The testkit's conformance suites on real Iceberg tables: the staging sink (fencing included), the
//! publisher in both flows (append, replace partitions, rollback, read-back), on a SQLite catalog
//! and on a PostgreSQL catalog; with feature `opendal`, also over OpenDAL's storage
//! (`cargo test -p backfill-iceberg --features opendal --test integration conformance::opendal`).

use crate::common;

use std::sync::Arc;

use backfill_core::sink::StagingSink;
use backfill_iceberg::{IcebergCatalog, IcebergPublisher, IcebergStagingSink, PublishFlow};
use backfill_testkit::{PublishTarget, PublisherHarness, SinkHarness, TestRow};
use common::Engine;
use iceberg::TableIdent;

struct Iceberg {
    engine: Engine,
    flow: PublishFlow,
}

impl Iceberg {
    async fn table(&self, namespace: &str) -> backfill_core::Result<(IcebergCatalog, TableIdent)> {
        let catalog = common::catalog(self.engine, namespace).await?;
        let ident = common::ident(namespace, "rows");
        let (schema, spec) = common::test_row_schema();
        catalog.ensure_table(&ident, schema, spec).await?;
        Ok((catalog, ident))
    }
}

#[async_trait::async_trait]
impl SinkHarness for Iceberg {
    async fn build(&self, namespace: &str) -> backfill_core::Result<Arc<dyn StagingSink<TestRow>>> {
        let (catalog, ident) = self.table(namespace).await?;
        Ok(Arc::new(IcebergStagingSink::<TestRow>::new(catalog, ident)))
    }
    async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl PublisherHarness for Iceberg {
    async fn build(
        &self,
        namespace: &str,
    ) -> backfill_core::Result<(
        Arc<dyn StagingSink<TestRow>>,
        Arc<dyn PublishTarget<TestRow>>,
    )> {
        let (catalog, ident) = self.table(namespace).await?;
        let sink = IcebergStagingSink::<TestRow>::new(catalog.clone(), ident.clone());
        let publisher = IcebergPublisher::<TestRow>::new(catalog, ident).flow(self.flow);
        Ok((Arc::new(sink), Arc::new(publisher)))
    }
    async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

backfill_testkit::sink_conformance!(sqlite_sink, || Iceberg {
    engine: Engine::Sqlite,
    flow: PublishFlow::Direct
});
backfill_testkit::publisher_conformance!(sqlite_direct, || Iceberg {
    engine: Engine::Sqlite,
    flow: PublishFlow::Direct
});
backfill_testkit::publisher_conformance!(sqlite_wap, || Iceberg {
    engine: Engine::Sqlite,
    flow: PublishFlow::WriteAuditPublish
});
backfill_testkit::sink_conformance!(postgres_sink, || Iceberg {
    engine: Engine::Postgres,
    flow: PublishFlow::Direct
});
backfill_testkit::publisher_conformance!(postgres_direct, || Iceberg {
    engine: Engine::Postgres,
    flow: PublishFlow::Direct
});
backfill_testkit::publisher_conformance!(postgres_wap, || Iceberg {
    engine: Engine::Postgres,
    flow: PublishFlow::WriteAuditPublish
});

#[cfg(feature = "opendal")]
backfill_testkit::sink_conformance!(opendal_sink, || Iceberg {
    engine: Engine::SqliteOpenDal,
    flow: PublishFlow::Direct
});
#[cfg(feature = "opendal")]
backfill_testkit::publisher_conformance!(opendal_direct, || Iceberg {
    engine: Engine::SqliteOpenDal,
    flow: PublishFlow::Direct
});

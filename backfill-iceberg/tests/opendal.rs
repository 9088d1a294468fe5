//! With feature `opendal`: the sink and publisher suites over OpenDAL's filesystem storage, the
//! code path object stores take (`cargo test -p backfill-iceberg --features opendal --test opendal`).
#![cfg(feature = "opendal")]

mod common;

use std::sync::Arc;

use backfill_core::sink::StagingSink;
use backfill_iceberg::iceberg_storage_opendal::OpenDalStorageFactory;
use backfill_iceberg::{IcebergCatalog, IcebergPublisher, IcebergStagingSink};
use backfill_testkit::{PublishTarget, PublisherHarness, SinkHarness, TestRow};

struct OpenDal;

impl OpenDal {
    async fn parts(
        &self,
        namespace: &str,
    ) -> backfill_core::Result<(IcebergCatalog, iceberg::TableIdent)> {
        let dir = common::fresh_dir(namespace);
        let catalog = IcebergCatalog::builder(
            format!("sqlite:{}?mode=rwc", dir.join("catalog.db").display()),
            format!("file://{}", dir.display()),
        )
        .opendal(OpenDalStorageFactory::Fs)
        .connect()
        .await?;
        let ident = common::ident(namespace, "rows");
        let (schema, spec) = common::test_row_schema();
        catalog.ensure_table(&ident, schema, spec).await?;
        Ok((catalog, ident))
    }
}

#[async_trait::async_trait]
impl SinkHarness for OpenDal {
    async fn build(&self, namespace: &str) -> backfill_core::Result<Arc<dyn StagingSink<TestRow>>> {
        let (catalog, ident) = self.parts(namespace).await?;
        Ok(Arc::new(IcebergStagingSink::<TestRow>::new(catalog, ident)))
    }
    async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl PublisherHarness for OpenDal {
    async fn build(
        &self,
        namespace: &str,
    ) -> backfill_core::Result<(
        Arc<dyn StagingSink<TestRow>>,
        Arc<dyn PublishTarget<TestRow>>,
    )> {
        let (catalog, ident) = self.parts(namespace).await?;
        let sink = IcebergStagingSink::<TestRow>::new(catalog.clone(), ident.clone());
        let publisher = IcebergPublisher::<TestRow>::new(catalog, ident);
        Ok((Arc::new(sink), Arc::new(publisher)))
    }
    async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

backfill_testkit::sink_conformance!(opendal_sink, || OpenDal);
backfill_testkit::publisher_conformance!(opendal_publisher, || OpenDal);

//! The object-store landing (feature `object-store`): the source conformance suite over a local
//! directory through `LocalFileSystem`, and an import with its archive in memory (`InMemory`).

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::manifest::DuplicateFilePolicy;
use backfill_core::state::RunState;
use backfill_files::{
    FileRow, FileSource, ImportLedger, Importer, Landing, MemoryLedger, ObjectStoreLanding,
};
use backfill_testkit::{SourceFixture, SourceHarness};
use common::run::World;
use common::{day, Order};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

struct Local;

#[async_trait]
impl SourceHarness for Local {
    type Record = FileRow<Order>;
    async fn build(&self, ns: &str) -> backfill_core::Result<SourceFixture<FileRow<Order>>> {
        let root = common::fresh_dir(ns);
        let records = common::landing(&root);
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| backfill_core::Error::adapter("test", e))?;
        let source: FileSource<Order> =
            FileSource::new(Arc::new(ObjectStoreLanding::new(Arc::new(store)))).batch_size(4);
        let manifest = common::manifest(ns, day(1, 1), day(4, 1), DuplicateFilePolicy::Reject);
        Ok(SourceFixture::new(Arc::new(source), manifest)
            .expect_records(records)
            .observe(move || {
                let root = root.clone();
                async move { Ok(common::observe(&root)) }
            }))
    }
    async fn teardown(&self, ns: &str) -> backfill_core::Result<()> {
        let _ = std::fs::remove_dir_all(common::fresh_dir(ns));
        Ok(())
    }
}

backfill_testkit::source_conformance!(local_file_system, || Local);

#[tokio::test]
async fn an_import_from_memory_archives_after_the_ledger_commit() {
    let store = Arc::new(InMemory::new());
    let path = "landing/2025/01/orders-2025-01-15.csv";
    let content = common::csv(&common::orders("m", day(1, 15), 3, 7));
    store
        .put(
            &Path::from(path),
            PutPayload::from(content.clone().into_bytes()),
        )
        .await
        .expect("put");
    let landing = Arc::new(ObjectStoreLanding::new(Arc::<InMemory>::clone(&store) as _));
    let ledger = Arc::new(MemoryLedger::new());
    let source = Arc::new(
        FileSource::<Order>::new(Arc::<ObjectStoreLanding>::clone(&landing) as Arc<dyn Landing>)
            .with_ledger(Arc::<MemoryLedger>::clone(&ledger) as Arc<dyn ImportLedger>),
    );
    let world = World::new();
    let m = common::manifest(
        "bf-memory",
        day(1, 1),
        day(2, 1),
        DuplicateFilePolicy::Reject,
    );
    let report = world.run(m, source).await.expect("run");
    assert_eq!(report.state, RunState::Published);
    assert_eq!(world.visible().len(), 3);
    let imported = Importer::new(
        Arc::<ObjectStoreLanding>::clone(&landing) as Arc<dyn Landing>,
        Arc::<MemoryLedger>::clone(&ledger) as Arc<dyn ImportLedger>,
    )
    .commit(
        world.store.as_ref(),
        &"bf-memory".into(),
        common::run::now(),
    )
    .await
    .expect("commit");
    assert_eq!(imported.accepted, vec![path.to_owned()]);
    assert_eq!(ledger.records().len(), 1);
    let archived = format!("archive/accepted/{}/{path}", &common::sha(&content)[..12]);
    assert!(landing.exists(&archived).await.expect("head"));
    assert!(!landing.exists(path).await.expect("head"));
    // Archiving again is a no-op.
    landing.archive(path, &archived).await.expect("idempotent");
}

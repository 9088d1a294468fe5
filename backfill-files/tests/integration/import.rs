//! The importer commits only published runs, the ledger before the archive, and can be retried.

use crate::common;

use std::sync::Arc;

use backfill_core::manifest::DuplicateFilePolicy;
use backfill_core::state::RunState;
use backfill_core::Error;
use backfill_files::{FileSource, ImportLedger, Importer, Landing, LocalLanding, MemoryLedger};
use common::run::World;
use common::{day, Order};

#[tokio::test]
async fn an_unpublished_run_is_not_imported_and_a_retried_commit_changes_nothing() {
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    common::landing(&root);
    let landing = Arc::new(LocalLanding::new(&root));
    let ledger = Arc::new(MemoryLedger::new());
    let importer = Importer::new(
        Arc::<LocalLanding>::clone(&landing) as Arc<dyn Landing>,
        Arc::<MemoryLedger>::clone(&ledger) as Arc<dyn ImportLedger>,
    );
    let world = World::new();

    // A dry run validates but never publishes: nothing is committed or archived.
    let mut dry = common::manifest("bf-dry", day(1, 1), day(4, 1), DuplicateFilePolicy::Reject);
    dry.mode = backfill_core::context::ExecutionMode::DryRun;
    let source = Arc::new(
        FileSource::<Order>::new(Arc::<LocalLanding>::clone(&landing) as Arc<dyn Landing>)
            .with_ledger(Arc::<MemoryLedger>::clone(&ledger) as Arc<dyn ImportLedger>),
    );
    let report = world
        .run(dry, Arc::<FileSource<Order>>::clone(&source))
        .await
        .expect("dry run");
    assert_ne!(report.state, RunState::Published);
    let err = importer
        .commit(world.store.as_ref(), &"bf-dry".into(), common::run::now())
        .await
        .expect_err("not published");
    assert!(matches!(err, Error::PublishRefused { .. }), "{err}");
    assert!(ledger.records().is_empty());
    assert!(root.join("landing/2025/01/late.jsonl").is_file());

    // Published: committed, then archived; a second commit changes nothing.
    let m = common::manifest("bf-real", day(1, 1), day(4, 1), DuplicateFilePolicy::Reject);
    let report = world.run(m, source).await.expect("run");
    assert_eq!(report.state, RunState::Published);
    let first = importer
        .commit(world.store.as_ref(), &"bf-real".into(), common::run::now())
        .await
        .expect("commit");
    assert_eq!((first.accepted.len(), first.archived.len()), (9, 9));
    let records = ledger.records();
    let listing = common::observe(&root);
    let again = importer
        .commit(world.store.as_ref(), &"bf-real".into(), common::run::now())
        .await
        .expect("retried commit");
    assert_eq!(again.accepted.len(), 9);
    assert_eq!(ledger.records(), records);
    assert_eq!(common::observe(&root), listing);
    assert!(!root.join("landing/2025/01/late.jsonl").exists());
}

//! The testkit's source conformance suite over a generated local landing area, monthly and daily.

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::manifest::DuplicateFilePolicy;
use backfill_files::{FileRow, FileSource, LocalLanding, MemoryLedger, Period};
use backfill_testkit::{SourceFixture, SourceHarness};
use common::{day, Order};

struct Harness(Period);

#[async_trait]
impl SourceHarness for Harness {
    type Record = FileRow<Order>;
    async fn build(&self, ns: &str) -> backfill_core::Result<SourceFixture<FileRow<Order>>> {
        let root = common::fresh_dir(ns);
        let records = common::landing(&root);
        let source: FileSource<Order> = FileSource::new(Arc::new(LocalLanding::new(&root)))
            .with_ledger(Arc::new(MemoryLedger::new()))
            .chunk_by(self.0)
            .batch_size(2);
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

backfill_testkit::source_conformance!(monthly, || Harness(Period::Month));
backfill_testkit::source_conformance!(daily, || Harness(Period::Day));

//! Property: a run interrupted at any chunk and resumed stages exactly what an uninterrupted run stages.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use backfill_core::memory::{ChunkBy, MemorySource};
use backfill_core::prelude::*;
use common::*;
use proptest::prelude::*;

async fn run_to_end(
    parts: &Parts,
    approved: &ApprovedManifest,
    src: Arc<MemorySource<Event>>,
    fail_at: Option<u32>,
) -> RunReport {
    match fail_at {
        Some(k) => {
            let failing = Arc::new(FailingSink::new(parts.sink.clone(), k, 1, false));
            let runner = parts
                .runner_with_sink(src.clone(), Scale::default(), failing)
                .build();
            runner.control().submit(approved).await.unwrap();
            assert!(runner.run(approved.run_id()).await.is_err());
            parts
                .runner(src, Scale::default())
                .build()
                .run(approved.run_id())
                .await
                .unwrap()
        }
        None => {
            let runner = parts.runner(src, Scale::default()).build();
            runner.control().submit(approved).await.unwrap();
            runner.run(approved.run_id()).await.unwrap()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn interrupted_and_resumed_equals_uninterrupted(days in 1u32..20, batch in 1usize..40, k_seed in any::<u32>(), parallel in 1u32..4) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let make = || Arc::new(MemorySource::by_date(events(), |e: &Event| e.day).chunk_by(ChunkBy::Days(days)).batch_size(batch).snapshot("s-1"));
            let mut m = manifest("bf-prop");
            m.safety.limits.max_chunks_in_parallel = parallel;
            let approved = approve(m);
            let clean = Parts::new();
            let expected = run_to_end(&clean, &approved, make(), None).await;
            let n = expected.chunks_total as u32;
            let k = k_seed % n;

            let parts = Parts::new();
            let src = make();
            let resumed = run_to_end(&parts, &approved, src.clone(), Some(k)).await;
            prop_assert_eq!(&resumed.digests, &expected.digests);
            prop_assert_eq!(resumed.output_rows, expected.output_rows);
            prop_assert_eq!(parts.publisher.snapshot(), clean.publisher.snapshot());
            // No duplicates: every chunk done once in the ledger, total reads = chunks + failed attempts.
            let chunks = parts.store.chunks(approved.run_id()).await.unwrap();
            let extra: u32 = chunks.iter().map(|c| c.attempts - 1).sum();
            prop_assert_eq!(src.read_log().len() as u32, n + extra);
            prop_assert!(extra >= 1);
            Ok(())
        })?;
    }
}

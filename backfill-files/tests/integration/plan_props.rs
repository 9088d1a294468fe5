//! Properties of planning over random landing areas: the plan does not depend on the order files
//! were written (listing order), and the chunks read every landed row exactly once.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use backfill_core::manifest::DuplicateFilePolicy;
use backfill_core::plan::ResolvedPlan;
use backfill_core::source::BackfillSource;
use backfill_files::{FileRow, FileSource, LocalLanding, Period};
use common::{day, Order};
use futures::TryStreamExt;
use proptest::prelude::*;

/// A file: month (1-3), day, number of rows, JSON lines or CSV.
fn files() -> impl Strategy<Value = Vec<(u32, u32, usize, bool)>> {
    prop::collection::vec((1u32..=3, 1u32..=28, 1usize..6, any::<bool>()), 1..8)
}

fn land(root: &std::path::Path, files: &[(u32, u32, usize, bool)], order: &[usize]) -> usize {
    let mut total = 0;
    for &i in order {
        let (m, d, n, json) = files[i];
        let rows = common::orders(&format!("f{i}"), day(m, d), n, i as i64);
        total += n;
        let (name, content) = if json {
            (
                format!("landing/2025/{m:02}/f{i}-2025-{m:02}-{d:02}.jsonl"),
                common::jsonl(&rows),
            )
        } else {
            (
                format!("landing/2025/{m:02}/f{i}-2025-{m:02}-{d:02}.csv"),
                common::csv(&rows),
            )
        };
        common::write(root, &name, &content);
    }
    total
}

async fn plan_and_read(
    root: &std::path::Path,
    period: Period,
) -> (ResolvedPlan, Vec<FileRow<Order>>) {
    let source: FileSource<Order> = FileSource::new(Arc::new(LocalLanding::new(root)))
        .chunk_by(period)
        .batch_size(3);
    let m = common::manifest(
        "bf-props",
        day(1, 1),
        day(4, 1),
        DuplicateFilePolicy::Reprocess,
    );
    let p = source.plan(&m).await.expect("plan");
    let plan = ResolvedPlan::new(&m.run_id, m.digest(), p, common::run::now());
    let mut rows = Vec::new();
    for c in &plan.chunks {
        let batches: Vec<Vec<FileRow<Order>>> = source.read(c).try_collect().await.expect("read");
        rows.extend(batches.into_iter().flatten());
    }
    (plan, rows)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn plans_do_not_depend_on_listing_order_and_read_each_row_once(
        files in files(),
        seed in any::<u64>(),
        daily in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let period = if daily { Period::Day } else { Period::Month };
        let forward: Vec<usize> = (0..files.len()).collect();
        let mut shuffled = forward.clone();
        // A deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let (tmp_a, tmp_b) = (common::temp(), common::temp());
        let (a, b) = (tmp_a.path(), tmp_b.path());
        let total = land(a, &files, &forward);
        land(b, &files, &shuffled);
        let ((plan_a, rows_a), (plan_b, rows_b)) = rt.block_on(async {
            (plan_and_read(a, period).await, plan_and_read(b, period).await)
        });
        prop_assert!(plan_a.same_work(&plan_b));
        prop_assert_eq!(&rows_a, &rows_b);
        prop_assert_eq!(rows_a.len(), total);
        let lineage: BTreeSet<_> = rows_a.iter().map(|r| (&r.lineage.path, r.lineage.line)).collect();
        prop_assert_eq!(lineage.len(), total, "a row read twice");
        let ids: BTreeSet<_> = rows_a.iter().map(|r| &r.record.id).collect();
        prop_assert_eq!(ids.len(), total);
    }
}

//! The estimate before approval over a file source: each chunk's bytes are the sizes of the files
//! it reads, records are left unknown (counting them means reading the files).

use crate::common;

use std::path::Path;
use std::sync::Arc;

use backfill_core::estimate::{CostModel, Estimate, Rate};
use backfill_core::manifest::DuplicateFilePolicy;
use backfill_files::{FileSource, LocalLanding};
use common::{day, Order};

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[tokio::test]
async fn chunk_bytes_are_the_sizes_of_the_files_read() {
    let dir = common::temp();
    let root = dir.path();
    common::landing(root);
    let source: FileSource<Order> = FileSource::new(Arc::new(LocalLanding::new(root)));
    let mut m = common::manifest(
        "bf-files-estimate",
        day(1, 1),
        day(4, 1),
        DuplicateFilePolicy::Reprocess,
    );
    m.safety.cost_model = Some(CostModel {
        bytes_per_second: Rate::new(100.0),
        usd_per_gb: Rate::new(1_000_000.0),
        ..CostModel::default()
    });
    let before = common::observe(root);

    let e = Estimate::resolve(&m, &source, common::run::now())
        .await
        .unwrap();

    let labels: Vec<&str> = e.chunks.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["2025-01", "2025-02", "2025-03"]);
    for (c, month) in e.chunks.iter().zip(1..) {
        let want = bytes_under(&root.join(format!("landing/2025/{month:02}")));
        assert!(want > 0);
        assert_eq!(c.size.bytes, Some(want), "{}", c.label);
        assert_eq!(c.size.records, None, "{}", c.label);
    }
    let total: u64 = (1..=3)
        .map(|m| bytes_under(&root.join(format!("landing/2025/{m:02}"))))
        .sum();
    assert_eq!(e.bytes, total);
    assert_eq!(e.unsized_records, labels);
    assert!(e.unsized_bytes.is_empty());
    assert!(e.coverage.is_exact());
    // Bytes drive duration and cost: 100 bytes/s, $1 per KB.
    assert_eq!(e.seconds, Some(total as f64 / 100.0));
    assert!((e.cost_usd.unwrap() - total as f64 / 1_000.0).abs() < 1e-9);
    // Estimating reads and moves nothing.
    assert_eq!(common::observe(root), before);
}

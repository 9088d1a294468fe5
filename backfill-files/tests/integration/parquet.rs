//! Parquet files (feature `parquet`) plan and read like the others, with lineage by row position.

use crate::common;

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use backfill_core::manifest::DuplicateFilePolicy;
use backfill_core::plan::ResolvedPlan;
use backfill_core::source::BackfillSource;
use backfill_files::{FileRow, FileSource, LocalLanding};
use common::{day, Order};
use futures::TryStreamExt;

fn parquet(orders: &[Order]) -> Vec<u8> {
    let ids: ArrayRef = Arc::new(StringArray::from_iter_values(
        orders.iter().map(|o| o.id.clone()),
    ));
    let days: ArrayRef = Arc::new(StringArray::from_iter_values(
        orders.iter().map(|o| o.day.to_string()),
    ));
    let cents: ArrayRef = Arc::new(Int64Array::from_iter_values(orders.iter().map(|o| o.cents)));
    let batch =
        RecordBatch::try_from_iter([("id", ids), ("day", days), ("cents", cents)]).expect("batch");
    let mut out = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    out
}

#[tokio::test]
async fn parquet_files_are_read_verified_with_lineage() {
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    let orders = common::orders("p", day(1, 7), 4, 10);
    let path = root.join("landing/2025/01/orders-2025-01-07.parquet");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    std::fs::write(&path, parquet(&orders)).expect("write");
    common::write(
        &root,
        "landing/2025/01/more.csv",
        &common::csv(&common::orders("c", day(1, 2), 2, 1)),
    );

    let source: FileSource<Order> = FileSource::new(Arc::new(LocalLanding::new(&root)));
    let m = common::manifest(
        "bf-parquet",
        day(1, 1),
        day(2, 1),
        DuplicateFilePolicy::Reject,
    );
    let p = source.plan(&m).await.expect("plan");
    let plan = ResolvedPlan::new(&m.run_id, m.digest(), p, common::run::now());
    let rows: Vec<FileRow<Order>> = source
        .read(&plan.chunks[0])
        .try_collect::<Vec<_>>()
        .await
        .expect("read")
        .into_iter()
        .flatten()
        .collect();
    let parquet_rows: Vec<&FileRow<Order>> = rows
        .iter()
        .filter(|r| r.lineage.path.ends_with(".parquet"))
        .collect();
    assert_eq!(
        parquet_rows
            .iter()
            .map(|r| r.record.clone())
            .collect::<Vec<_>>(),
        orders
    );
    assert_eq!(
        parquet_rows
            .iter()
            .map(|r| r.lineage.line)
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(rows.len(), 6);
}

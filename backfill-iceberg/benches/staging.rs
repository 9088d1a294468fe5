//! Q1: the staging sink writing 1,000,000 rows into Parquet data files of a month-partitioned table,
//! and the latency of publishing a replace-partitions run. Run through
//! `scripts/bench-iceberg-ratio.sh`, which times pyarrow writing the same rows in the same session.
//!
//! `staging <warehouse> <rows> serde|arrow|publish`: prints `rows=<n> seconds=<s>` (the stage call,
//! from first batch to receipt; rows generated before the clock starts) or, for `publish`,
//! `publish_ms=<median of 5> range=<min>-<max>`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, SchemaRef};
use backfill_core::context::OutputLineage;
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::manifest::{Mutation, RunKind, RunManifest, TargetSpec};
use backfill_core::mode::ExecutionMode;
use backfill_core::publish::{ChunkArtifact, PublishRequest, Publisher};
use backfill_core::sink::{StageRequest, StagingSink};
use backfill_iceberg::{
    lineage_fields, ArrowRows, IcebergCatalog, IcebergPublisher, IcebergStagingSink,
};
use chrono::{NaiveDate, TimeZone, Utc};
use futures::StreamExt;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use iceberg::{NamespaceIdent, TableIdent};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Sale {
    id: String,
    day: NaiveDate,
    region: String,
    amount: i64,
}

impl OutputRow for Sale {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Owned(self.day.format("%Y-%m").to_string())
    }
}

/// Typed builders instead of serde: what a user writes when the last bit of speed matters.
#[derive(Debug)]
struct SaleArrow;

impl ArrowRows<Sale> for SaleArrow {
    fn encode(&self, rows: &[&Sale], schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.id.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| (r.day - epoch).num_days() as i32),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.region.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.amount))),
        ];
        RecordBatch::try_new(Arc::clone(schema), cols)
    }
    fn decode(&self, _batch: &RecordBatch) -> Result<Vec<Sale>, ArrowError> {
        Err(ArrowError::NotYetImplemented(
            "the benchmark only writes".into(),
        ))
    }
}

fn schema() -> (Schema, UnboundPartitionSpec) {
    let mut fields = vec![
        NestedField::required(1, "id", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(2, "day", Type::Primitive(PrimitiveType::Date)).into(),
        NestedField::required(3, "region", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(4, "amount", Type::Primitive(PrimitiveType::Long)).into(),
    ];
    fields.extend(lineage_fields(5));
    let schema = Schema::builder()
        .with_fields(fields)
        .build()
        .expect("schema");
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(2, "day_month", Transform::Month)
        .expect("spec")
        .build();
    (schema, spec)
}

/// The rows pyarrow writes too (scripts/bench-iceberg-ratio.sh generates the same ones).
fn rows(n: usize, months: u32) -> Vec<Sale> {
    let start = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
    let days = i64::from(months) * 30;
    (0..n)
        .map(|i| Sale {
            id: format!("s{i:08}"),
            day: start + chrono::Duration::days(i as i64 % days),
            region: ["eu", "us", "apac"][i % 3].to_owned(),
            amount: (i as i64 * 37) % 10_000,
        })
        .collect()
}

fn lineage(run: &str) -> OutputLineage {
    OutputLineage {
        run_id: RunId::from(run),
        mode: ExecutionMode::Backfill,
        transform_name: "bench".into(),
        transform_version: "1.0.0".into(),
        input_snapshot: Some("1".into()),
        input_range: "2025-01-01..2025-05-01".into(),
        reference_data: String::new(),
        produced_at: Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).unwrap(),
    }
}

async fn stage<C: ArrowRows<Sale>>(
    sink: &IcebergStagingSink<Sale, C>,
    run: &str,
    data: Vec<Sale>,
) -> (ChunkArtifact, PartitionDigests, f64) {
    let digests = PartitionDigests::of_rows(&data);
    let batches: Vec<backfill_core::Result<Vec<Sale>>> =
        data.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let (r, c, l) = (RunId::from(run), ChunkId::from("00000-bench"), lineage(run));
    let t = Instant::now();
    let receipt = sink
        .stage(
            StageRequest {
                run_id: &r,
                chunk_id: &c,
                attempt: 1,
                lineage: &l,
            },
            futures::stream::iter(batches).boxed(),
        )
        .await
        .expect("stage");
    let secs = t.elapsed().as_secs_f64();
    (
        ChunkArtifact {
            chunk_id: c,
            attempt: 1,
            rows: receipt.rows,
            artifact: receipt.artifact,
        },
        digests,
        secs,
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 3 {
        eprintln!("usage: staging <warehouse> <rows> serde|arrow|publish");
        return;
    }
    let n: usize = args[1].parse().expect("rows");
    let catalog = IcebergCatalog::embedded(&args[0]).await.expect("catalog");
    let ident = TableIdent::new(
        NamespaceIdent::new("bench".into()),
        format!("sales_{}_{}", args[2], std::process::id()),
    );
    let (schema, spec) = schema();
    catalog
        .ensure_table(&ident, schema, spec)
        .await
        .expect("table");
    match args[2].as_str() {
        "serde" => {
            let sink = IcebergStagingSink::<Sale>::new(catalog, ident);
            let (_, _, s) = stage(&sink, "bf-q1", rows(n, 4)).await;
            println!("rows={n} seconds={s:.3}");
        }
        "arrow" => {
            let sink = IcebergStagingSink::with_codec(catalog, ident, SaleArrow);
            let (_, _, s) = stage(&sink, "bf-q1", rows(n, 4)).await;
            println!("rows={n} seconds={s:.3}");
        }
        "publish" => {
            // A table with twelve months of history, then five runs each replacing four months.
            let sink = IcebergStagingSink::with_codec(catalog.clone(), ident.clone(), SaleArrow);
            let publisher = IcebergPublisher::<Sale>::new(catalog, ident.clone());
            let mut times = Vec::new();
            let mut previous: Option<RunId> = None;
            for i in 0..6 {
                let run = format!("bf-p{i}");
                let months = if i == 0 { 12 } else { 4 };
                let (art, dig, _) = stage(&sink, &run, rows(n / 4, months)).await;
                let mut m =
                    RunManifest::new(run.as_str(), RunKind::Restatement, ExecutionMode::Backfill);
                m.target = TargetSpec {
                    kind: "iceberg_table".into(),
                    name: ident.to_string(),
                    mutation: Some(Mutation::ReplacePartitions),
                    ..TargetSpec::default()
                };
                let run_id = RunId::from(run.as_str());
                let t = Instant::now();
                publisher
                    .publish(PublishRequest {
                        run_id: &run_id,
                        manifest: &m,
                        digests: &dig,
                        artifacts: std::slice::from_ref(&art),
                        previous: previous.as_ref(),
                        at: Utc::now(),
                    })
                    .await
                    .expect("publish");
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                previous = Some(run_id);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "publish_ms={:.1} range={:.1}-{:.1}",
                times[times.len() / 2],
                times[0],
                times[times.len() - 1]
            );
        }
        other => eprintln!("unknown mode {other}"),
    }
}

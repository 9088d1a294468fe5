//! The estimate before approval over the Kafka source: a chunk's records are its offset span (what
//! a read yields on a topic without transaction markers or compaction); bytes are not sized.

use crate::common;

use backfill_core::estimate::Estimate;
use backfill_core::manifest::{InputRange, OffsetRange, RunKind, RunManifest, SourceSpec};
use backfill_core::plan::ResolvedPlan;
use backfill_core::prelude::ExecutionMode;
use backfill_core::source::BackfillSource;
use backfill_kafka::{KafkaRecord, KafkaSource};
use futures::TryStreamExt;

#[tokio::test(flavor = "multi_thread")]
async fn records_estimated_per_chunk_are_the_records_read() {
    let b = broker_or_skip!();
    let t = common::fresh_topic(&b, "estimate", 2).await;
    let t0 = (chrono::Utc::now().timestamp_millis() / 1000) * 1000 - 3_600_000;
    let records: Vec<(i32, String, Option<String>, i64)> = (0..40i64)
        .map(|i| {
            (
                (i % 2) as i32,
                format!("k{i}"),
                Some(format!("v{i}")),
                t0 + i * 1000,
            )
        })
        .collect();
    common::seed(&b, &t, &records).await;
    let source = KafkaSource::new(common::config(&b)).chunk_offsets(3);
    let mut m = RunManifest::new("bf-kafka-estimate", RunKind::Replay, ExecutionMode::Replay);
    m.source = SourceSpec {
        kind: "kafka".into(),
        name: t.clone(),
        range: Some(InputRange::Offsets {
            partitions: vec![
                OffsetRange {
                    partition: 0,
                    from: 5,
                    to_exclusive: 12,
                },
                OffsetRange {
                    partition: 1,
                    from: 0,
                    to_exclusive: 4,
                },
            ],
        }),
        ..SourceSpec::default()
    };

    let now = chrono::Utc::now();
    let e = Estimate::resolve(&m, &source, now).await.unwrap();
    assert_eq!(e.records, 11);
    assert!(e.coverage.is_exact(), "{}", e.coverage);
    assert!(e.complete());
    assert_eq!(e.unsized_bytes.len(), e.chunks.len(), "bytes are not sized");

    let plan = ResolvedPlan::new(&m.run_id, m.digest(), source.plan(&m).await.unwrap(), now);
    for (c, line) in plan.chunks.iter().zip(&e.chunks) {
        assert_eq!(c.id, line.id);
        let read: Vec<Vec<KafkaRecord>> = source.read(c).try_collect().await.unwrap();
        let n = read.iter().map(Vec::len).sum::<usize>() as u64;
        assert_eq!(line.size.records, Some(n), "{}", c.label);
    }
}

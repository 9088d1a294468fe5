//! The runner against a hand-written loop doing the same per-row work.
//!
//! Both sides derive a sha256 output id per input, build the output row, encode it canonically (the
//! default compact binary encoding), add it
//! to its partition's multiset digest and count it. The runner additionally plans, leases chunks from
//! the memory store, streams batches through the staging sink, records the ledger and evidence, and
//! validates (no validators attached: the digest read-back is measured separately). The ratio
//! `runner / hand loop` is what `scripts/bench-ratio.sh` reports.
#![allow(missing_docs)]

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;

use backfill_core::memory::{MemoryPublisher, MemorySink, MemorySource, MemoryStore};
use backfill_core::prelude::*;
use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::Serialize;

const ROWS: usize = 200_000;
const CHUNK: i64 = 20_000;

#[derive(Debug, Clone, Serialize)]
struct Out {
    id: String,
    key: u64,
    month: &'static str,
    amount: i64,
}

const MONTHS: [&str; 12] = [
    "2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06", "2025-07", "2025-08",
    "2025-09", "2025-10", "2025-11", "2025-12",
];

impl OutputRow for Out {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.month)
    }
}

#[derive(Debug)]
struct HashIds;

fn transform_one(input: &(u64, i64), run_id: &str) -> Out {
    let key = input.0.to_string();
    Out {
        id: backfill_core::ids::derive_id(run_id, &[&key]),
        key: input.0,
        month: MONTHS[(input.0 % 12) as usize],
        amount: input.1 * 3,
    }
}

impl DeterministicTransform for HashIds {
    type Input = (u64, i64);
    type Output = Out;
    fn name(&self) -> &str {
        "hash-ids"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        input: &Self::Input,
        ctx: &TransformContext,
        out: &mut Vec<Out>,
    ) -> Result<(), TransformError> {
        out.push(transform_one(input, ctx.run_id().as_str()));
        Ok(())
    }
}

fn inputs() -> Vec<(u64, i64)> {
    (0..ROWS as u64)
        .map(|i| (i, (i as i64 * 7919) % 10_007))
        .collect()
}

fn manifest() -> ApprovedManifest {
    let mut m = RunManifest::new("bf-bench", RunKind::Backfill, ExecutionMode::Backfill);
    m.reason = "benchmark".into();
    m.requested_by = "bench".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "inputs".into(),
        snapshot: Some("s".into()),
        range: Some(InputRange::Offsets {
            partitions: vec![backfill_core::manifest::OffsetRange {
                partition: 0,
                from: 0,
                to_exclusive: ROWS as i64,
            }],
        }),
    };
    m.transform.name = "hash-ids".into();
    m.transform.version = "1.0.0".into();
    m.target.name = "bench".into();
    m.target.mutation = Some(Mutation::ReplacePartitions);
    m.target.partitions = MONTHS.iter().map(|p| PartitionKey::from(*p)).collect();
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.manual_publish = true;
    m.validation = Some(ValidationPlan {
        quality_gate: Some("bench".into()),
        ..Default::default()
    });
    m.approve("owner", Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        .unwrap()
}

fn hand_loop(records: &[(u64, i64)]) -> (PartitionDigests, u64, Vec<Out>) {
    let mut digests = PartitionDigests::default();
    let mut staged = Vec::with_capacity(records.len());
    let mut scratch = Vec::new();
    let mut count = 0u64;
    for r in records {
        let row = transform_one(r, "bf-bench");
        scratch.clear();
        row.encode_canonical(&mut scratch).unwrap();
        digests.add_encoded(&row.partition(), &scratch);
        count += 1;
        staged.push(row);
    }
    (digests, count, staged)
}

fn bench(c: &mut Criterion) {
    let records = inputs();
    let approved = manifest();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("runner_vs_hand_loop");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);

    group.bench_function("hand_loop", |b| {
        b.iter(|| black_box(hand_loop(black_box(&records))))
    });

    group.bench_function("runner", |b| {
        b.iter_batched(
            || {
                let runner = Runner::builder(
                    Arc::new(MemoryStore::new()),
                    Arc::new(MemorySource::by_offset(records.clone(), CHUNK).batch_size(4096)),
                    Arc::new(HashIds),
                    Arc::new(MemorySink::new("staging")),
                    Arc::new(MemoryPublisher::new("bench")),
                )
                .build();
                rt.block_on(runner.submit(&approved)).unwrap();
                runner
            },
            |runner| {
                let report = rt.block_on(runner.run(approved.run_id())).unwrap();
                assert_eq!(report.output_rows, ROWS as u64);
                black_box(report)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // Same answer on both sides.
    let (hand, _, _) = hand_loop(&records);
    let runner = Runner::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(MemorySource::by_offset(records.clone(), CHUNK)),
        Arc::new(HashIds),
        Arc::new(MemorySink::new("staging")),
        Arc::new(MemoryPublisher::new("bench")),
    )
    .build();
    rt.block_on(runner.submit(&approved)).unwrap();
    assert_eq!(
        rt.block_on(runner.run(approved.run_id())).unwrap().digests,
        hand
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

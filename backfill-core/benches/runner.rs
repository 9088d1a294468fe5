//! The runner against a hand-written loop doing the same per-row work, and against the floor.
//!
//! Workload R1: 200,000 inputs, 10 chunks of 20,000, batches of 4,096.
//!
//! * `hand_loop` (today's hand loop): derive a sha256 output id per input, build the output row,
//!   encode it canonically (the default [`OutputRow::encode_canonical`]), add it to its partition's
//!   multiset digest, count it and keep it in a vector.
//! * `floor`: only the per-row work that must be done: the sha256 output id (as hex, since the row
//!   carries it) and the sha256 of the row's compact binary encoding added into its partition's
//!   multiset digest. No row is built or kept, the encoding borrows everything, partitions are an
//!   array index.
//! * `runner`: the same transform through the runner, which also plans, leases chunks from the memory
//!   store, streams batches through the staging sink, checks scope, records the ledger and evidence,
//!   and validates (no validators attached: the digest read-back is measured separately).
//!
//! All three produce the same digests (checked at the end). `scripts/bench-ratio.sh` reports rows/s
//! and the time ratios `runner / hand_loop` and `runner / floor`.
//!
//! `BENCH_CLOCK=cpu` measures the CPU time of the benchmarking thread instead of wall time (the runner
//! runs on a current-thread runtime, so that thread does all of its work): on a shared machine it is
//! not inflated by time the thread spends waiting for a core.
#![allow(missing_docs)]

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use backfill_core::memory::{MemoryPublisher, MemorySink, MemorySource, MemoryStore};
use backfill_core::prelude::*;
use chrono::{TimeZone, Utc};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput};
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

/// `Out` borrowed: the same serde shape, so the same canonical bytes, without allocating.
#[derive(Serialize)]
#[serde(rename = "Out")]
struct OutView<'a> {
    id: &'a str,
    key: u64,
    month: &'static str,
    amount: i64,
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
        snapshot: Some("bench".into()),
        range: Some(InputRange::Offsets {
            partitions: vec![backfill_core::manifest::OffsetRange {
                partition: 0,
                from: 0,
                to_exclusive: ROWS as i64,
            }],
        }),
        ..SourceSpec::default()
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

/// An executor over fresh in-memory parts.
fn executor(source: MemorySource<(u64, i64)>) -> Executor<HashIds> {
    let sink = Arc::new(MemorySink::new("staging"));
    let target = Arc::new(MemoryPublisher::new("bench", &sink));
    let control = Control::new(Arc::new(MemoryStore::new()))
        .with_target(Arc::clone(&target) as Arc<dyn Publisher>)
        .expect("one target");
    Executor::builder(
        control,
        Arc::new(source.snapshot("bench")),
        Arc::new(HashIds),
        sink,
        target,
    )
    .build()
}

/// Decimal digits of `n`, written into `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap()
}

/// The floor: per input, the sha256 output id and the sha256 of the compact binary encoding added into
/// the multiset digest. Nothing else.
fn floor_loop(records: &[(u64, i64)]) -> PartitionDigests {
    let mut digests = [PartitionDigest::default(); 12];
    let mut scratch = Vec::with_capacity(128);
    let (mut key_buf, mut id_buf) = ([0u8; 20], [0u8; 64]);
    for r in records {
        let id = backfill_core::ids::derive_id_bytes("bf-bench", &[decimal(r.0, &mut key_buf)]);
        hex::encode_to_slice(id, &mut id_buf).unwrap();
        let month = (r.0 % 12) as usize;
        let row = OutView {
            id: std::str::from_utf8(&id_buf).unwrap(),
            key: r.0,
            month: MONTHS[month],
            amount: r.1 * 3,
        };
        scratch.clear();
        backfill_core::encode::encode_into(&row, &mut scratch).unwrap();
        digests[month].add_encoded(&scratch);
    }
    PartitionDigests(
        MONTHS
            .iter()
            .zip(digests)
            .filter(|(_, d)| d.rows > 0)
            .map(|(m, d)| (PartitionKey::from(*m), d))
            .collect(),
    )
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
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

    group.bench_function("floor", |b| {
        b.iter(|| black_box(floor_loop(black_box(&records))))
    });

    group.bench_function("runner", |b| {
        b.iter_batched(
            || {
                let runner =
                    executor(MemorySource::by_offset(records.clone(), CHUNK).batch_size(4096));
                rt.block_on(runner.control().submit(&approved)).unwrap();
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

    // Same answer on all sides.
    let (hand, _, _) = hand_loop(&records);
    assert_eq!(floor_loop(&records), hand);
    let runner = executor(MemorySource::by_offset(records.clone(), CHUNK));
    rt.block_on(runner.control().submit(&approved)).unwrap();
    assert_eq!(
        rt.block_on(runner.run(approved.run_id())).unwrap().digests,
        hand
    );
}

/// CPU time of the calling thread.
struct ThreadCpu;

static WALL: WallTime = WallTime;

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, started: Duration) -> Duration {
        thread_cpu() - started
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn main() {
    if std::env::var("BENCH_CLOCK").as_deref() == Ok("cpu") {
        eprintln!("R1 clock: cpu (thread CPU time)");
        bench(
            &mut Criterion::default()
                .with_measurement(ThreadCpu)
                .configure_from_args(),
        );
    } else {
        eprintln!("R1 clock: wall");
        bench(&mut Criterion::default().configure_from_args());
    }
    Criterion::default().configure_from_args().final_summary();
}

//! S1: one restatement on PostgreSQL shared by N worker processes (`scripts/bench-workers.sh`).
//!
//! `workers_bench submit --url URL --run RUN --workload cpu|io` creates the namespace's run (a
//! `replace_partitions` restatement of `--rows` integers in chunks of `--chunk`);
//! `workers_bench work --url URL --run RUN --workload cpu|io --worker NAME` is one worker process:
//! it runs the run until every chunk is staged and validated, and prints its wall time. The `cpu`
//! workload hashes every record `--rounds` times (SHA-256) in the transform (CPU-bound); `io`
//! stages the records as they are (bound by PostgreSQL round trips and staging writes).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backfill_core::digest::OutputRow;
use backfill_core::manifest::{OffsetRange, SideEffectPolicy};
use backfill_core::memory::MemorySource;
use backfill_core::prelude::*;
use backfill_sql::{
    Column, ConnectOptions, Ident, SqlPool, SqlPublisher, SqlRow, SqlSink, SqlStore, SqlType,
};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Out {
    id: String,
    part: String,
    n: i64,
    hash: String,
}

impl OutputRow for Out {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.part)
    }
}

impl SqlRow for Out {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::Text),
        Column::new("part", SqlType::Text),
        Column::new("n", SqlType::BigInt),
        Column::new("hash", SqlType::Text),
    ];
    const PARTITION_COLUMN: &'static str = "part";
}

/// Rounds of SHA-256 per record for the `cpu` workload (0 for `io`).
#[derive(Debug)]
struct Hashing {
    rounds: u32,
}

impl DeterministicTransform for Hashing {
    type Input = i64;
    type Output = Out;
    fn name(&self) -> &str {
        "hashing"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        i: &i64,
        ctx: &TransformContext,
        out: &mut Vec<Out>,
    ) -> Result<(), TransformError> {
        let mut h: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
        for _ in 0..self.rounds {
            h = Sha256::digest(h).into();
        }
        out.push(Out {
            id: ctx.output_id(&[&i.to_string()]),
            part: format!("p{}", i % 8),
            n: *i,
            hash: hex::encode(&h[..8]),
        });
        Ok(())
    }
}

struct Args {
    command: String,
    url: String,
    run: String,
    workload: String,
    worker: String,
    rows: i64,
    chunk: i64,
    rounds: u32,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it
        .next()
        .ok_or("usage: workers_bench submit|work --url URL --run RUN ...")?;
    let mut a = Args {
        command,
        url: String::new(),
        run: String::new(),
        workload: "cpu".into(),
        worker: "w".into(),
        rows: 64_000,
        chunk: 2_000,
        rounds: 1_000,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => a.url = value,
            "--run" => a.run = value,
            "--workload" => a.workload = value,
            "--worker" => a.worker = value,
            "--rows" => a.rows = value.parse().map_err(|e| format!("--rows: {e}"))?,
            "--chunk" => a.chunk = value.parse().map_err(|e| format!("--chunk: {e}"))?,
            "--rounds" => a.rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.url.is_empty() || a.run.is_empty() {
        return Err("--url and --run are required".into());
    }
    Ok(a)
}

fn manifest(a: &Args) -> Result<ApprovedManifest, Error> {
    let mut m = RunManifest::new(
        a.run.as_str(),
        RunKind::Restatement,
        ExecutionMode::Backfill,
    );
    m.reason = "S1: workers scale out".into();
    m.requested_by = "bench".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "ints".into(),
        snapshot: Some("s".into()),
        range: Some(InputRange::Offsets {
            partitions: vec![OffsetRange {
                partition: 0,
                from: 0,
                to_exclusive: a.rows,
            }],
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "hashing".into();
    m.transform.version = "1.0.0".into();
    m.target.name = "bench_out".into();
    m.target.mutation = Some(Mutation::ReplacePartitions);
    m.target.partitions = (0..8)
        .map(|i| PartitionKey::from(format!("p{i}")))
        .collect();
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.manual_publish = true;
    m.safety.limits.max_chunks_in_parallel = 1;
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..Default::default()
    });
    m.approve("owner", chrono::Utc::now())
}

async fn executor(a: &Args) -> Result<Executor<Hashing>, Error> {
    // The run lives in its own namespace (a PostgreSQL schema named after it).
    let ns = Ident::new(&a.run.replace('-', "_"))?;
    let pool = SqlPool::connect_with(
        &a.url,
        &ConnectOptions::namespaced(ns).with_max_connections(4),
    )
    .await?;
    let store = Arc::new(SqlStore::new(pool.clone()).await?);
    let sink = Arc::new(SqlSink::<Out>::new(pool.clone(), "bench_out").await?);
    let publisher = Arc::new(SqlPublisher::<Out>::new(pool, "bench_out").await?);
    let control = Control::new(store).with_target(Arc::<SqlPublisher<Out>>::clone(&publisher))?;
    let source = MemorySource::by_offset((0..a.rows).collect(), a.chunk)
        .batch_size(500)
        .snapshot("s");
    let rounds = if a.workload == "cpu" { a.rounds } else { 0 };
    Ok(Executor::builder(
        control,
        Arc::new(source),
        Arc::new(Hashing { rounds }),
        sink,
        publisher,
    )
    .options(RunnerOptions::worker(a.worker.as_str()).with_lease(Duration::from_secs(30)))
    .build())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let e = executor(&a).await?;
    let approved = manifest(&a)?;
    match a.command.as_str() {
        "submit" => {
            e.control().submit(&approved).await?;
            println!("submitted {}", a.run);
        }
        "work" => {
            let started = Instant::now();
            let report = e.run(approved.run_id()).await?;
            println!(
                "worker {} done in {:.3} s: run {} {} ({} rows)",
                a.worker,
                started.elapsed().as_secs_f64(),
                a.run,
                report.state,
                report.output_rows
            );
        }
        other => return Err(format!("unknown command {other}").into()),
    }
    Ok(())
}

//! K1: replaying an exact offset range through an identity transform into staging, timed from
//! process start to the last staged record, for `scripts/bench-kafka-ratio.sh` to compare with kcat
//! reading the same range.
//!
//! `replay BROKERS TOPIC memory|kafka` plans the topic's whole committed range (one chunk per
//! partition), reads every chunk in parallel, applies the identity (`ReplayRecord::of`) and stages
//! into a memory sink (`memory`: the read path alone) or the transactional Kafka staging sink
//! (`kafka`: read, produce and commit). It prints `records=<n> seconds=<s>`. `replay BROKERS TOPIC
//! create` creates the 4-partition topic.

use std::sync::Arc;
use std::time::Instant;

use backfill_core::context::{ExecutionMode, OutputLineage};
use backfill_core::ids::RunId;
use backfill_core::manifest::{InputRange, OffsetRange, RunKind, RunManifest, SourceSpec};
use backfill_core::memory::MemorySink;
use backfill_core::plan::ResolvedPlan;
use backfill_core::sink::{StageRequest, StagingSink};
use backfill_core::source::BackfillSource;
use backfill_kafka::{
    watermarks, KafkaConfig, KafkaSource, KafkaStagingSink, ReplayCodec, ReplayRecord,
};
use futures::{StreamExt, TryStreamExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let (Some(brokers), Some(topic), Some(mode)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: replay BROKERS TOPIC memory|kafka");
        std::process::exit(2);
    };
    let mut cfg = KafkaConfig::new(brokers).set("receive.message.max.bytes", "2000000000");
    // K1_PROPS="compression.type=lz4,linger.ms=20": client properties to compare settings.
    for kv in std::env::var("K1_PROPS").unwrap_or_default().split(',') {
        if let Some((k, v)) = kv.split_once('=') {
            cfg = cfg.set(k.trim(), v.trim());
        }
    }
    if mode == "create" {
        backfill_kafka::ensure_topic(&cfg, topic, 4, 1).await?;
        return Ok(());
    }
    let ranges: Vec<OffsetRange> = watermarks(&cfg, topic, &[0, 1, 2, 3])
        .await?
        .into_iter()
        .map(|(partition, from, to_exclusive)| OffsetRange {
            partition,
            from,
            to_exclusive,
        })
        .collect();
    let run = RunId::from(format!(
        "bf-k1-{}-{}",
        std::process::id(),
        start.elapsed().as_nanos()
    ));
    let mut m = RunManifest::new(run.as_str(), RunKind::Replay, ExecutionMode::Replay);
    m.source = SourceSpec {
        kind: "kafka".into(),
        name: topic.clone(),
        range: Some(InputRange::Offsets { partitions: ranges }),
        ..SourceSpec::default()
    };
    if std::env::var("K1_TRACE").is_ok() {
        eprintln!("watermarks at {:?}", start.elapsed());
    }
    let source = Arc::new(KafkaSource::new(cfg.clone()).chunk_offsets(i64::MAX));
    let plan = ResolvedPlan::new(&run, m.digest(), source.plan(&m).await?, chrono::Utc::now());
    if std::env::var("K1_TRACE").is_ok() {
        eprintln!("planned at {:?}", start.elapsed());
    }
    let sink: Arc<dyn StagingSink<ReplayRecord>> = match mode.as_str() {
        "memory" => Arc::new(MemorySink::new("k1")),
        _ => Arc::new(KafkaStagingSink::new(cfg.clone(), ReplayCodec).prefix("bench.staging.")),
    };
    let lineage = Arc::new(OutputLineage {
        run_id: run.clone(),
        mode: ExecutionMode::Replay,
        transform_name: "identity".into(),
        transform_version: "1.0.0".into(),
        input_snapshot: plan.snapshot.clone(),
        input_range: "offsets".into(),
        reference_data: String::new(),
        produced_at: chrono::Utc::now(),
    });
    // Chunks staged at the same time (the manifest's max_chunks_in_parallel), 4 by default.
    let parallel: usize = std::env::var("K1_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let tasks: Vec<_> = plan
        .chunks
        .iter()
        .cloned()
        .map(|chunk| {
            let (source, sink, lineage, run) = (
                Arc::clone(&source),
                Arc::clone(&sink),
                Arc::clone(&lineage),
                run.clone(),
            );
            let permits = Arc::clone(&permits);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let rows = source
                    .read(&chunk)
                    .map_ok(|batch| batch.iter().map(ReplayRecord::of).collect::<Vec<_>>())
                    .boxed();
                let req = StageRequest {
                    run_id: &run,
                    chunk_id: &chunk.id,
                    attempt: 1,
                    lineage: &lineage,
                };
                sink.stage(req, rows).await.map(|r| r.rows)
            })
        })
        .collect();
    let mut records = 0;
    for t in tasks {
        records += t.await??;
    }
    println!(
        "records={records} seconds={:.3}",
        start.elapsed().as_secs_f64()
    );
    if mode != "memory" {
        sink.discard(&run).await?;
    }
    Ok(())
}

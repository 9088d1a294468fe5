//! A Kafka replay end to end: seed a topic, replay an exact offset range through a transform into
//! a run-scoped staging topic, validate, publish into a backfill topic, print the evidence.
//!
//! Run it with `cargo run -p backfill-examples --example kafka_replay -- --brokers 127.0.0.1:9092`.
//! The run store is a SQLite file in `--data-dir`, so killing the process and starting it again
//! resumes at the first unfinished chunk, and a published run is never published again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::manifest::OffsetRange;
use backfill_core::prelude::*;
use backfill_core::runner::{ProgressListener, RunEvent};
use backfill_core::validate::UniqueKey;
use backfill_kafka::{
    ensure_topic, watermarks, KafkaConfig, KafkaRecord, KafkaSource, KafkaStagingSink,
    KafkaTopicPublisher, ReplayCodec, ReplayRecord,
};
use backfill_sql::SqlStore;
use chrono::{TimeZone, Utc};
use clap::Parser;
use serde::{Deserialize, Serialize};

/// What the replay needs.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Bootstrap brokers.
    pub brokers: String,
    /// Directory of the SQLite run store.
    pub data_dir: PathBuf,
    /// The topic replayed (seeded when empty).
    pub source_topic: String,
    /// The declared backfill topic the run is published to.
    pub target_topic: String,
    /// Records to seed an empty source topic with.
    pub records: u64,
    /// Exit the process after this many staged chunks (to show that a restart resumes).
    pub crash_after_chunks: Option<usize>,
    /// The run id (one per replay; it names the run's staging topic).
    pub run_id: String,
}

/// What a finished replay reports.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    /// The run.
    pub run_id: RunId,
    /// Its state.
    pub state: RunState,
    /// Records published to the target topic.
    pub published: u64,
    /// Lines of the evidence trail.
    pub evidence: Vec<String>,
}

/// An order event as the live pipeline wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub order_id: String,
    /// Units.
    pub quantity: i64,
    /// Price per unit in cents.
    pub unit_cents: i64,
    /// Total as v1 computed it (it dropped the last unit).
    pub total_cents: i64,
}

/// v2 of the order-totals transform: recomputes the total from quantity and unit price, keeps the
/// key, headers and original timestamp.
#[derive(Debug)]
pub struct OrderTotals;

impl DeterministicTransform for OrderTotals {
    type Input = KafkaRecord;
    type Output = ReplayRecord;

    fn name(&self) -> &str {
        "order-totals"
    }

    fn version(&self) -> &str {
        "2.0.0"
    }

    fn apply(
        &self,
        r: &KafkaRecord,
        _ctx: &TransformContext,
        out: &mut Vec<ReplayRecord>,
    ) -> Result<(), TransformError> {
        let mut row = ReplayRecord::of(r);
        if let Some(v) = &r.value {
            let mut o: Order = serde_json::from_slice(v).map_err(|e| {
                TransformError::new(format!("{}/{}@{}: {e}", r.topic, r.partition, r.offset))
            })?;
            o.total_cents = o.quantity * o.unit_cents;
            row.value =
                Some(serde_json::to_vec(&o).map_err(|e| TransformError::new(e.to_string()))?);
        }
        out.push(row);
        Ok(())
    }
}

/// The run id the example uses unless told otherwise.
pub const RUN: &str = "bf-2026-12-orders-totals-v2-001";
const OWNER: &str = "orders-data-owner";

/// Seeds an empty topic with order events (v1's wrong totals), 4 partitions, keyed by order id.
async fn seed(cfg: &KafkaConfig, topic: &str, n: u64) -> Result<(), Error> {
    ensure_topic(cfg, topic, 4, 1).await?;
    let ends = watermarks(cfg, topic, &[0, 1, 2, 3]).await?;
    if ends.iter().any(|(_, _, hi)| *hi > 0) {
        return Ok(());
    }
    let rows = (0..n).map(|i| {
        let quantity = 1 + (i % 5) as i64;
        let unit_cents = 250 + (i % 7) as i64 * 10;
        let o = Order {
            order_id: format!("o-{i:07}"),
            quantity,
            unit_cents,
            total_cents: (quantity - 1) * unit_cents,
        };
        (
            o.order_id.clone(),
            serde_json::to_vec(&o).unwrap_or_default(),
        )
    });
    backfill_kafka::produce_plain(cfg, topic, rows).await
}

fn manifest(cfg: &ReplayConfig, ranges: Vec<OffsetRange>) -> RunManifest {
    let mut m = RunManifest::new(cfg.run_id.as_str(), RunKind::Replay, ExecutionMode::Replay);
    m.reason = "order totals dropped the last unit in order-totals 1.x; replay with 2.0.0".into();
    m.requested_by = "orders-platform".into();
    m.source = SourceSpec {
        kind: "kafka".into(),
        name: cfg.source_topic.clone(),
        cluster: Some("local".into()),
        range: Some(InputRange::Offsets { partitions: ranges }),
        ..SourceSpec::default()
    };
    m.transform.name = "order-totals".into();
    m.transform.version = "2.0.0".into();
    m.transform.git_commit = Some("5e1f0c2".into());
    m.target = TargetSpec {
        kind: "kafka_topic".into(),
        name: cfg.target_topic.clone(),
        mutation: Some(Mutation::AppendWithRunId),
        partitions: (0..4).map(|p| PartitionKey::from(p.to_string())).collect(),
        consumers: vec!["billing-reconciler".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.limits.max_chunks_in_parallel = 2;
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        checks: vec!["unique(source_position)".into()],
        ..ValidationPlan::default()
    });
    m
}

#[derive(Debug)]
struct Progress {
    crash_after: Option<usize>,
    staged: AtomicUsize,
}

impl ProgressListener for Progress {
    fn event(&self, _run: &RunId, event: &RunEvent) {
        match event {
            RunEvent::Planned { total, done } => {
                eprintln!("  {total} chunks planned, {done} already done")
            }
            RunEvent::ChunkStaged {
                label,
                rows,
                done,
                total,
            } => {
                eprintln!("  chunk {done:>2}/{total} {label}: {rows} records staged");
                let n = self.staged.fetch_add(1, Ordering::SeqCst) + 1;
                if self.crash_after == Some(n) {
                    eprintln!("  injected crash after {n} chunks");
                    std::process::exit(3);
                }
            }
            RunEvent::ChunkFailed { label, error } => eprintln!("  chunk {label} failed: {error}"),
            RunEvent::State(s) => eprintln!("  -> {s}"),
            _ => {}
        }
    }
}

/// Seeds (if empty), plans, replays, validates and publishes; safe to run again.
pub async fn run(cfg: &ReplayConfig) -> Result<ReplaySummary, Error> {
    let kafka = KafkaConfig::new(&cfg.brokers)
        .cluster("local")
        .timeout(Duration::from_secs(30))
        .set("receive.message.max.bytes", "2000000000");
    seed(&kafka, &cfg.source_topic, cfg.records).await?;
    // The exact range: the middle 80% of every partition, as it stood when the run was defined.
    let ranges: Vec<OffsetRange> = watermarks(&kafka, &cfg.source_topic, &[0, 1, 2, 3])
        .await?
        .into_iter()
        .map(|(p, lo, hi)| OffsetRange {
            partition: p,
            from: lo + (hi - lo) / 10,
            to_exclusive: hi - (hi - lo) / 10,
        })
        .collect();
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| Error::adapter("example", e))?;
    let url = format!("sqlite://{}", cfg.data_dir.join("runs.db").display());
    let store = Arc::new(SqlStore::connect(&url).await?);
    let staging = Arc::new(KafkaStagingSink::new(kafka.clone(), ReplayCodec));
    let target = Arc::new(KafkaTopicPublisher::new(
        kafka.clone(),
        &cfg.target_topic,
        ReplayCodec,
    ));
    let control = Control::new(store).with_target(Arc::clone(&target) as Arc<dyn Publisher>)?;
    let approved_at = Utc
        .with_ymd_and_hms(2026, 12, 4, 9, 0, 0)
        .single()
        .unwrap_or_default();
    let approved = manifest(cfg, ranges).approve(OWNER, approved_at)?;
    control.submit(&approved).await?;
    let executor = Executor::builder(
        control.clone(),
        Arc::new(KafkaSource::new(kafka).chunk_offsets(2_500)),
        Arc::new(OrderTotals),
        staging,
        target,
    )
    .options(RunnerOptions::worker("kafka-replay-example"))
    .validator(Arc::new(UniqueKey::new(
        "source_position",
        |r: &ReplayRecord| {
            format!(
                "{}/{}@{}",
                r.source.topic, r.source.partition, r.source.offset
            )
        },
    )))
    .progress(Arc::new(Progress {
        crash_after: cfg.crash_after_chunks,
        staged: AtomicUsize::new(0),
    }))
    .build();
    let run_id = RunId::from(cfg.run_id.as_str());
    let report = executor.run(&run_id).await?;
    let published = report.receipt.as_ref().map_or(0, |r| r.rows);
    let evidence = control
        .store()
        .evidence(&run_id)
        .await?
        .iter()
        .map(|e| {
            format!(
                "#{:<3} {:<16} {}",
                e.seq,
                e.kind().as_str(),
                describe(&e.record)
            )
        })
        .collect();
    Ok(ReplaySummary {
        run_id,
        state: report.state,
        published,
        evidence,
    })
}

fn describe(r: &EvidenceRecord) -> String {
    match r {
        EvidenceRecord::PlanResolved {
            snapshot, chunks, ..
        } => format!(
            "{} chunks at {}",
            chunks.len(),
            snapshot.as_deref().unwrap_or("-")
        ),
        EvidenceRecord::Transition(t) => format!("{} -> {}: {}", t.from, t.to, t.reason),
        EvidenceRecord::ChunkStaged {
            chunk_id, output, ..
        } => format!("chunk {chunk_id}: {output} records"),
        EvidenceRecord::Validation(o) => format!("{}: {:?} {}", o.validator, o.verdict, o.summary),
        EvidenceRecord::Published { receipt, .. } => {
            format!(
                "{} records to {} ({})",
                receipt.rows, receipt.target, receipt.reference
            )
        }
        EvidenceRecord::PointerMoved { target, to, .. } => format!("{target} -> {to}"),
        other => other.kind().as_str().to_owned(),
    }
}

/// Replay order events with order-totals 2.0.0 into a backfill topic.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Bootstrap brokers (`host:port`).
    #[arg(long, env = "BACKFILL_KAFKA_BROKERS")]
    brokers: String,
    /// Directory for the SQLite run store (created when missing).
    #[arg(long, default_value = "kafka-replay-data")]
    data_dir: PathBuf,
    /// Topic to replay (seeded with order events when empty).
    #[arg(long, default_value = "orders.v1")]
    source_topic: String,
    /// The declared backfill topic.
    #[arg(long, default_value = "orders.v1.backfill")]
    target_topic: String,
    /// Records to seed an empty source topic with.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Exit after this many staged chunks (the next invocation resumes).
    #[arg(long)]
    crash_after_chunks: Option<usize>,
    /// The run id.
    #[arg(long, default_value = RUN)]
    run_id: String,
}

/// The example's command line: parses the arguments, runs the replay, prints the evidence and
/// `published <N> records to <topic>` last.
pub async fn main() -> ExitCode {
    let a = Args::parse();
    let cfg = ReplayConfig {
        brokers: a.brokers,
        data_dir: a.data_dir,
        source_topic: a.source_topic,
        target_topic: a.target_topic.clone(),
        records: a.records,
        crash_after_chunks: a.crash_after_chunks,
        run_id: a.run_id,
    };
    match run(&cfg).await {
        Ok(s) => {
            println!("evidence of {} ({}):", s.run_id, s.state);
            for line in &s.evidence {
                println!("  {line}");
            }
            println!("published {} records to {}", s.published, a.target_topic);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kafka_replay: {e}");
            ExitCode::FAILURE
        }
    }
}

//! Run-wide limits hold across worker processes: three processes of this test binary (re-executed
//! as workers) share one run in one store, and the manifest's chunks in parallel, rows and bytes per
//! minute, commits per hour and row ceiling bound the run as a whole, not each process. Checked
//! from the ledger's chunk times, the stagings each process logs, and the run's status (which shows
//! the time spent waiting for each budget).
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::borrow::Cow;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::manifest::{OffsetRange, SideEffectPolicy};
use backfill_core::memory::MemorySource;
use backfill_core::prelude::*;
use backfill_core::sink::{StageReceipt, StageRequest};
use backfill_sql::{
    Column, ConnectOptions, Ident, SqlPool, SqlPublisher, SqlRow, SqlSink, SqlStore, SqlType,
};
use futures::stream::{BoxStream, TryStreamExt};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Out {
    id: String,
    part: String,
    n: i64,
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
    ];
    const PARTITION_COLUMN: &'static str = "part";
}

#[derive(Debug)]
struct Ints;
impl DeterministicTransform for Ints {
    type Input = i64;
    type Output = Out;
    fn name(&self) -> &str {
        "ints"
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
        out.push(Out {
            id: ctx.output_id(&[&i.to_string()]),
            part: format!("p{}", i % 2),
            n: *i,
        });
        Ok(())
    }
}

/// Stages through the SQL sink after a pause, so chunks overlap in time when they may, and logs
/// when each staging began and ended (inside the chunk's lease) to `BF_LIMITS_LOG`, one file per
/// process.
#[derive(Debug)]
struct Slow(Arc<SqlSink<Out>>);

fn micros_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default()
}

#[async_trait]
impl StagingSink<Out> for Slow {
    fn descriptor(&self) -> SinkDescriptor {
        self.0.descriptor()
    }
    async fn stage(
        &self,
        req: StageRequest<'_>,
        rows: BoxStream<'_, backfill_core::Result<Vec<Out>>>,
    ) -> backfill_core::Result<StageReceipt> {
        let began = micros_now();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let staged = self.0.stage(req, rows).await;
        if let Ok(dir) = std::env::var("BF_LIMITS_LOG") {
            use std::io::Write;
            let path = std::path::Path::new(&dir).join(format!("{}.log", std::process::id()));
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("log");
            writeln!(f, "{began} {}", micros_now()).expect("log");
        }
        staged
    }
    fn read_staged<'a>(
        &'a self,
        run_id: &'a RunId,
    ) -> BoxStream<'a, backfill_core::Result<Vec<Out>>> {
        self.0.read_staged(run_id)
    }
    async fn discard(&self, run_id: &RunId) -> backfill_core::Result<()> {
        self.0.discard(run_id).await
    }
}

/// A scenario: its run, its input size and chunk size, and the limits it sets.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    Parallel,
    SharedId,
    Rows,
    Bytes,
    Commits,
    Ceiling,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Parallel => "parallel",
            Self::SharedId => "shared",
            Self::Rows => "rows",
            Self::Bytes => "bytes",
            Self::Commits => "commits",
            Self::Ceiling => "ceiling",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "parallel" => Self::Parallel,
            "shared" => Self::SharedId,
            "rows" => Self::Rows,
            "bytes" => Self::Bytes,
            "ceiling" => Self::Ceiling,
            _ => Self::Commits,
        }
    }
    /// (rows, rows per chunk)
    fn input(self) -> (i64, i64) {
        match self {
            Self::Parallel | Self::SharedId => (1_200, 100),
            Self::Rows | Self::Bytes => (3_000, 250),
            Self::Commits => (600, 100),
            Self::Ceiling => (6_000, 500),
        }
    }
    fn manifest(self) -> ApprovedManifest {
        let (rows, _) = self.input();
        let mut m = RunManifest::new(
            format!("bf-limits-{}", self.name()),
            RunKind::Backfill,
            ExecutionMode::Backfill,
        );
        m.reason = "run-wide limits".into();
        m.requested_by = "alice".into();
        m.source = SourceSpec {
            kind: "memory".into(),
            name: "ints".into(),
            snapshot: Some("s".into()),
            range: Some(InputRange::Offsets {
                partitions: vec![OffsetRange {
                    partition: 0,
                    from: 0,
                    to_exclusive: rows,
                }],
            }),
            ..SourceSpec::default()
        };
        m.transform.name = "ints".into();
        m.transform.version = "1.0.0".into();
        m.target.name = "limited".into();
        m.target.mutation = Some(Mutation::ReplacePartitions);
        m.target.partitions = vec!["p0".into(), "p1".into()];
        m.safety.side_effects = Some(SideEffectPolicy::default());
        m.safety.manual_publish = true;
        m.validation = Some(ValidationPlan {
            checksum_required: true,
            ..Default::default()
        });
        let l = &mut m.safety.limits;
        match self {
            // Two chunks at once: each process alone would lease two.
            Self::Parallel => l.max_chunks_in_parallel = 2,
            // One chunk at once, every process under one worker id (like the example job's).
            Self::SharedId => l.max_chunks_in_parallel = 1,
            // 60,000 rows a minute: 1,000 a second, a burst of 1,000. Every process may work at once.
            Self::Rows => {
                l.max_chunks_in_parallel = 6;
                l.max_rows_per_minute = Some(60_000);
            }
            // 6,000,000 bytes a minute: 100,000 a second, a burst of 100,000.
            Self::Bytes => {
                l.max_chunks_in_parallel = 6;
                l.max_bytes_per_minute = Some(BYTES_PER_MINUTE);
            }
            // 14,400 commits an hour: one every 250 ms, a burst of one.
            Self::Commits => {
                l.max_chunks_in_parallel = 6;
                l.max_sink_commits_per_hour = Some(14_400);
            }
            // 3,000 of the 6,000 rows: each process alone sees about 2,000 and would go on.
            Self::Ceiling => {
                l.max_chunks_in_parallel = 6;
                m.safety.max_rows_expected = Some(CEILING);
            }
        }
        m.approve("bob", chrono::Utc::now()).expect("approvable")
    }
}

/// The bytes scenario's `max_bytes_per_minute`.
const BYTES_PER_MINUTE: u64 = 6_000_000;
/// The ceiling scenario's `safety.max_rows_expected`.
const CEILING: u64 = 3_000;
/// Rows per batch.
const BATCH: usize = 50;

async fn executor(url: &str, ns: Option<&str>, worker: &str, s: Scenario) -> Executor<Ints> {
    let opts = match ns {
        Some(ns) => ConnectOptions::namespaced(Ident::new(ns).expect("namespace")),
        None => ConnectOptions::default(),
    };
    // A chunk being staged holds a connection for its transaction while it waits for the rows
    // budget, which it takes on another: at least two connections per local worker.
    let pool = SqlPool::connect_with(url, &opts.with_max_connections(16))
        .await
        .expect("connect");
    let store = Arc::new(SqlStore::new(pool.clone()).await.expect("store"));
    let sink = Arc::new(
        SqlSink::<Out>::new(pool.clone(), "limited")
            .await
            .expect("sink"),
    );
    let publisher = Arc::new(
        SqlPublisher::<Out>::new(pool, "limited")
            .await
            .expect("publisher"),
    );
    let control = Control::new(store)
        .with_target(publisher.clone())
        .expect("target");
    let (rows, chunk) = s.input();
    let source = MemorySource::by_offset((0..rows).collect(), chunk)
        .batch_size(BATCH)
        .snapshot("s");
    Executor::builder(
        control,
        Arc::new(source),
        Arc::new(Ints),
        Arc::new(Slow(sink)),
        publisher,
    )
    .options(
        RunnerOptions::worker(worker)
            .with_lease(Duration::from_secs(10))
            .with_local_workers(2),
    )
    .build()
}

/// Not a test of its own: the body of a worker process the tests below start (it returns at once
/// when run as part of the suite).
#[test]
fn worker_process() {
    let Ok(worker) = std::env::var("BF_LIMITS_WORKER") else {
        return;
    };
    let url = std::env::var("BF_LIMITS_URL").expect("url");
    let ns = std::env::var("BF_LIMITS_NS").ok();
    let s = Scenario::parse(&std::env::var("BF_LIMITS_SCENARIO").expect("scenario"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let e = executor(&url, ns.as_deref(), &worker, s).await;
        match (s, e.run(s.manifest().run_id()).await) {
            (Scenario::Ceiling, Err(err)) => assert!(
                matches!(
                    err.root(),
                    Error::LimitExceeded {
                        limit: "safety.max_rows_expected",
                        ..
                    }
                ),
                "{err}"
            ),
            (_, report) => {
                let report = report.expect("the worker's run");
                assert_eq!(report.state, RunState::Validated, "{report:?}");
            }
        }
    });
}

/// What a scenario's run left: its chunks, its status, the stagings' (began, ended) instants in
/// microseconds, and (the bytes scenario only) the bytes of its staged rows (each row's canonical
/// encoding, what the bytes budget counts).
struct Ran {
    chunks: Vec<backfill_core::store::ChunkRecord>,
    report: RunReport,
    stagings: Vec<(u128, u128)>,
    staged_bytes: u64,
}

/// Runs a scenario with three worker processes (each passes when its run ends as the scenario
/// expects).
async fn three_processes(engine: &common::Engine, s: Scenario) -> Ran {
    let ns = engine.namespace(s.name());
    let (url, ident) = if engine.name == "sqlite" {
        (ns.url.clone(), None)
    } else {
        (ns.url.clone(), Some(ns.ident.as_str().to_owned()))
    };
    let parent = executor(&url, ident.as_deref(), "parent", s).await;
    let approved = s.manifest();
    parent.control().submit(&approved).await.expect("submit");
    let exe = std::env::current_exe().expect("test binary");
    let log = std::env::temp_dir().join(format!(
        "bf-limits-{}-{}-{}",
        engine.name,
        s.name(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&log);
    std::fs::create_dir_all(&log).expect("log dir");
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut c = Command::new(&exe);
            c.args([
                "run_wide_limits::worker_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "BF_LIMITS_WORKER",
                match s {
                    Scenario::SharedId => "shared".to_owned(),
                    _ => format!("w{i}"),
                },
            )
            .env("BF_LIMITS_URL", &url)
            .env("BF_LIMITS_SCENARIO", s.name())
            .env("BF_LIMITS_LOG", &log);
            if let Some(ns) = &ident {
                c.env("BF_LIMITS_NS", ns);
            }
            c.spawn().expect("spawn a worker process")
        })
        .collect();
    for mut c in children {
        let status = c.wait().expect("worker exit");
        assert!(
            status.success(),
            "{} {}: a worker failed",
            engine.name,
            s.name()
        );
    }
    let report = parent
        .control()
        .status(approved.run_id())
        .await
        .expect("status");
    let chunks = parent
        .control()
        .store()
        .chunks(approved.run_id())
        .await
        .expect("chunks");
    // Only the bytes scenario needs its staged rows' bytes (every row read back and encoded).
    let staged_bytes = if matches!(s, Scenario::Bytes) {
        let sink = SqlSink::<Out>::new(ns.pool().await, "limited")
            .await
            .expect("sink");
        let rows: Vec<Out> = sink
            .read_staged(approved.run_id())
            .try_concat()
            .await
            .expect("staged rows");
        let mut buf = Vec::new();
        rows.iter()
            .map(|r| {
                buf.clear();
                r.encode_canonical(&mut buf).expect("encodes");
                buf.len() as u64
            })
            .sum()
    } else {
        0
    };
    let mut stagings = Vec::new();
    for f in std::fs::read_dir(&log).expect("logs") {
        let text = std::fs::read_to_string(f.expect("log").path()).expect("log");
        for line in text.lines() {
            let (a, b) = line.split_once(' ').expect("two instants");
            stagings.push((a.parse().expect("began"), b.parse().expect("ended")));
        }
    }
    let _ = std::fs::remove_dir_all(&log);
    ns.drop().await;
    Ran {
        chunks,
        report,
        stagings,
        staged_bytes,
    }
}

/// The processes whose workers staged chunks.
fn processes(chunks: &[backfill_core::store::ChunkRecord]) -> Vec<String> {
    let mut workers: Vec<String> = chunks
        .iter()
        .filter_map(|c| c.worker.clone())
        .map(|w| w.split('/').next().unwrap_or_default().to_owned())
        .collect();
    workers.sort();
    workers.dedup();
    workers
}

/// The most stagings in progress at one instant.
fn max_overlap(stagings: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = Vec::new();
    for (a, b) in stagings {
        edges.push((*a, 1));
        edges.push((*b, -1));
    }
    // At equal instants, a finish counts before a start.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

fn span_secs(chunks: &[backfill_core::store::ChunkRecord]) -> f64 {
    let first = chunks
        .iter()
        .filter_map(|c| c.started_at)
        .min()
        .expect("started");
    let last = chunks
        .iter()
        .filter_map(|c| c.finished_at)
        .max()
        .expect("finished");
    (last - first).num_milliseconds() as f64 / 1000.0
}

fn engines() -> Vec<common::Engine> {
    common::engines()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_in_parallel_are_bounded_across_processes() {
    for engine in engines() {
        let Ran {
            chunks, stagings, ..
        } = three_processes(&engine, Scenario::Parallel).await;
        assert_eq!(stagings.len(), chunks.len(), "one staging per chunk");
        // Three processes with two local workers each could lease six chunks at once (and would,
        // as they all start together, if the limit held per process).
        let most = max_overlap(&stagings);
        assert!(
            most <= 2,
            "{}: {most} chunks were staged at once",
            engine.name
        );
        // (Which processes get the places is up to timing: a worker that finishes a chunk claims
        // again at once, the others look every 100 ms; all three ran to the end.)
        assert_eq!(most, 2, "{}: the run used its parallelism", engine.name);
        assert!(
            chunks.iter().all(|c| c.attempts == 1),
            "{}: no chunk was fenced off",
            engine.name
        );
    }
}

/// Processes sharing one worker id (the example job's) under a limit of one: each start gives back
/// the lease another holds under the id (one void attempt at most), and then they take turns
/// instead of taking each other's chunks (which, before claims stopped taking unexpired leases
/// back, went on until a thief happened to finish first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_worker_id_take_turns() {
    for engine in engines() {
        let Ran {
            chunks, stagings, ..
        } = three_processes(&engine, Scenario::SharedId).await;
        let attempts: u32 = chunks.iter().map(|c| c.attempts).sum();
        // Each of the three starts may void one attempt; a livelock would void many more.
        assert!(
            attempts as usize <= chunks.len() + 3,
            "{}: {attempts} attempts for {} chunks",
            engine.name,
            chunks.len()
        );
        // A void attempt may be stopped before its staging ends (then it logs none).
        assert!(
            (chunks.len()..=attempts as usize).contains(&stagings.len()),
            "{}: {} stagings for {} chunks and {attempts} attempts",
            engine.name,
            stagings.len(),
            chunks.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_per_minute_is_a_budget_of_the_run() {
    for engine in engines() {
        let Ran { chunks, report, .. } = three_processes(&engine, Scenario::Rows).await;
        assert_eq!(report.state, RunState::Validated);
        assert_eq!(report.output_rows, 3_000);
        let procs = processes(&chunks);
        assert!(procs.len() >= 2, "{}: only {procs:?} worked", engine.name);
        // 3,000 rows at 1,000 a second with a burst of 1,000 take at least 2 s run-wide (each
        // process alone would be allowed the whole rate: about 0.7 s); one batch (50 rows) of slack.
        let span = span_secs(&chunks);
        assert!(span >= 1.95, "{}: 3,000 rows in {span} s", engine.name);
        // The wait is visible in the run's status (summed from the chunks' evidence).
        let waited = report
            .throttled_ms
            .get("max_rows_per_minute")
            .copied()
            .unwrap_or(0);
        assert!(waited > 0, "{}: {:?}", engine.name, report.throttled_ms);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_per_hour_is_a_budget_of_the_run() {
    for engine in engines() {
        let Ran { chunks, report, .. } = three_processes(&engine, Scenario::Commits).await;
        assert_eq!(report.state, RunState::Validated);
        assert_eq!(report.output_rows, 600);
        let procs = processes(&chunks);
        assert!(procs.len() >= 2, "{}: only {procs:?} worked", engine.name);
        // Six commits, one every 250 ms with a burst of one: the sixth starts 1.25 s after the first.
        // Finishing instants also carry each staging's own time (150 ms and up, varying under
        // load), so they spread at least 1 s; six chunks on six workers unthrottled finish within
        // one staging of each other.
        let mut starts: Vec<i64> = chunks
            .iter()
            .filter_map(|c| c.started_at.map(|t| t.timestamp_millis()))
            .collect();
        starts.sort_unstable();
        let finishes: Vec<i64> = {
            let mut f: Vec<i64> = chunks
                .iter()
                .filter_map(|c| c.finished_at.map(|t| t.timestamp_millis()))
                .collect();
            f.sort_unstable();
            f
        };
        let spread = (finishes[finishes.len() - 1] - finishes[0]) as f64 / 1000.0;
        assert!(
            spread >= 1.0,
            "{}: six commits within {spread} s",
            engine.name
        );
        assert!(
            report
                .throttled_ms
                .contains_key("max_sink_commits_per_hour"),
            "{}: {:?}",
            engine.name,
            report.throttled_ms
        );
        assert_eq!(starts.len(), 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_ceiling_is_a_ceiling_of_the_run() {
    for engine in engines() {
        let Ran { chunks, report, .. } = three_processes(&engine, Scenario::Ceiling).await;
        let procs = processes(&chunks);
        assert!(procs.len() >= 2, "{}: only {procs:?} worked", engine.name);
        assert_eq!(report.state, RunState::Failed, "{}", engine.name);
        // Stopped within one batch per worker of the ceiling. The ledger holds the output counts
        // of finished chunks only (a failed chunk's partial count is not recorded), so their sum
        // is what the run staged for good: at most the ceiling plus a batch per worker.
        let done: u64 = chunks
            .iter()
            .filter(|c| c.status == backfill_core::store::ChunkStatus::Done)
            .map(|c| c.output_count)
            .sum();
        let workers = 3 * 2;
        assert!(
            done <= CEILING + (workers * BATCH) as u64,
            "{}: {done} rows staged past a ceiling of {CEILING}",
            engine.name
        );
        assert!(
            done < 6_000,
            "{}: the run went on to the end ({done} rows)",
            engine.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_per_minute_is_a_budget_of_the_run() {
    for engine in engines() {
        let Ran {
            chunks,
            report,
            staged_bytes: bytes,
            ..
        } = three_processes(&engine, Scenario::Bytes).await;
        assert_eq!(report.state, RunState::Validated);
        assert_eq!(report.output_rows, 3_000);
        let procs = processes(&chunks);
        assert!(procs.len() >= 2, "{}: only {procs:?} worked", engine.name);
        let rate = BYTES_PER_MINUTE as f64 / 60.0;
        // The burst, and one batch per worker (6) in flight, come for free; the rest waits.
        let slack = rate + 6.0 * BATCH as f64 * (bytes as f64 / 3_000.0);
        let floor = (bytes as f64 - slack) / rate;
        let span = span_secs(&chunks);
        assert!(
            floor > 0.5 && span >= floor,
            "{}: {bytes} bytes in {span} s (run-wide floor {floor} s)",
            engine.name
        );
        assert!(
            report.throttled_ms.contains_key("max_bytes_per_minute"),
            "{}: {:?}",
            engine.name,
            report.throttled_ms
        );
    }
}
